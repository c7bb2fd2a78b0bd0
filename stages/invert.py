"""invert: latents of the real training images (and of test images, for the error report)."""

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import as_dict, from_params, load_params
from facebalance.data.datasets import ShardDataset, to_float
from facebalance.data.shards import atomic_directory, shard_refs
from facebalance.figures import image_grid, save_png
from facebalance.latent.invert import InvertConfig, error_summary, invert_dataset
from facebalance.latent.sampling import latents_table, write_latents
from facebalance.models.encoder import (
    EncoderConfig,
    EncoderTrainConfig,
    save_encoder,
    train_encoder,
)
from facebalance.models.gan import generate_uint8, load_generator
from facebalance.precision import precision_record, resolve_precision
from facebalance.runtime import derive_seed, run_app, setup, write_json
from facebalance.task import group_ids, param_columns, task_from_params

app = typer.Typer(add_completion=False)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (train/, test/)")],
    generator: Annotated[Path, typer.Option(help="generator checkpoint")],
    out: Annotated[Path, typer.Option(help="latents Parquet to write")],
    encoder_dir: Annotated[Path, typer.Option(
        help="directory to write encoder.pt to (empty with invert.method: optimize)")],
    metrics: Annotated[Path, typer.Option(help="reconstruction errors JSON")],
    figure: Annotated[Path, typer.Option(help="PNG: test images above their reconstructions")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Invert train (all) and test (invert.n_test) images; report errors per group."""
    p = load_params(params)
    device = setup(p.base)
    precision = resolve_precision(p.base.precision, device)
    # Empty for the default fp32; else what ran (and that auto chose it).
    record = precision_record(p.base.precision, precision)
    v = p.invert
    gen = load_generator(generator, device, latent_dim=p.gan.latent_dim)
    cols = ["id", *param_columns(p)]
    train = shard_refs(data / "train", cols)
    test = shard_refs(data / "test", cols)
    if 0 < v.n_test < len(test):  # a seeded subset, in file order (streams well)
        keep = np.random.default_rng(derive_seed(p.base.seed, 11)).choice(
            len(test), v.n_test, replace=False)
        test = test.iloc[np.sort(keep)]
    task = task_from_params(p, train)
    rows = pd.concat([train.assign(split="train"), test.assign(split="test")],
                     ignore_index=True)
    rows["group"] = group_ids(task, rows)
    enc, summary = None, {}
    if v.method != "optimize":
        cfg = from_params(EncoderConfig, v, prefix="encoder_", image_size=gen.cfg.image_size,
                          latent_dim=gen.cfg.latent_dim)
        enc, curve = train_encoder(gen, cfg, from_params(
            EncoderTrainConfig, v, prefix="encoder_", seed=derive_seed(p.base.seed, 10),
            precision=precision), device)
        summary["encoder"] = {"steps": v.encoder_steps, "latent_mse": curve[-1]["latent_mse"],
                              "seconds": curve[-1]["seconds"], **record}
    cfg = from_params(InvertConfig, v)
    dataset = ShardDataset(rows, {})
    seed = derive_seed(p.base.seed, 12)
    t0 = time.perf_counter()
    z, errors = invert_dataset(gen, enc, dataset, cfg, device, seed)
    seconds = time.perf_counter() - t0
    frame = pd.concat([rows[["split", "group"]], errors], axis=1)
    names = dict(enumerate(task.group_names()))
    summary = {"method": v.method, "steps": v.steps, **summary,
               "seconds": seconds, "images_per_second": len(rows) / max(seconds, 1e-9),
               **error_summary(frame, names), "params": as_dict(v)}
    # Figure: 8 test images (or train when no test), then each reconstruction below.
    pick = np.flatnonzero(rows["split"].to_numpy() == "test")[:8]
    if not len(pick):
        pick = np.arange(min(8, len(rows)))
    images, _ = dataset.__getitems__(pick.tolist())
    panels = [images.numpy(), generate_uint8(gen, torch.from_numpy(z[pick]).to(device))]
    if enc is not None and v.method == "both":
        with torch.no_grad():
            panels.insert(1, generate_uint8(gen, enc(to_float(images).to(device))))
    table = latents_table(rows["id"].to_numpy(), z, seed, {
        "split": rows["split"].to_numpy(), "group": rows["group"].to_numpy(np.int64),
        **{c: errors[c].to_numpy() for c in errors.columns}})
    # Outputs last: a failure above leaves the previous ones as they were.
    with atomic_directory(encoder_dir) as tmp:  # never empty: DVC tracks empty dirs badly
        if enc is not None:
            save_encoder(tmp / "encoder.pt", enc, {"params": as_dict(v), **record})
        write_json(tmp / "encoder.json", {"method": v.method, "encoder": enc is not None,
                                          **summary.get("encoder", {})})
    write_latents(out, table)
    write_json(metrics, summary)
    save_png(image_grid(np.concatenate(panels), len(pick), pad=1), figure,
             scale=max(1, 96 // p.base.image_size))


if __name__ == "__main__":
    run_app(app)
