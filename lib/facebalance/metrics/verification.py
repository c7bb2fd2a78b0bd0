"""Face-pair verification: pair features and error rates, as pure array functions.

A verifier gives each pair of faces a *score* (higher: more likely the same person) and
accepts a pair when the score is at least a threshold. On ``same`` (1 for a genuine pair
of one identity, 0 for an impostor pair of two):

- FMR (false match rate, = FAR): share of impostor pairs accepted;
- FNMR (false non-match rate, = 1 - TAR): share of genuine pairs rejected;
- EER: the rate where FMR = FNMR; TAR at FAR f: the genuine acceptance at the lowest
  threshold whose FMR is at most f;
- per group (NIST FRVT): FMR and FNMR of the pairs of each group at *one global*
  threshold, and the max/min ratio across groups.

Pair features (after Taigman et al., DeepFace) of embeddings ``a`` and ``b``:
chi-square ``(a - b)^2 / (a + b)`` on non-negative features, ``|a - b|``, ``a * b`` and the
cosine. Embeddings with negative values (FaceNet's L2-normalized ones) enter the
chi-square as their positive and negative parts side by side, ``[max(f, 0), max(-f, 0)]``,
which is non-negative and keeps every coordinate's information.
"""

from __future__ import annotations

import numpy as np

from facebalance.errors import FacebalanceError

#: Pair feature kinds of :func:`pair_features`, in their column order.
PAIR_FEATURES = ("chi2", "absdiff", "product", "cosine")


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise FacebalanceError(
            f"verification: pair embeddings must be two (n, d) arrays of one shape, got "
            f"{a.shape} and {b.shape}")
    return a, b


def split_signs(f: np.ndarray) -> np.ndarray:
    """``[max(f, 0), max(-f, 0)]`` along the last axis: a non-negative copy of ``f``."""
    return np.concatenate([np.maximum(f, 0), np.maximum(-f, 0)], axis=-1)


def chi_square(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Per-coordinate chi-square distance ``(a - b)^2 / (a + b)`` of non-negative features
    (0 where both are 0); negative inputs are first split by sign (:func:`split_signs`)."""
    a, b = _pair(a, b)
    if (a < 0).any() or (b < 0).any():
        a, b = split_signs(a), split_signs(b)
    den = a + b
    return np.where(den > eps, (a - b) ** 2 / np.maximum(den, eps), 0.0)


def cosine(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Cosine similarity of each pair, ``(n,)``."""
    a, b = _pair(a, b)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, eps)


def pair_features(a: np.ndarray, b: np.ndarray,
                  kinds: tuple[str, ...] = PAIR_FEATURES) -> np.ndarray:
    """The features a verification head reads, ``(n, D)``, in the order of ``kinds``:
    ``chi2`` has ``2d`` columns (positive and negative parts; zeros for non-negative
    embeddings), ``absdiff`` and ``product`` ``d`` each, ``cosine`` one."""
    x, y = _pair(a, b)
    parts = []
    for kind in kinds:
        if kind == "chi2":
            # Always split by sign, so the width never depends on whether this batch happens
            # to hold a negative value (a head fitted on one must read the other).
            parts.append(chi_square(split_signs(x), split_signs(y)))
        elif kind == "absdiff":
            parts.append(np.abs(x - y))
        elif kind == "product":
            parts.append(x * y)
        elif kind == "cosine":
            parts.append(cosine(x, y)[:, None])
        else:
            raise FacebalanceError(
                f"unknown pair feature {kind!r}; valid: {', '.join(PAIR_FEATURES)}")
    return np.concatenate(parts, axis=1).astype(np.float32)


def _labels(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same).astype(bool)
    if scores.shape != same.shape or scores.ndim != 1:
        raise FacebalanceError(
            f"verification: scores {scores.shape} and labels {same.shape} must be two "
            "arrays of one length")
    if same.all() or not same.any():
        raise FacebalanceError("verification: rates need genuine and impostor pairs both")
    return scores, same


def match_rates(scores: np.ndarray, same: np.ndarray, threshold: float
                ) -> tuple[float, float]:
    """``(FMR, FNMR)`` when pairs with ``score >= threshold`` are accepted."""
    scores, same = _labels(scores, same)
    accept = scores >= threshold
    return float(accept[~same].mean()), float((~accept[same]).mean())


def roc(scores: np.ndarray, same: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FMR, TAR (= 1 - FNMR) and the thresholds, one point per distinct score (highest
    first), starting at (0, 0) with threshold +inf."""
    scores, same = _labels(scores, same)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # end of each tie block
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    fmr = np.r_[0.0, fp / (~same).sum()]
    tar = np.r_[0.0, tp / same.sum()]
    return fmr, tar, np.r_[np.inf, s[last]]


def auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC: the probability that a genuine pair scores above an impostor
    pair (ties count half), from ranks."""
    scores, same = _labels(scores, same)
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    s = scores[order]
    # Average ranks of ties.
    start = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    end = np.r_[start[1:], len(s)]
    avg = (start + end - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, end - start)
    n_pos, n_neg = same.sum(), (~same).sum()
    return float((ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> float:
    """The EER: FMR and FNMR interpolated linearly between ROC points where they cross."""
    fmr, tar, _ = roc(scores, same)
    fnmr = 1 - tar
    diff = fnmr - fmr  # decreasing from 1 to <= 0 along the ROC
    k = int(np.argmax(diff <= 0))
    if k == 0:
        return float(fmr[0])
    d0, d1 = diff[k - 1], diff[k]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fmr[k - 1] + t * (fmr[k] - fmr[k - 1]))


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """The TAR at the lowest threshold whose FMR is at most ``far``."""
    fmr, tar, _ = roc(scores, same)
    return float(tar[fmr <= far].max())


def threshold_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """The lowest threshold whose FMR is at most ``far``."""
    fmr, _, thr = roc(scores, same)
    return float(thr[fmr <= far].min())


def f1_score(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """F1 of "same person" at a threshold."""
    scores, same = _labels(scores, same)
    accept = scores >= threshold
    tp = (accept & same).sum()
    return float(2 * tp / (accept.sum() + same.sum()))


def group_match_rates(scores: np.ndarray, same: np.ndarray, groups: np.ndarray,
                      threshold: float) -> dict[str, object]:
    """FMR and FNMR of each group's pairs at one global threshold, and their spread.

    Returns
    -------
    dict
        ``by_group`` ``{group: {"fmr", "fnmr", "n_genuine", "n_impostor"}}`` and, over the
        groups with both kinds of pairs, ``fmr_ratio`` / ``fnmr_ratio`` (max / min; None
        when the min is 0) and ``fmr_gap`` / ``fnmr_gap`` (max - min).
    """
    scores, same = np.asarray(scores, np.float64), np.asarray(same).astype(bool)
    groups = np.asarray(groups)
    by_group: dict[str, dict[str, float | int | None]] = {}
    for g in np.unique(groups):
        m = groups == g
        gen, imp = m & same, m & ~same
        accept = scores >= threshold
        by_group[str(g)] = {
            "fmr": float(accept[imp].mean()) if imp.any() else None,
            "fnmr": float((~accept[gen]).mean()) if gen.any() else None,
            "n_genuine": int(gen.sum()), "n_impostor": int(imp.sum())}
    out: dict[str, object] = {"by_group": by_group}
    for rate in ("fmr", "fnmr"):
        v = np.array([r[rate] for r in by_group.values() if r[rate] is not None])
        out[f"{rate}_gap"] = float(v.max() - v.min()) if len(v) else None
        out[f"{rate}_ratio"] = (float(v.max() / v.min()) if len(v) and v.min() > 0
                                else None)
    return out


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the highest accuracy on these pairs (chosen on the val pairs and
    then applied, unchanged, to test): the midpoint between two adjacent distinct scores."""
    fmr, tar, thr = roc(scores, same)
    n_pos, n_neg = np.asarray(same).astype(bool).sum(), (~np.asarray(same).astype(bool)).sum()
    acc = (tar * n_pos + (1 - fmr) * n_neg) / (n_pos + n_neg)
    k = int(np.argmax(acc))
    if k == 0:  # reject everything
        return float(thr[1] + 1.0)
    if k + 1 < len(thr):
        return float((thr[k] + thr[k + 1]) / 2)  # accepts thr[k], rejects the next score
    return float(thr[k] - 1.0)


# Bootstrap: every metric above on many resamples of the pairs at once. A resample is a row
# of count weights (metrics.bootstrap.bootstrap_weights); weights of ones give the plain
# metric, integer weights the metric of the pairs repeated that often.


def weighted_roc(scores: np.ndarray, same: np.ndarray, weights: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """FMR and TAR of each weight row, ``(R, m + 1)``: one point per distinct score (highest
    first), starting at (0, 0), as :func:`roc` for weights ``(R, n)``."""
    scores, same = _labels(scores, same)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]  # first row of each tie block
    wg, wi = w[:, order] * same[order], w[:, order] * ~same[order]
    tp = np.cumsum(np.add.reduceat(wg, starts, axis=1), axis=1)
    fp = np.cumsum(np.add.reduceat(wi, starts, axis=1), axis=1)
    zero = np.zeros((len(w), 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        fmr = np.hstack([zero, fp / fp[:, -1:]])
        tar = np.hstack([zero, tp / tp[:, -1:]])
    return fmr, tar


def weighted_auc(scores: np.ndarray, same: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """:func:`auc` of each weight row ``(R,)`` (ties count half)."""
    scores, same = _labels(scores, same)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    pos = np.add.reduceat(w[:, order] * same[order], starts, axis=1)
    neg = np.add.reduceat(w[:, order] * ~same[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # impostor weight scoring below each block
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def eer_from_roc(fmr: np.ndarray, tar: np.ndarray) -> np.ndarray:
    """The equal error rate of each ROC row, interpolated as :func:`equal_error_rate`."""
    diff = (1 - tar) - fmr
    k = np.argmax(diff <= 0, axis=1)
    rows = np.arange(len(fmr))
    km = np.maximum(k - 1, 0)
    d0, d1 = diff[rows, km], diff[rows, k]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(d0 != d1, d0 / (d0 - d1), 0.0)
    out = fmr[rows, km] + t * (fmr[rows, k] - fmr[rows, km])
    out = np.where(k == 0, fmr[:, 0], out)
    # A resample without genuine or impostor pairs has no ROC (NaN rates): no EER.
    return np.where(np.isnan(fmr).any(axis=1) | np.isnan(tar).any(axis=1), np.nan, out)


def tar_at_far_from_roc(fmr: np.ndarray, tar: np.ndarray, far: float) -> np.ndarray:
    """The TAR at the lowest threshold whose FMR is at most ``far``, per ROC row (NaN for
    a row without genuine or impostor pairs)."""
    out = np.where(fmr <= far, tar, 0.0).max(axis=1)
    return np.where(np.isnan(fmr).any(axis=1) | np.isnan(tar).any(axis=1), np.nan, out)


def rates_at_threshold(scores: np.ndarray, same: np.ndarray, threshold: float,
                       weights: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, F1, FMR and FNMR of each weight row at one threshold, ``{name: (R,)}``."""
    scores, same = _labels(scores, same)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    accept = scores >= threshold
    tp, fn = w @ (accept & same), w @ (~accept & same)
    fp, tn = w @ (accept & ~same), w @ (~accept & ~same)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"accuracy": (tp + tn) / (tp + fn + fp + tn),
                "f1": 2 * tp / (2 * tp + fp + fn),
                "fmr": fp / (fp + tn), "fnmr": fn / (fn + tp)}


def verifier_metrics(scores: np.ndarray, same: np.ndarray, threshold: float,
                     fars: tuple[float, ...], weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every headline metric of a verifier on each weight row: ``auc``, ``eer``,
    ``tar_at_far_<f>``, and at ``threshold`` ``accuracy``, ``f1``, ``fmr``, ``fnmr``."""
    fmr, tar = weighted_roc(scores, same, weights)
    out = {"auc": weighted_auc(scores, same, weights),
           **rates_at_threshold(scores, same, threshold, weights),
           "eer": eer_from_roc(fmr, tar)}
    for far in fars:
        out[f"tar_at_far_{far:g}"] = tar_at_far_from_roc(fmr, tar, far)
    return out


def group_rates_weighted(scores: np.ndarray, same: np.ndarray, groups: np.ndarray,
                         threshold: float, weights: np.ndarray
                         ) -> tuple[list, dict[str, np.ndarray]]:
    """Per-group FMR and FNMR of each weight row at one global threshold.

    Pairs of group ``-1`` (two faces of different groups) count in no group. Returns the
    group values and ``{"fmr": (R, G), "fnmr": (R, G)}`` (NaN where a group has no pair of
    that kind in a resample).
    """
    scores, same = np.asarray(scores, np.float64), np.asarray(same).astype(bool)
    groups = np.asarray(groups)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    values = [g for g in np.unique(groups) if g != -1]
    if not values:  # every pair crosses groups
        empty = np.zeros((len(w), 0))
        return [], {"fmr": empty, "fnmr": empty.copy()}
    accept = scores >= threshold
    onehot = np.stack([groups == g for g in values], axis=1).astype(np.float64)  # (n, G)
    with np.errstate(invalid="ignore", divide="ignore"):
        fmr = (w @ (onehot * (accept & ~same)[:, None])) / (w @ (onehot * ~same[:, None]))
        fnmr = (w @ (onehot * (~accept & same)[:, None])) / (w @ (onehot * same[:, None]))
    return values, {"fmr": fmr, "fnmr": fnmr}


def max_min_ratio(rates: np.ndarray) -> np.ndarray:
    """Max / min across groups (last axis) of each row; NaN where the min is 0 or a group
    is undefined (NIST FRVT's ratio of the worst to the best group)."""
    rates = np.atleast_2d(rates)
    if rates.shape[1] == 0:
        return np.full(len(rates), np.nan)
    lo, hi = rates.min(axis=1), rates.max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(lo > 0, hi / lo, np.nan)
