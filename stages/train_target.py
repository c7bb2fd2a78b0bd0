"""train_target: train the target classifier on a strategy's training set, once per seed."""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.shards import read_parquet
from facebalance.distributed import start
from facebalance.models.fit import save_seed_models, train_strategy
from facebalance.precision import resolve_precision
from facebalance.runtime import run_app, setup, write_csv

app = typer.Typer(add_completion=False)


@app.command()
def main(
    strategy: Annotated[str, typer.Option(help="balancing strategy")],
    index: Annotated[Path, typer.Option(help="training set index from augment")],
    train: Annotated[Path, typer.Option(help="real training shards (the task's classes)")],
    val: Annotated[Path, typer.Option(help="validation shards (val_attention)")],
    out: Annotated[Path, typer.Option(help="directory for seed<N>.pt checkpoints")],
    history: Annotated[Path, typer.Option(help="loss curve CSV to write")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Train ``train_target.seeds`` models on the index."""
    p = load_params(params)
    group = start(p.base.nproc, setup(p.base), p.base.threads)  # > 1 process: under torchrun
    precision = resolve_precision(p.base.precision, group.device)
    fitted, task = train_strategy(strategy, read_parquet(index), p, train_dir=train,
                                  val_dir=val, device=group.device, precision=precision)
    if not group.main:  # rank 0 writes
        return
    write_csv(history, save_seed_models(out, strategy, fitted, task, p, precision))


if __name__ == "__main__":
    run_app(app)
