"""Attribute classifiers: the target and protected classifiers that label generated images.

``train_attr`` trains one on the real training split (``target`` or ``protected``) and
reports its test accuracy per group. A protected attribute of K > 2 groups gets a K-class
classifier (the group classifier of the guided strategy); the z/z' stages need both binary.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from facebalance.balance.strategies import reweight_weights
from facebalance.config import AttrParams
from facebalance.data.datasets import ShardDataset
from facebalance.errors import FacebalanceError
from facebalance.metrics.fairness import accuracy, average_precision, group_rates
from facebalance.models.classifier import ClassifierConfig
from facebalance.models.fit import fit_classifier
from facebalance.models.train import predict_outputs
from facebalance.task import classifier_task


def attribute_classes(values: list, which: str, attr: str) -> int:
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


def train_attribute(train: pd.DataFrame, test: pd.DataFrame, *, which: str, attr: str,
                    other: str, group: str, params: AttrParams, image_size: int, seed: int,
                    device: torch.device, precision: str = "fp32"
                    ) -> tuple[nn.Module, ClassifierConfig, list[dict[str, float]], int,
                               dict[str, Any]]:
    """Train the ``which`` attribute's classifier and measure it on the test split.

    Parameters
    ----------
    train
        Training rows: image references, ``attr`` and ``other`` (the other attribute).
    test
        Test rows: image references, ``attr`` and ``group`` (the protected column).
    which
        ``target`` or ``protected``.
    attr, other, group
        Column names.
    params
        ``train_attr`` params (``balance: reweight`` weighs every (attr, other) cell the
        same, so the labeller of G(z) cannot score well by leaning on the correlated
        attribute).
    image_size, seed, device, precision
        As :func:`facebalance.models.fit.fit_classifier`.

    Returns
    -------
    net, config, history, classes, metrics
        The model, its config, the loss curve, its number of classes and the metrics JSON
        (accuracy, AP of a binary one, test accuracy by protected group).
    """
    refs = train.rename(columns={attr: "label"})
    k = attribute_classes(sorted(refs["label"].unique().tolist()), which, attr)
    task = classifier_task(k)
    refs["weight"] = (reweight_weights(refs["label"].to_numpy(), refs[other].to_numpy())
                      if params.balance == "reweight" else np.float32(1.0))
    net, config, hist = fit_classifier(refs, params, image_size=image_size, seed=seed,
                                       device=device, task=task, precision=precision)
    (out,) = predict_outputs([net], ShardDataset(test, {}), device, task)
    y = test[attr].to_numpy()
    pred = (out[:, 0] >= 0.5).astype(np.int8) if k == 2 else out.argmax(axis=1)
    groups = test[group].to_numpy()
    by_group = ({g: float(a) for g, a in group_rates(y, pred, groups).frame()["accuracy"].items()}
                if k == 2 else {g: accuracy(y[groups == g], pred[groups == g])
                                for g in np.unique(groups)})
    metrics = {
        "attribute": attr,
        "accuracy": accuracy(y, pred),
        "ap": average_precision(y, out[:, 0]) if k == 2 else None,
        "by_group": {f"{group}={g}": float(a) for g, a in by_group.items()},
    }
    return net, config, hist, k, metrics
