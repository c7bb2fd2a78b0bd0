"""guide: guided group directions; walk fresh latents into each under-represented group."""

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
from facebalance.figures import image_grid, save_png
from facebalance.latent.directions import group_directions, guide_to_quotas, image_groups
from facebalance.latent.sampling import generate_shards, latents_table, sample_prior
from facebalance.models.classifier import load_attribute_classifiers
from facebalance.models.gan import generate_uint8, load_generator, prior_latents
from facebalance.models.train import predict_outputs
from facebalance.runtime import derive_seed, run_app, setup, write_json
from facebalance.task import (
    classifier_task,
    group_ids,
    param_columns,
    task_from_params,
)

app = typer.Typer(add_completion=False)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (train/: the group sizes)")],
    generator: Annotated[Path, typer.Option(help="generator checkpoint")],
    attr_models: Annotated[Path, typer.Option(
        help="directory with target.pt (labels the images) and protected.pt (the groups)")],
    out: Annotated[Path, typer.Option(help="directory to write: guided.parquet, images/")],
    metrics: Annotated[Path, typer.Option(help="per-group hit rates JSON")],
    figure: Annotated[Path, typer.Option(help="PNG: guided samples, one row per group")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Fit one latent direction per group and generate until the groups balance."""
    p = load_params(params)
    device = setup(p.base)
    g = p.guided
    gen = load_generator(generator, device, latent_dim=p.gan.latent_dim)
    train = shard_refs(data / "train", ["id", *param_columns(p)])
    task = task_from_params(p, train)
    k = task.n_groups
    counts = np.bincount(group_ids(task, train), minlength=k)
    models = load_attribute_classifiers(attr_models, device, protected_groups=k)
    size = int(np.ceil(counts.mean())) if g.to == "mean" else int(counts.max())
    quotas = {grp: size - int(n) for grp, n in enumerate(counts) if n < size}
    classify = image_groups(gen, models["protected"], p.sample.batch_size)
    z_fit = sample_prior(gen, g.n_fit, derive_seed(p.base.seed, 14))
    groups_fit = classify(torch.from_numpy(z_fit).to(device)).cpu().numpy()
    directions, fit_acc = group_directions(z_fit, groups_fit, k, c=g.c,
                                           seed=derive_seed(p.base.seed, 15))
    z, grp, steps, report = guide_to_quotas(
        directions, quotas, classify, step=g.step, max_steps=g.max_steps,
        batch_size=g.batch_size, seed=derive_seed(p.base.seed, 16), device=device,
        to_latent=lambda z: prior_latents(gen, z))
    ids = [f"guided-{i:07d}" for i in range(len(z))]
    protected_task = classifier_task(k)
    with atomic_directory(out) as tmp:  # images and their table appear together
        generate_shards(gen, z, ids, tmp / "images", device=device,
                        batch_size=p.sample.batch_size,
                        columns=pd.DataFrame({"group": grp, "steps": steps}))
        # Label and check the images as stored (PNG round trip), as training will see them.
        stored = ShardDataset(shard_refs(tmp / "images", ["id"]), {}) if len(z) else None
        target = (predict_outputs([models["target"]], stored, device)[0][:, 0]
                  if stored else np.zeros(0, np.float32))
        prot = (predict_outputs([models["protected"]], stored, device, protected_task)[0]
                if stored else np.zeros((0, 1), np.float32))
        agrees = (prot.argmax(1) if k > 2 else (prot[:, 0] >= 0.5).astype(np.int64)) == grp
        write_table_atomic(latents_table(ids, z, derive_seed(p.base.seed, 16), {
            "label": (target >= 0.5).astype(np.int8), "group": grp, "steps": steps,
            "target_score": target.astype(np.float32), "agrees": agrees}),
            tmp / "guided.parquet")
        rows = [generate_uint8(gen, torch.from_numpy(z[grp == q][:8]).to(device))
                for q in sorted(quotas) if (grp == q).any()]
    names = task.group_names()
    fit_share = np.bincount(groups_fit, minlength=k) / max(len(groups_fit), 1)
    write_json(metrics, {
        "directions": {"n_fit": g.n_fit, "fit_accuracy": fit_acc,
                       "generated_group_share": dict(zip(names, fit_share.tolist(),
                                                         strict=True))},
        "group_size": size, "real_counts": dict(zip(names, counts.tolist(), strict=True)),
        "groups": {names[q]: {**r, "agreement": float(agrees[grp == q].mean())
                              if (grp == q).any() else None,
                              "target_positive_share": float((target[grp == q] >= 0.5).mean())
                              if (grp == q).any() else None}
                   for q, r in report.items()},
        "new_images": len(z)})
    panel = np.full((8, 8, 3), 255, np.uint8)
    if rows:  # one row of up to 8 samples per guided group
        width = max(len(r) for r in rows)
        blank = np.full_like(rows[0][:1], 255)
        panel = image_grid(np.concatenate([np.concatenate([r, *[blank] * (width - len(r))])
                                           for r in rows]), width, pad=1)
    save_png(panel, figure, scale=max(1, 96 // p.base.image_size))


if __name__ == "__main__":
    run_app(app)
