"""train_attr: train the classifier of the target or protected attribute on real data.

These classifiers label generated images later (``score``); their test accuracy is in
``metrics/attr/<which>.json``.
"""

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from facebalance.balance.strategies import reweight_weights
from facebalance.config import load_params
from facebalance.data.datasets import shard_refs
from facebalance.errors import FacebalanceError
from facebalance.metrics.fairness import accuracy, average_precision, group_rates
from facebalance.models.classifier import save_checkpoint
from facebalance.models.fit import fit_classifier, score_shards
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
    device = setup(p.base)
    other = p.dataset.target if which == "protected" else p.dataset.protected
    refs = shard_refs(data / "train", ["id", attr, other]).rename(columns={attr: "label"})
    values = sorted(refs["label"].unique().tolist())
    if not set(values) <= {0, 1}:
        raise FacebalanceError(
            f"train_attr: dataset.{which} = {attr!r} holds {values[:6]}; the GAN stages need "
            "a binary target and a binary protected attribute (the z/z' complement mirrors "
            "a face across one hyperplane)")
    # reweight: every (target, protected) cell weighs the same, so the labeller of G(z)
    # cannot score well by leaning on the correlated attribute.
    refs["weight"] = (reweight_weights(refs["label"].to_numpy(), refs[other].to_numpy())
                      if p.train_attr.balance == "reweight" else np.float32(1.0))
    seed = derive_seed(p.base.seed, p.train_attr.seeds[0], 1 if which == "target" else 2)
    net, config, hist = fit_classifier(refs, p.train_attr, image_size=p.base.image_size,
                                       seed=seed, device=device)
    test, (scores,) = score_shards([net], data / "test", ["id", attr, group], device)
    y, pred = test[attr].to_numpy(), (scores >= 0.5).astype(np.int8)
    rates = group_rates(y, pred, test[group].to_numpy()).frame()
    # Outputs last: a failure above leaves the previous ones as they were.
    save_checkpoint(model, net, config, {"attribute": attr, "which": which, "seed": seed})
    write_json(metrics, {
        "attribute": attr,
        "accuracy": accuracy(y, pred),
        "ap": average_precision(y, scores),
        "by_group": {f"{group}={g}": float(a) for g, a in rates["accuracy"].items()},
    })
    write_csv(history, pd.DataFrame(hist))


if __name__ == "__main__":
    run_app(app)
