"""train_gan: train the DCGAN on the real train split (or adopt a pretrained generator)."""

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.distributed import start
from facebalance.figures import save_rows
from facebalance.models.gan_fit import (
    HISTORY_COLUMNS,
    fit_generator,
    sample_grid,
    write_generator,
)
from facebalance.precision import precision_record, resolve_precision
from facebalance.runtime import run_app, setup, write_csv, write_json

app = typer.Typer(add_completion=False)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (train/)")],
    model: Annotated[Path, typer.Option(help="generator checkpoint to write")],
    samples: Annotated[Path, typer.Option(help="PNG grid of generated samples")],
    history: Annotated[Path, typer.Option(help="loss curve CSV")],
    metrics: Annotated[Path, typer.Option(help="training summary JSON")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Train (or adopt) the generator, then draw a sample grid."""
    p = load_params(params)
    # Training runs data-parallel with base.nproc > 1 (under torchrun); adopting does not.
    ranks = start(p.base.nproc if not p.gan.checkpoint else 1, setup(p.base), p.base.threads)
    precision = resolve_precision(p.base.precision, ranks.device)
    # Empty for the default fp32; else what ran (and that auto chose it).
    record = precision_record(p.base.precision, precision)
    fitted = fit_generator(p, data / "train", ranks.device, precision, record)
    if not ranks.main:  # rank 0 writes
        return
    grid = sample_grid(fitted.gen, ranks.device)
    # Outputs last: a failure above leaves the previous ones as they were.
    write_generator(model, fitted, p, record)
    save_rows(grid, samples, p.base.image_size, view=128)
    write_csv(history, pd.DataFrame(fitted.curve, columns=HISTORY_COLUMNS))
    write_json(metrics, fitted.summary)


if __name__ == "__main__":
    run_app(app)
