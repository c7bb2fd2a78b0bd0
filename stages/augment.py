"""augment: build a strategy's training set index (rows, repeats and weights)."""

from pathlib import Path
from typing import Annotated

import typer

from facebalance.balance.strategies import build_training_index
from facebalance.config import load_params
from facebalance.data.datasets import shard_refs
from facebalance.data.shards import write_table_atomic
from facebalance.runtime import derive_seed, run_app

app = typer.Typer(add_completion=False)


@app.command()
def main(
    strategy: Annotated[str, typer.Option(help="balancing strategy")],
    data: Annotated[Path, typer.Option(help="prepared shards (train/)")],
    out: Annotated[Path, typer.Option(help="training set index (Parquet) to write")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Write the training set index of one strategy."""
    p = load_params(params)
    t, g = p.dataset.target, p.dataset.protected
    real = shard_refs(data / "train", ["id", t, g]).rename(columns={t: "label", g: "group"})
    index = build_training_index(strategy, real, seed=derive_seed(p.base.seed, 3),
                                 oversample_to=p.augment.oversample_to,
                                 reweight_mode=p.augment.reweight_mode)
    write_table_atomic(index, out)


if __name__ == "__main__":
    run_app(app)
