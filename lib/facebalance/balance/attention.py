"""Validation attention (``val_attention``): each training cell's loss weight follows its
validation error, recomputed every epoch.

The error of a cell is the primary target's error rate (classification, threshold 0.5 or
argmax) or its MAE (regression); the weight is that error over the mean cell error, clipped
to ``[1 / max_weight, max_weight]``, so cells the model gets wrong more often weigh more.
The training loop (:class:`facebalance.models.train.ValAttention`) predicts the validation
split and calls :func:`attention_weights`; this module is the arithmetic, on arrays.
"""

from __future__ import annotations

import numpy as np

from facebalance.task import TaskSpec


def error_weights(errors: np.ndarray, max_weight: float) -> np.ndarray:
    """Loss multipliers of cells from their validation error (error rate or MAE): error over
    the mean error, clipped to ``[1 / max_weight, max_weight]`` (equal errors: all 1)."""
    err = np.asarray(errors, dtype=np.float64)
    if err.mean() <= 0:
        return np.ones_like(err)
    return np.clip(err / err.mean(), 1.0 / max_weight, max_weight)


def cell_weights(accuracy: np.ndarray, max_weight: float) -> np.ndarray:
    """:func:`error_weights` of the error rates ``1 - accuracy``."""
    return error_weights(1.0 - np.asarray(accuracy, dtype=np.float64), max_weight)


def primary_error(task: TaskSpec, outputs: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per-sample error of the primary head: wrong (0/1) for classification at threshold 0.5
    or argmax, the absolute error for regression."""
    head, cols = task.heads[0], task.slices()[0]
    out = outputs[:, cols]
    if head.kind == "regression":
        return np.abs(out[:, 0] - label)
    pred = out.argmax(axis=1) if head.kind == "multiclass" else out[:, 0] >= 0.5
    return (pred != np.asarray(label).astype(np.int64)).astype(np.float64)


def attention_weights(task: TaskSpec, outputs: np.ndarray, label: np.ndarray,
                      cells: np.ndarray, n_cells: int, max_weight: float) -> np.ndarray:
    """Per-cell loss multipliers from a model's validation predictions.

    Parameters
    ----------
    task
        The task the outputs belong to.
    outputs
        ``(n, num_outputs)`` predictions of the validation rows (``head_outputs``).
    label
        Their primary target.
    cells
        Their cell (:func:`facebalance.task.cell_ids`), numbered as the training set's.
    n_cells
        Number of cells.
    max_weight
        ``augment.attention_max``.

    Returns
    -------
    numpy.ndarray
        ``(n_cells,)`` multipliers; a cell absent from validation gets the mean error's.
    """
    err = primary_error(task, outputs, label)
    n = np.bincount(cells, minlength=n_cells)
    present = n > 0
    if task.kind == "regression":
        total = np.bincount(cells, weights=err, minlength=n_cells)
        cell_err = np.divide(total, n, out=np.zeros(n_cells), where=present)
    else:
        hits = np.bincount(cells, weights=1.0 - err, minlength=n_cells)
        cell_err = 1.0 - np.divide(hits, n, out=np.ones(n_cells), where=present)
    # A cell absent from validation cannot be judged: it gets the mean error (weight 1).
    cell_err[~present] = cell_err[present].mean() if present.any() else 0.0
    return error_weights(cell_err, max_weight)
