"""Heads, losses and predictions of each task kind, against per-sample reference formulas."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facebalance.balance.attention import primary_error
from facebalance.balance.strategies import training_options
from facebalance.config import ClassifierParams
from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import shard_refs
from facebalance.models.classifier import ClassifierConfig, build_classifier
from facebalance.models.fit import fit_classifier
from facebalance.models.train import (
    ValAttention,
    head_outputs,
    head_targets,
    mix_batch,
    predict_outputs,
    task_loss,
)
from facebalance.task import Head, TaskSpec, cell_ids, group_ids, resolve_task, task_labels

CPU = torch.device("cpu")
MULTITASK = TaskSpec(kind="multitask", heads=(Head("skin", "multiclass", 3), Head("male",
                                                                                 "binary")),
                     protected="skin")
REGRESSION = TaskSpec(kind="regression", heads=(Head("age", "regression", 0, 40.0, 10.0),),
                      age_bins=(30.0, 50.0))


def test_multitask_loss_is_cross_entropy_plus_bce_per_sample() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 1.0, 0.0, -2.0]])
    rows = {"label": np.array([0, 2]), "label1": np.array([1.0, 0.0], np.float32)}
    targets = head_targets(MULTITASK, rows, CPU)
    assert targets[0].tolist() == [[1, 0, 0], [0, 0, 1]] and targets[1].tolist() == [1, 0]
    loss = task_loss(MULTITASK, logits, targets)
    for i in range(2):
        z = logits[i, :3].tolist()
        ce = -(z[rows["label"][i]] - math.log(sum(math.exp(v) for v in z)))
        p = 1 / (1 + math.exp(-logits[i, 3].item()))
        y = rows["label1"][i]
        bce = -(y * math.log(p) + (1 - y) * math.log(1 - p))
        assert loss[i].item() == pytest.approx(ce + bce, rel=1e-5)
    out = head_outputs(MULTITASK, logits)
    assert out.shape == (2, 4) and torch.allclose(out[:, :3].sum(1), torch.ones(2))
    assert out[0, 3].item() == pytest.approx(1 / (1 + math.exp(-0.5)))


@pytest.mark.parametrize("loss", ["l1", "smooth_l1"])
def test_regression_learns_the_standardized_target(loss: str) -> None:
    task = TaskSpec(kind="regression", heads=REGRESSION.heads, age_bins=(30.0,), loss=loss)
    logits = torch.tensor([[0.5], [-3.0]])
    (y,) = head_targets(task, {"label": np.array([45.0, 40.0], np.float32)}, CPU)
    assert y.tolist() == [0.5, 0.0]
    got = task_loss(task, logits, [y]).tolist()
    expect = [0.0, 3.0] if loss == "l1" else [0.0, 2.5]  # smooth L1: |d| - 0.5 beyond 1
    assert got == pytest.approx(expect)
    assert head_outputs(task, logits)[:, 0].tolist() == pytest.approx([45.0, 10.0])
    assert primary_error(task, np.array([[45.0], [10.0]]), np.array([40.0, 40.0])).tolist() \
        == [5.0, 30.0]


def test_mixing_mixes_every_head_with_the_same_share() -> None:
    x = torch.zeros(3, 3, 4, 4)
    rows = {"label": np.array([0, 1, 2]), "label1": np.array([1.0, 0.0, 1.0], np.float32)}
    ys = head_targets(MULTITASK, rows, CPU)
    _, mixed, w = mix_batch(x, ys, torch.ones(3), 0.75, np.array([1, 2, 0]))
    assert mixed[0][0].tolist() == [0.75, 0.25, 0.0]  # one-hot rows mix like images
    assert mixed[1].tolist() == pytest.approx([0.75, 0.25, 1.0]) and w.tolist() == [1, 1, 1]


def test_prediction_shapes_per_kind(tiny_prepared: Path) -> None:
    refs = shard_refs(tiny_prepared / "test", ["skin"])
    data = ShardDataset(refs, {})
    for task in (MULTITASK, REGRESSION, TaskSpec()):
        net = build_classifier(ClassifierConfig(width=4, num_outputs=task.num_outputs))
        (out,) = predict_outputs([net], data, CPU, task)
        assert out.shape == (len(refs), task.num_outputs) and np.isfinite(out).all()


def test_val_attention_by_mae_matches_a_loop(tiny_prepared: Path) -> None:
    val = shard_refs(tiny_prepared / "val", ["age"])
    groups = group_ids(REGRESSION, val)
    data = ShardDataset(val, {"label": val["age"].to_numpy(np.float32),
                              "cell": cell_ids(REGRESSION, val["age"], groups)})
    torch.manual_seed(0)
    net = build_classifier(ClassifierConfig(width=4, num_outputs=1))
    weights = ValAttention(data, 3, REGRESSION).weights(net, CPU, max_weight=4.0)
    (pred,) = predict_outputs([net], data, CPU, REGRESSION)
    mae = [np.mean([abs(pred[i, 0] - val["age"][i]) for i in range(len(val)) if groups[i] == c])
           for c in range(3)]
    expect = np.clip(np.array(mae) / np.mean(mae), 0.25, 4.0)
    assert weights == pytest.approx(expect, rel=1e-5)


def _task_rows(tiny_prepared: Path, split: str, task: TaskSpec) -> pd.DataFrame:
    refs = shard_refs(tiny_prepared / split, ["id", "skin", "male", "age"])
    return pd.concat([refs[["path", "_file", "_row", "id"]], task_labels(task, refs)],
                     axis=1).assign(weight=1.0)


@pytest.mark.parametrize("strategy", ["baseline", "mixup", "val_attention"])
def test_multitask_and_regression_training_lowers_the_loss(tiny_prepared: Path,
                                                          strategy: str) -> None:
    params = ClassifierParams(width=8, epochs=3, batch_size=32, lr=0.01)
    train = shard_refs(tiny_prepared / "train", ["skin", "male", "age"])
    for task in (resolve_task("multitask", "skin", "skin", train, extra_targets=["male"]),
                 resolve_task("regression", "age", "", train, age_bins=[30, 45, 60])):
        rows = _task_rows(tiny_prepared, "train", task)
        val = _task_rows(tiny_prepared, "val", task) if strategy == "val_attention" else None
        _, cfg, hist = fit_classifier(rows, params, image_size=32, seed=0, device=CPU,
                                        options=training_options(strategy),
                                        attention_val=val, task=task)
        assert cfg.num_outputs == task.num_outputs
        assert all(np.isfinite(h["loss"]) for h in hist)
        if val is None:  # (attention multiplies the loss by cell weights from epoch 2 on)
            assert hist[-1]["loss"] < hist[0]["loss"]
        else:
            n = 4 * 4 if task.kind == "multitask" else 4  # skin x skin cells; age groups
            assert len([k for k in hist[1] if k.endswith("_weight")]) == n
