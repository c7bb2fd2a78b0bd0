"""invert: latents of the real training images (and of test images, for the error report;
:mod:`facebalance.latent.inversion`)."""

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import as_dict, load_params
from facebalance.data.shards import atomic_directory, shard_refs
from facebalance.figures import save_rows
from facebalance.latent.inversion import invert_real_faces, test_subset
from facebalance.latent.sampling import write_latents
from facebalance.models.encoder import save_encoder
from facebalance.models.gan import load_generator
from facebalance.precision import precision_record, resolve_precision
from facebalance.runtime import derive_seed, run_app, setup, write_json
from facebalance.task import group_ids, param_columns, read_task

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
    train, task = read_task(p, data / "train")
    test = test_subset(shard_refs(data / "test", ["id", *param_columns(p)]), v.n_test,
                       derive_seed(p.base.seed, 11))
    rows = pd.concat([train.assign(split="train"), test.assign(split="test")],
                     ignore_index=True)
    rows["group"] = group_ids(task, rows)
    result = invert_real_faces(
        gen, rows, v, group_names=dict(enumerate(task.group_names())),
        encoder_seed=derive_seed(p.base.seed, 10), seed=derive_seed(p.base.seed, 12),
        device=device, precision=precision, record=record)
    # Outputs last: a failure above leaves the previous ones as they were.
    with atomic_directory(encoder_dir) as tmp:  # never empty: DVC tracks empty dirs badly
        if result.encoder is not None:
            save_encoder(tmp / "encoder.pt", result.encoder, {"params": as_dict(v), **record})
        write_json(tmp / "encoder.json", {"method": v.method, "encoder": result.encoder
                                          is not None, **result.summary.get("encoder", {})})
    write_latents(out, result.table)
    write_json(metrics, result.summary)
    save_rows(result.rows, figure, p.base.image_size)


if __name__ == "__main__":
    run_app(app)
