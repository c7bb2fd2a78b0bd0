"""train_target: train the target classifier on a strategy's training set, once per seed."""

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.balance.registry import strategy as strategy_spec
from facebalance.balance.strategies import training_options
from facebalance.config import as_dict, load_params
from facebalance.data.shards import atomic_directory, read_columns, read_parquet, shard_refs
from facebalance.distributed import start
from facebalance.models.classifier import save_checkpoint
from facebalance.models.fit import fit_classifiers
from facebalance.precision import precision_record, resolve_precision
from facebalance.runtime import derive_seed, run_app, setup, write_csv
from facebalance.task import param_columns, task_from_params, task_labels

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
    device = group.device
    rows = read_parquet(index)
    options = training_options(strategy, p.augment)
    # The spec (classes, regression scale) comes from the real train split, not the index.
    task = task_from_params(p, read_columns(train, param_columns(p)))
    attention_val = None
    if strategy_spec(strategy).needs_val:
        refs = shard_refs(val, param_columns(p))
        attention_val = pd.concat([refs[["path", "_file", "_row"]], task_labels(task, refs)],
                                  axis=1)
    seeds = p.train_target.seeds
    precision = resolve_precision(p.base.precision, device)
    fitted = fit_classifiers(rows, p.train_target, image_size=p.base.image_size,
                             seeds=[derive_seed(p.base.seed, s) for s in seeds], device=device,
                             options=options, attention_val=attention_val, task=task,
                             precision=precision)
    if not group.main:  # rank 0 writes
        return
    curves = []
    with atomic_directory(out) as tmp:  # every seed or none: no stale seed files survive
        for s, (net, config, hist) in zip(seeds, fitted, strict=True):
            save_checkpoint(tmp / f"seed{s}.pt", net, config,
                            {"strategy": strategy, "seed": s, "task": task.to_dict(),
                             "params": as_dict(p.train_target),
                             **precision_record(p.base.precision, precision)})
            curves += [{"seed": s, **h} for h in hist]
    write_csv(history, pd.DataFrame(curves))


if __name__ == "__main__":
    run_app(app)
