"""interpolate: latent SMOTE and its pixel-space control for every cell below the mean size."""

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import atomic_directory, shard_refs, write_table_atomic
from facebalance.figures import save_rows
from facebalance.latent.interpolate import (
    mix,
    mix_pixels,
    smote_labels,
    smote_plan,
    write_pixel_mixes,
)
from facebalance.latent.invert import train_positions
from facebalance.latent.sampling import generate_shards, read_latents
from facebalance.models.gan import generate_uint8, load_generator
from facebalance.runtime import derive_seed, run_app, setup, write_json
from facebalance.task import (
    cell_ids,
    param_columns,
    task_from_params,
    task_labels,
)

app = typer.Typer(add_completion=False)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (train/)")],
    latents: Annotated[Path, typer.Option(help="inverted latents (the invert stage)")],
    generator: Annotated[Path, typer.Option(help="generator checkpoint")],
    out: Annotated[Path, typer.Option(
        help="directory to write: plan.parquet, latent/ and pixel/ image shards")],
    metrics: Annotated[Path, typer.Option(help="cell sizes before and after, JSON")],
    figure: Annotated[Path, typer.Option(help="PNG: a, b, latent mix, pixel mix")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Plan the interpolations, generate the latent mixes and write the pixel mixes."""
    p = load_params(params)
    device = setup(p.base)
    train = shard_refs(data / "train", ["id", *param_columns(p)])
    task = task_from_params(p, train)
    labels = task_labels(task, train)
    cells = cell_ids(task, labels["label"].to_numpy(), labels["group"].to_numpy())
    lo, hi = p.interpolate.contribution
    plan, report = smote_plan(cells, derive_seed(p.base.seed, 13), lo, hi)
    frame, z = read_latents(latents)
    pos = train_positions(frame, train["id"], latents)
    z = z[pos]
    new = smote_labels(task, labels, plan)
    ids = [f"interp-{i:07d}" for i in range(len(plan))]
    a, b, alpha = plan["a"].to_numpy(), plan["b"].to_numpy(), plan["alpha"].to_numpy()
    columns = pd.concat([pd.DataFrame({"a_id": train["id"].to_numpy()[a],
                                       "b_id": train["id"].to_numpy()[b],
                                       "alpha": alpha.astype(np.float32)}), new], axis=1)
    gen = load_generator(generator, device, latent_dim=p.gan.latent_dim)
    z_new = mix(z[a], z[b], alpha.astype(np.float32)).astype(np.float32)
    images = ShardDataset(train[["path", "_file", "_row"]], {})
    b_sz = p.interpolate.batch_size
    with atomic_directory(out) as tmp:  # plan and both image sets appear together
        generate_shards(gen, z_new, ids, tmp / "latent", device=device, batch_size=b_sz,
                        columns=columns, source="interpolated")
        write_pixel_mixes(images, plan, ids, columns, tmp / "pixel", batch_size=b_sz)
        write_table_atomic(columns.assign(id=ids), tmp / "plan.parquet")
        show = np.arange(min(8, len(plan)))
        panels = []
        if len(show):
            xa, _ = images.__getitems__(a[show].tolist())
            xb, _ = images.__getitems__(b[show].tolist())
            latent_mix = generate_uint8(gen, torch.from_numpy(z_new[show]).to(device))
            panels = [xa.numpy(), xb.numpy(), latent_mix,
                      mix_pixels(xa.numpy(), xb.numpy(), alpha[show])]
    names = task.cell_names()
    report["cells"] = {names.get(int(c), c): v for c, v in report["cells"].items()}
    report["skipped_cells"] = [names.get(int(c), str(c)) for c in report["skipped_cells"]]
    report["alpha"] = {"min": float(alpha.min()) if len(alpha) else None,
                       "max": float(alpha.max()) if len(alpha) else None,
                       "mean": float(alpha.mean()) if len(alpha) else None}
    write_json(metrics, report)
    save_rows(panels, figure, p.base.image_size)


if __name__ == "__main__":
    run_app(app)
