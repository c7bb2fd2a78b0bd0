"""Validation attention's arithmetic against a per-cell loop."""

from __future__ import annotations

import numpy as np
import pytest

from facebalance.balance.attention import attention_weights
from facebalance.task import BINARY_TASK, Head, TaskSpec

REGRESSION = TaskSpec(kind="regression", heads=(Head("age", "regression", 0, 40.0, 10.0),),
                      age_bins=(30.0, 50.0))
MULTICLASS = TaskSpec(kind="multiclass", heads=(Head("skin", "multiclass", 3),),
                      protected="male")


def _reference(task: TaskSpec, outputs: np.ndarray, label: np.ndarray, cells: np.ndarray,
               n_cells: int, max_weight: float) -> np.ndarray:
    errors = []
    for c in range(n_cells):
        rows = [i for i in range(len(cells)) if cells[i] == c]
        errs = []
        for i in rows:
            if task.kind == "regression":
                errs.append(abs(outputs[i, 0] - label[i]))
            elif task.kind == "multiclass":
                errs.append(float(int(np.argmax(outputs[i])) != label[i]))
            else:
                errs.append(float((outputs[i, 0] >= 0.5) != label[i]))
        errors.append(sum(errs) / len(errs) if errs else None)
    known = [e for e in errors if e is not None]
    mean_known = sum(known) / len(known)
    errors = [mean_known if e is None else e for e in errors]
    mean = sum(errors) / len(errors)
    if mean <= 0:
        return np.ones(n_cells)
    return np.array([min(max(e / mean, 1 / max_weight), max_weight) for e in errors])


@pytest.mark.parametrize("task", [BINARY_TASK, MULTICLASS, REGRESSION],
                         ids=["binary", "multiclass", "regression"])
def test_attention_weights_match_a_loop(task: TaskSpec) -> None:
    rng = np.random.default_rng(3)
    n, n_cells = 200, 7  # cell 6 has no validation row: it gets the mean error
    cells = rng.integers(0, n_cells - 1, n)
    if task.kind == "regression":
        outputs, label = rng.normal(40, 10, (n, 1)), rng.normal(40, 10, n)
    elif task.kind == "multiclass":
        outputs, label = rng.random((n, 3)), rng.integers(0, 3, n)
    else:
        outputs, label = rng.random((n, 1)), rng.integers(0, 2, n)
    got = attention_weights(task, outputs, label, cells, n_cells, max_weight=2.0)
    want = _reference(task, outputs, label, cells, n_cells, 2.0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got.shape == (n_cells,) and np.all((got >= 0.5) & (got <= 2.0))


def test_perfect_model_weighs_every_cell_one() -> None:
    label = np.array([0, 1, 0, 1])
    outputs = label[:, None].astype(float)
    w = attention_weights(BINARY_TASK, outputs, label, np.array([0, 1, 2, 3]), 4, 4.0)
    assert w.tolist() == [1.0, 1.0, 1.0, 1.0]
