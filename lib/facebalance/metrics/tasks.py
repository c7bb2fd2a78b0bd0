"""Metrics of the tasks beyond one binary pair: multi-class labels, age regression, K groups.

Pure array functions with the conventions of :mod:`facebalance.metrics.fairness`:
``sample_weight`` is ``None``, one weight per sample ``(n,)`` or a matrix ``(B, n)`` of B
weightings (bootstrap count weights), and the result is a float / ``(n_columns,)`` array for
the first two and a ``(B,)`` / ``(B, n_columns)`` array for a matrix.

Formulas:

- macro-F1: mean over classes of ``2 TP / (2 TP + FP + FN)``, over the classes present in
  ``y_true`` or ``y_pred`` (scikit-learn's ``f1_score(average="macro")``).
- per-class accuracy: the recall of each class, ``TP_c / n_c``; its spread across classes
  (population std) is the FairFace transfer-learning study's fairness measure.
- weighted MAE ("Fighting Ageism in datasets"): sample i of group g weighs
  ``N / (n_groups * n_g)``, so ``WMAE = sum_i w_i |e_i| / N`` = the mean of the groups' MAEs.
- KL to the pooled scores: for each group, ``KL(h_g || h_all)`` of smoothed score
  histograms within each true class, averaged over the two classes; reported per group,
  and as max and mean over groups (defined for any number of groups).
"""

from __future__ import annotations

import numpy as np

from facebalance.metrics.fairness import (
    _check,
    _out,
    _ratio,
    _weights,
    score_bins,
    smoothed_distribution,
)


def _onehot(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    return (values[:, None] == levels[None, :]).astype(np.float64)


def _out_rows(values: np.ndarray, squeeze: bool) -> np.ndarray:
    """``(B, k)`` results: the first row alone for an unweighted / 1-D weighting."""
    return values[0] if squeeze else values


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray,
                       labels: np.ndarray | None = None,
                       sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Accuracy within each true class (its recall), ``(n_classes,)`` or ``(B, n_classes)``.

    ``labels`` fixes the classes and their order (default: those in ``y_true``); a class
    without samples gives NaN.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    _check(y_true, y_pred)
    w, squeeze = _weights(sample_weight, len(y_true))
    labels = np.unique(y_true) if labels is None else np.asarray(labels)
    onehot = _onehot(y_true, labels)
    hits = w @ (onehot * (y_true == y_pred)[:, None])
    return _out_rows(_ratio(hits, w @ onehot), squeeze)


def class_accuracy_std(y_true: np.ndarray, y_pred: np.ndarray,
                       labels: np.ndarray | None = None,
                       sample_weight: np.ndarray | None = None) -> float | np.ndarray:
    """Population std of :func:`per_class_accuracy` across classes (lower: more even)."""
    _, squeeze = _weights(sample_weight, len(y_true))
    acc = np.atleast_2d(per_class_accuracy(y_true, y_pred, labels, sample_weight))
    return _out(np.nanstd(acc, axis=1), squeeze)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray,
             sample_weight: np.ndarray | None = None) -> float | np.ndarray:
    """Unweighted mean over classes of F1 (scikit-learn ``average="macro"``)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    _check(y_true, y_pred)
    w, squeeze = _weights(sample_weight, len(y_true))
    labels = np.union1d(y_true, y_pred)
    t, p = _onehot(y_true, labels), _onehot(y_pred, labels)
    tp = w @ (t * p)
    fp = w @ ((1 - t) * p)
    fn = w @ (t * (1 - p))
    f1 = np.where(2 * tp + fp + fn > 0, _ratio(2 * tp, 2 * tp + fp + fn), 0.0)
    return _out(f1.mean(axis=1), squeeze)


def group_accuracy(y_true: np.ndarray, y_pred: np.ndarray, sensitive_features: np.ndarray,
                   sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy of any labels (multi-class too) within each group.

    Returns
    -------
    groups, accuracy
        The group values and ``(n_groups,)`` / ``(B, n_groups)`` accuracies.
    """
    y_true, y_pred, g = map(np.asarray, (y_true, y_pred, sensitive_features))
    _check(y_true, y_pred, g)
    w, squeeze = _weights(sample_weight, len(y_true))
    groups = np.unique(g)
    onehot = _onehot(g, groups)
    hits = w @ (onehot * (y_true == y_pred)[:, None])
    return groups, _out_rows(_ratio(hits, w @ onehot), squeeze)


def mean_absolute_error(y_true: np.ndarray, y_pred: np.ndarray,
                        sample_weight: np.ndarray | None = None) -> float | np.ndarray:
    """Weighted mean of ``|y - y_hat|``."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    _check(y_true, y_pred)
    w, squeeze = _weights(sample_weight, len(y_true))
    return _out(_ratio(w @ np.abs(y_true - y_pred), w.sum(axis=1)), squeeze)


def root_mean_squared_error(y_true: np.ndarray, y_pred: np.ndarray,
                            sample_weight: np.ndarray | None = None) -> float | np.ndarray:
    """Square root of the weighted mean of ``(y - y_hat)^2``."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    _check(y_true, y_pred)
    w, squeeze = _weights(sample_weight, len(y_true))
    return _out(np.sqrt(_ratio(w @ (y_true - y_pred) ** 2, w.sum(axis=1))), squeeze)


def group_mae(y_true: np.ndarray, y_pred: np.ndarray, sensitive_features: np.ndarray,
              sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MAE within each group (e.g. 10-year age groups).

    Returns
    -------
    groups, mae
        The group values and ``(n_groups,)`` / ``(B, n_groups)`` MAEs (NaN for a group with
        no weight in a resample).
    """
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    g = np.asarray(sensitive_features)
    _check(y_true, y_pred, g)
    w, squeeze = _weights(sample_weight, len(y_true))
    groups = np.unique(g)
    onehot = _onehot(g, groups)
    err = w @ (onehot * np.abs(y_true - y_pred)[:, None])
    return groups, _out_rows(_ratio(err, w @ onehot), squeeze)


def weighted_mae(y_true: np.ndarray, y_pred: np.ndarray, sensitive_features: np.ndarray,
                 sample_weight: np.ndarray | None = None) -> float | np.ndarray:
    """Weighted MAE of "Fighting Ageism in datasets": every group counts equally.

    Sample i of group g weighs ``N / (n_groups * n_g)``; the result equals the mean of the
    groups' MAEs (groups absent from a resample are left out of that resample's mean).
    """
    _, squeeze = _weights(sample_weight, len(y_true))
    _, mae = group_mae(y_true, y_pred, sensitive_features, sample_weight)
    return _out(np.nanmean(np.atleast_2d(mae), axis=1), squeeze)


def worst_group_mae(y_true: np.ndarray, y_pred: np.ndarray, sensitive_features: np.ndarray,
                    sample_weight: np.ndarray | None = None) -> float | np.ndarray:
    """The largest MAE of any group."""
    _, squeeze = _weights(sample_weight, len(y_true))
    _, mae = group_mae(y_true, y_pred, sensitive_features, sample_weight)
    return _out(np.nanmax(np.atleast_2d(mae), axis=1), squeeze)


def best_group_mae(y_true: np.ndarray, y_pred: np.ndarray, sensitive_features: np.ndarray,
                   sample_weight: np.ndarray | None = None) -> float | np.ndarray:
    """The smallest MAE of any group."""
    _, squeeze = _weights(sample_weight, len(y_true))
    _, mae = group_mae(y_true, y_pred, sensitive_features, sample_weight)
    return _out(np.nanmin(np.atleast_2d(mae), axis=1), squeeze)


def kl_to_pooled(y_true: np.ndarray, scores: np.ndarray, sensitive_features: np.ndarray,
                 sample_weight: np.ndarray | None = None, bins: int = 50,
                 sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """KL divergence of each group's score histogram from the pooled one (any K groups).

    Within each true class (1, then 0) scores in [0, 1] are binned, smoothed with a
    Gaussian of ``sigma`` bins, normalised and offset by 1e-6 (as
    :func:`~facebalance.metrics.fairness.kl_divergence`); a group's value is the mean of
    ``KL(h_group || h_pooled)`` over the two classes.

    Returns
    -------
    groups, kl
        The group values and ``(n_groups,)`` / ``(B, n_groups)`` divergences; take
        ``max`` and ``mean`` over the last axis for the summary.
    """
    y_true, scores, g = map(np.asarray, (y_true, scores, sensitive_features))
    _check(y_true, scores, g)
    w, squeeze = _weights(sample_weight, len(y_true))
    groups = np.unique(g)
    bin1 = score_bins(scores, bins)
    per_class = []
    for label in (1, 0):
        in_class = (y_true == label).astype(np.float64)
        hists = np.stack([w @ (bin1 * (in_class * (g == grp))[:, None]) for grp in groups],
                         axis=1)  # (B, G, bins)
        pooled = hists.sum(axis=1, keepdims=True)
        a, b = smoothed_distribution(hists, sigma), smoothed_distribution(pooled, sigma)
        per_class.append(np.sum(a * np.log(a / b), axis=-1))
    return groups, _out_rows(np.mean(per_class, axis=0), squeeze)
