"""Accuracy and fairness metrics (definitions follow gan-debiasing ``utils.py`` and Fairlearn).

Every function takes ``sample_weight`` either as ``None``, one weight per sample ``(n,)``,
or a matrix ``(B, n)`` of B weightings at once — bootstrap resamples are count weights, so
one call evaluates all resamples without a Python loop. With a matrix the result is an
array of B values, otherwise a float.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

from facebalance.errors import FacebalanceError

ERR_LENGTHS = "metrics: y_true, predictions and sensitive_features must have the same length"
ERR_NO_POSITIVES = "metrics: calibrated_threshold needs at least one positive label"


def _weights(sample_weight: np.ndarray | None, n: int) -> tuple[np.ndarray, bool]:
    """(B, n) float weights and whether the input was 1-D (so results are squeezed)."""
    if sample_weight is None:
        return np.ones((1, n)), True
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape[-1] != n:
        raise FacebalanceError(ERR_LENGTHS)
    return (w[None, :], True) if w.ndim == 1 else (w, False)


def _out(values: np.ndarray, squeeze: bool) -> float | np.ndarray:
    return float(values[0]) if squeeze else values


def _check(*arrays: np.ndarray) -> None:
    if len({len(a) for a in arrays}) != 1:
        raise FacebalanceError(ERR_LENGTHS)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def calibrated_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Threshold giving as many predicted positives as true positives (on validation data).

    Predictions are ``scores >= threshold``; the threshold is the k-th largest score where k
    is the number of positive labels (gan-debiasing ``calibrated_threshold``).
    """
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    _check(y_true, scores)
    k = int(np.sum(y_true == 1))
    if k == 0:
        raise FacebalanceError(ERR_NO_POSITIVES)
    return float(np.sort(scores)[::-1][k - 1])


def average_precision(y_true: np.ndarray, scores: np.ndarray,
                      sample_weight: np.ndarray | None = None) -> float | np.ndarray:
    """Average precision, sum over thresholds of (R_k - R_{k-1}) P_k (as scikit-learn).

    Ties in ``scores`` form one threshold, as in
    :func:`sklearn.metrics.average_precision_score`. Without a positive label (in the data
    or a resample) it is undefined: NaN, where scikit-learn warns and returns 0.
    """
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    _check(y_true, scores)
    w, squeeze = _weights(sample_weight, len(y_true))
    order = np.argsort(-scores, kind="mergesort")
    s, y, w = scores[order], (y_true[order] == 1).astype(np.float64), w[:, order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each tie block
    tp = np.cumsum(w * y, axis=1)[:, last]
    fp = np.cumsum(w * (1 - y), axis=1)[:, last]
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp[:, -1:])
    d_recall = np.diff(np.concatenate([np.zeros((len(w), 1)), recall], axis=1), axis=1)
    ap = np.nansum(d_recall * np.nan_to_num(precision), axis=1)
    ap[tp[:, -1] == 0] = np.nan  # no positive: no recall to average over
    return _out(ap, squeeze)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray,
             sample_weight: np.ndarray | None = None) -> float | np.ndarray:
    """Weighted fraction of correct predictions."""
    _check(y_true, y_pred)
    w, squeeze = _weights(sample_weight, len(y_true))
    correct = (np.asarray(y_true) == np.asarray(y_pred)).astype(np.float64)
    return _out(_ratio(w @ correct, w.sum(axis=1)), squeeze)


@dataclass
class GroupRates:
    """Per-group confusion rates: arrays of shape ``(B, n_groups)``.

    Attributes
    ----------
    groups
        Group values, in column order.
    n, accuracy, tpr, fpr, fnr, selection_rate
        Weighted count and rates per group.
    """

    groups: np.ndarray
    n: np.ndarray
    accuracy: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    fnr: np.ndarray
    selection_rate: np.ndarray

    def difference(self, name: str) -> np.ndarray:
        """Max minus min of a rate across groups (Fairlearn ``difference``)."""
        v = getattr(self, name)
        return np.nanmax(v, axis=1) - np.nanmin(v, axis=1)

    def ratio(self, name: str) -> np.ndarray:
        """Min over max of a rate across groups (Fairlearn ``ratio``)."""
        v = getattr(self, name)
        return _ratio(np.nanmin(v, axis=1), np.nanmax(v, axis=1))

    def std(self, name: str) -> np.ndarray:
        """Population standard deviation of a rate across groups."""
        return np.nanstd(getattr(self, name), axis=1)

    def frame(self, row: int = 0) -> pd.DataFrame:
        """One weighting's rates as a DataFrame indexed by group."""
        return pd.DataFrame({k: getattr(self, k)[row] for k in
                             ("n", "accuracy", "tpr", "fpr", "fnr", "selection_rate")},
                            index=pd.Index(self.groups, name="group"))


def group_rates(y_true: np.ndarray, y_pred: np.ndarray, sensitive_features: np.ndarray,
                sample_weight: np.ndarray | None = None) -> GroupRates:
    """Accuracy, TPR, FPR, FNR and selection rate of each group (binary labels)."""
    y_true, y_pred, g = map(np.asarray, (y_true, y_pred, sensitive_features))
    _check(y_true, y_pred, g)
    w, _ = _weights(sample_weight, len(y_true))
    groups = np.unique(g)
    onehot = (g[:, None] == groups[None, :]).astype(np.float64)  # (n, G)
    pos, pred = (y_true == 1).astype(np.float64), (y_pred == 1).astype(np.float64)
    n = w @ onehot
    p = w @ (onehot * pos[:, None])
    tp = w @ (onehot * (pos * pred)[:, None])
    fp = w @ (onehot * ((1 - pos) * pred)[:, None])
    correct = w @ (onehot * (pos == pred)[:, None])
    tpr = _ratio(tp, p)
    return GroupRates(groups=groups, n=n, accuracy=_ratio(correct, n), tpr=tpr,
                      fpr=_ratio(fp, n - p), fnr=1 - tpr, selection_rate=_ratio(tp + fp, n))


def deo(y_true: np.ndarray, y_pred: np.ndarray, sensitive_features: np.ndarray,
        sample_weight: np.ndarray | None = None) -> float | np.ndarray:
    """Difference in equality of opportunity: ``|FNR(group 0) - FNR(group 1)|``.

    With more than two groups: the largest FNR gap between any two groups.
    """
    _, squeeze = _weights(sample_weight, len(y_true))
    return _out(group_rates(y_true, y_pred, sensitive_features, sample_weight)
                .difference("fnr"), squeeze)


def demographic_parity_difference(y_true: np.ndarray, y_pred: np.ndarray,
                                  sensitive_features: np.ndarray,
                                  sample_weight: np.ndarray | None = None
                                  ) -> float | np.ndarray:
    """Largest gap in selection rate between groups (Fairlearn)."""
    _, squeeze = _weights(sample_weight, len(y_true))
    return _out(group_rates(y_true, y_pred, sensitive_features, sample_weight)
                .difference("selection_rate"), squeeze)


def equalized_odds_difference(y_true: np.ndarray, y_pred: np.ndarray,
                              sensitive_features: np.ndarray,
                              sample_weight: np.ndarray | None = None) -> float | np.ndarray:
    """The larger of the TPR gap and the FPR gap between groups (Fairlearn)."""
    _, squeeze = _weights(sample_weight, len(y_true))
    r = group_rates(y_true, y_pred, sensitive_features, sample_weight)
    return _out(np.maximum(r.difference("tpr"), r.difference("fpr")), squeeze)


def bias_amplification(y_true: np.ndarray, y_pred: np.ndarray, sensitive_features: np.ndarray,
                       sample_weight: np.ndarray | None = None,
                       reference_counts: np.ndarray | None = None) -> float | np.ndarray:
    """Directional bias amplification BA(A -> T) (Wang & Russakovsky 2021).

    For each target value t and group a: ``P(T_pred=t | A=a) - P(T=t | A=a)``, with the
    sign flipped where t and a are negatively correlated and zeroed where they are
    independent; the mean over the cells.

    Parameters
    ----------
    reference_counts
        ``(n_targets, n_groups)`` label counts that decide the correlation direction,
        normally from the training split (on a balanced test split the test's own labels
        show no correlation and BA would be 0). Default: the labels passed in.
    """
    y_true, y_pred, g = map(np.asarray, (y_true, y_pred, sensitive_features))
    _check(y_true, y_pred, g)
    w, squeeze = _weights(sample_weight, len(y_true))
    targets, groups = np.array([0, 1]), np.unique(g)
    g1 = (g[:, None] == groups[None, :]).astype(np.float64)  # (n, G)
    true_cells = np.stack([w @ (g1 * (y_true == t)[:, None]) for t in targets], axis=1)
    pred_cells = np.stack([w @ (g1 * (y_pred == t)[:, None]) for t in targets], axis=1)
    group_n = true_cells.sum(axis=1, keepdims=True)  # (B, 1, G)
    data = _ratio(true_cells, group_n)
    pred = _ratio(pred_cells, group_n)
    ref = true_cells[:1] if reference_counts is None else np.asarray(
        reference_counts, dtype=np.float64)[None]
    p_t_a = _ratio(ref, ref.sum(axis=1, keepdims=True))
    p_t = ref.sum(axis=2, keepdims=True) / ref.sum(axis=(1, 2), keepdims=True)
    sign = np.sign(np.round(p_t_a - p_t, 12))
    return _out(np.nanmean((pred - data) * sign, axis=(1, 2)), squeeze)


def score_bins(scores: np.ndarray, bins: int) -> np.ndarray:
    """``(n, bins)`` one-hot rows: which of ``bins`` equal bins of [0, 1] each score is in."""
    idx = np.clip((np.asarray(scores) * bins).astype(int), 0, bins - 1)
    onehot = np.zeros((len(idx), bins))
    onehot[np.arange(len(idx)), idx] = 1.0
    return onehot


def smoothed_distribution(hist: np.ndarray, sigma: float) -> np.ndarray:
    """Histograms (last axis) smoothed with a Gaussian of ``sigma`` bins, normalised and
    offset by 1e-6, so a KL divergence between two of them is finite."""
    h = gaussian_filter1d(hist, sigma, axis=-1, mode="reflect")
    return _ratio(h, h.sum(axis=-1, keepdims=True)) + 1e-6


def kl_divergence(y_true: np.ndarray, scores: np.ndarray, sensitive_features: np.ndarray,
                  sample_weight: np.ndarray | None = None, bins: int = 50,
                  sigma: float = 1.0) -> float | np.ndarray:
    """Divergence between the groups' score distributions, within each true class.

    Scores in [0, 1] are binned into ``bins`` equal bins; each histogram is smoothed with a
    Gaussian of ``sigma`` bins, normalised and offset by 1e-6 (gan-debiasing
    ``smoothed_hist_kl_distance``, but with shared bins so the histograms are comparable).
    The result is the median of KL(g0||g1) and KL(g1||g0) over positives and negatives.
    """
    y_true, scores, g = map(np.asarray, (y_true, scores, sensitive_features))
    _check(y_true, scores, g)
    w, squeeze = _weights(sample_weight, len(y_true))
    groups = np.unique(g)
    if len(groups) != 2:
        raise FacebalanceError("metrics: kl_divergence needs exactly two groups")
    onehot = score_bins(scores, bins)
    values = []
    for label in (1, 0):
        hists = []
        for grp in groups:
            mask = ((y_true == label) & (g == grp)).astype(np.float64)
            hists.append(smoothed_distribution(w @ (onehot * mask[:, None]), sigma))
        a, b = hists
        values += [np.sum(a * np.log(a / b), axis=1), np.sum(b * np.log(b / a), axis=1)]
    return _out(np.median(np.stack(values, axis=1), axis=1), squeeze)
