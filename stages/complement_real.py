"""complement_real: z' of inverted real training images (the z/z' paper's extension).

Each chosen real face's latent ``z`` (the invert stage) is complemented like a sampled one,
so its synthetic partner ``G(z')`` is the same face with the protected attribute mirrored,
labelled with the real face's own target label (no classifier label).
"""

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.balance.strategies import budget_pairs
from facebalance.config import load_params
from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import atomic_directory, shard_refs, write_table_atomic
from facebalance.figures import image_grid, save_png
from facebalance.latent.boundaries import read_boundaries, read_group_boundaries
from facebalance.latent.complement import complement_latents
from facebalance.latent.invert import train_positions
from facebalance.latent.sampling import generate_shards, latents_table, read_latents
from facebalance.models.classifier import load_attribute_classifiers
from facebalance.models.gan import generate_uint8, load_generator
from facebalance.models.train import predict_proba
from facebalance.runtime import derive_seed, run_app, setup, write_json

app = typer.Typer(add_completion=False)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (train/)")],
    latents: Annotated[Path, typer.Option(help="inverted latents (the invert stage)")],
    generator: Annotated[Path, typer.Option(help="generator checkpoint")],
    attr_models: Annotated[Path, typer.Option(help="directory with target.pt, protected.pt")],
    boundaries: Annotated[Path, typer.Option(help="boundaries JSON")],
    out: Annotated[Path, typer.Option(help="directory to write: partners.parquet, images/")],
    metrics: Annotated[Path, typer.Option(help="flip and keep rates JSON")],
    figure: Annotated[Path, typer.Option(help="PNG: real, G(z), G(z') rows")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Complement the latents of real training images and generate their partners."""
    p = load_params(params)
    device = setup(p.base)
    c, a = p.complement, p.augment
    t, g = p.dataset.target, p.dataset.protected
    train = shard_refs(data / "train", ["id", t, g])
    frame, z_all = read_latents(latents)
    pos = train_positions(frame, train["id"], latents)
    # One partner per chosen real image: the synthetic_share budget in images (a pair of
    # the sampled version is two images; here the real face is the other half).
    n = 2 * budget_pairs(len(train), a.synthetic_share, a.synthetic_weight) or len(train)
    chosen = np.sort(np.random.default_rng(derive_seed(p.base.seed, 17)).choice(
        len(train), size=min(n, len(train)), replace=False))
    target_b, protected_b = read_boundaries(boundaries)
    z = z_all[pos[chosen]]
    by_group = read_group_boundaries(boundaries) if p.boundaries.domain_dependent else None
    zp = complement_latents(z, target_b, protected_b, mode=c.mode, shell=c.shell,
                            max_step=c.max_step, target_by_group=by_group).astype(np.float32)
    gen = load_generator(generator, device, latent_dim=p.gan.latent_dim)
    models = load_attribute_classifiers(attr_models, device)
    real = train.iloc[chosen].reset_index(drop=True)
    ids = [f"creal-{i:07d}" for i in range(len(chosen))]
    with atomic_directory(out) as tmp:  # partners and their table appear together
        generate_shards(gen, zp, ids, tmp / "images", device=device, batch_size=c.batch_size,
                        columns=pd.DataFrame({"real_id": real["id"]}))
        stored = ShardDataset(shard_refs(tmp / "images", ["id"]), {})
        target_s, protected_s = predict_proba([models["target"], models["protected"]], stored,
                                              device, c.batch_size)
        label, group = real[t].to_numpy(), real[g].to_numpy()
        flipped = (protected_s >= 0.5).astype(np.int64) != group
        kept = (target_s >= 0.5).astype(np.int64) == label
        write_table_atomic(latents_table(ids, zp, derive_seed(p.base.seed, 17), {
            "real_id": real["id"].to_numpy(), "label": label.astype(np.int8),
            "group": (protected_s >= 0.5).astype(np.int8), "real_group": group.astype(np.int8),
            "target_score": target_s, "protected_score": protected_s,
            "flip_ok": flipped & kept}, name="z_prime"), tmp / "partners.parquet")
        show = np.arange(min(8, len(chosen)))
        originals, _ = ShardDataset(real.iloc[show], {}).__getitems__(show.tolist())
        panels = [originals.numpy(), generate_uint8(gen, torch.from_numpy(z[show]).to(device)),
                  generate_uint8(gen, torch.from_numpy(zp[show]).to(device))]
    write_json(metrics, {
        "n_real": len(train), "partners": len(chosen),
        "protected_flip_rate": float(flipped.mean()) if len(chosen) else None,
        "target_keep_rate": float(kept.mean()) if len(chosen) else None,
        "flip_and_keep_rate": float((flipped & kept).mean()) if len(chosen) else None,
        "by_real_group": {f"{g}={v}": {"n": int((group == v).sum()),
                                       "protected_flip_rate": float(flipped[group == v].mean()),
                                       "target_keep_rate": float(kept[group == v].mean())}
                          for v in np.unique(group)}})
    save_png(image_grid(np.concatenate(panels), len(show), pad=1), figure,
             scale=max(1, 96 // p.base.image_size))


if __name__ == "__main__":
    run_app(app)
