"""train_attr: train the classifier of the target or protected attribute on real data.

These classifiers label generated images later (``score``); their test accuracy is in
``metrics/attr/<which>.json``.
"""

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.balance.strategies import reweight_weights
from facebalance.config import load_params
from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import shard_refs
from facebalance.errors import FacebalanceError
from facebalance.metrics.fairness import accuracy, average_precision, group_rates
from facebalance.models.classifier import save_checkpoint
from facebalance.models.fit import fit_classifier
from facebalance.models.train import predict_outputs
from facebalance.runtime import derive_seed, run_app, setup, write_csv, write_json
from facebalance.task import classifier_task

app = typer.Typer(add_completion=False)


def group_classes(values: list, which: str, attr: str) -> int:
    """Classes of the attribute classifier: 2 for a 0/1 column; K for a protected column of
    groups 0..K-1; anything else is refused naming the column."""
    if set(values) <= {0, 1}:
        return 2
    if which == "protected" and all(isinstance(v, int) and v >= 0 for v in values):
        return int(max(values)) + 1
    raise FacebalanceError(
        f"train_attr: dataset.{which} = {attr!r} holds {values[:6]}; the latent stages need "
        "a binary target and a protected attribute of groups 0..K-1 (the z/z' complement "
        "needs K = 2: it mirrors a face across one hyperplane)")


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
    # A protected attribute of K > 2 groups (skin) gets a K-class classifier: the group
    # classifier of the guided strategy. The z/z' stages need both binary.
    k = group_classes(values, which, attr)
    task = classifier_task(k)
    # reweight: every (target, protected) cell weighs the same, so the labeller of G(z)
    # cannot score well by leaning on the correlated attribute.
    refs["weight"] = (reweight_weights(refs["label"].to_numpy(), refs[other].to_numpy())
                      if p.train_attr.balance == "reweight" else np.float32(1.0))
    seed = derive_seed(p.base.seed, p.train_attr.seeds[0], 1 if which == "target" else 2)
    net, config, hist = fit_classifier(refs, p.train_attr, image_size=p.base.image_size,
                                       seed=seed, device=device, task=task)
    test = shard_refs(data / "test", ["id", attr, group])
    (out,) = predict_outputs([net], ShardDataset(test, {}), device, task)
    y = test[attr].to_numpy()
    pred = (out[:, 0] >= 0.5).astype(np.int8) if k == 2 else out.argmax(axis=1)
    groups = test[group].to_numpy()
    by_group = ({g: float(a) for g, a in group_rates(y, pred, groups).frame()["accuracy"].items()}
                if k == 2 else {g: accuracy(y[groups == g], pred[groups == g])
                                for g in np.unique(groups)})
    # Outputs last: a failure above leaves the previous ones as they were.
    save_checkpoint(model, net, config, {"attribute": attr, "which": which, "seed": seed,
                                         "classes": k})
    write_json(metrics, {
        "attribute": attr,
        "accuracy": accuracy(y, pred),
        "ap": average_precision(y, out[:, 0]) if k == 2 else None,
        "by_group": {f"{group}={g}": float(a) for g, a in by_group.items()},
    })
    write_csv(history, pd.DataFrame(hist))


if __name__ == "__main__":
    run_app(app)
