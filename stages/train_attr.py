"""train_attr: train the classifier of the target or protected attribute on real data.

These classifiers label generated images later (``score``); their test accuracy is in
``metrics/attr/<which>.json`` (:mod:`facebalance.models.attributes`).
"""

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.shards import shard_refs
from facebalance.distributed import start
from facebalance.errors import FacebalanceError
from facebalance.models.attributes import train_attribute
from facebalance.models.classifier import save_checkpoint
from facebalance.precision import precision_record, resolve_precision
from facebalance.runtime import derive_seed, run_app, setup, write_csv, write_json

app = typer.Typer(add_completion=False)


@app.command()
def main(
    which: Annotated[str, typer.Option(help="target or protected")],
    data: Annotated[Path, typer.Option(help="prepared shards (train/, test/)")],
    model: Annotated[Path, typer.Option(help="checkpoint to write")],
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")],
    history: Annotated[Path, typer.Option(help="loss curve CSV to write")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Train one attribute classifier and report its accuracy on the test split."""
    p = load_params(params)
    if which not in ("target", "protected"):
        raise typer.BadParameter("--which must be target or protected")
    if p.task.kind != "binary":
        raise FacebalanceError(
            f"train_attr: the GAN stages need task.kind: binary, not {p.task.kind!r}; run "
            "`dvc repro compare`, which runs only the stages the listed strategies need")
    attr, group = getattr(p.dataset, which), p.dataset.protected
    ranks = start(p.base.nproc, setup(p.base), p.base.threads)  # > 1 process: under torchrun
    device = ranks.device
    other = p.dataset.target if which == "protected" else p.dataset.protected
    seed = derive_seed(p.base.seed, p.train_attr.seeds[0], 1 if which == "target" else 2)
    precision = resolve_precision(p.base.precision, device)
    record = precision_record(p.base.precision, precision)  # empty for fp32
    net, config, hist, k, report = train_attribute(
        shard_refs(data / "train", ["id", attr, other]),
        shard_refs(data / "test", ["id", attr, group]), which=which, attr=attr, other=other,
        group=group, params=p.train_attr, image_size=p.base.image_size, seed=seed,
        device=device, precision=precision)
    if not ranks.main:  # rank 0 writes
        return
    # Outputs last: a failure above leaves the previous ones as they were.
    save_checkpoint(model, net, config, {"attribute": attr, "which": which, "seed": seed,
                                         "classes": k, **record})
    write_json(metrics, {**report, **record})
    write_csv(history, pd.DataFrame(hist))


if __name__ == "__main__":
    run_app(app)
