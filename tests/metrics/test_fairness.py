"""Each metric against a plain reference loop (and AP against scikit-learn)."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from sklearn.metrics import average_precision_score

from facebalance.errors import FacebalanceError
from facebalance.metrics.bootstrap import bootstrap_weights, summarize
from facebalance.metrics.fairness import (
    ERR_LENGTHS,
    ERR_NO_POSITIVES,
    accuracy,
    average_precision,
    bias_amplification,
    calibrated_threshold,
    demographic_parity_difference,
    deo,
    equalized_odds_difference,
    group_rates,
    kl_divergence,
)


def _data(n: int = 300, seed: int = 0, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    g = rng.integers(0, 2, n)
    s = np.clip(0.35 * y + 0.15 * g + rng.normal(0.3, 0.2, n), 0, 1)
    if ties:
        s = np.round(s, 1)
    return y, g, s


def _loop_rates(y, p, g, w):
    out = {}
    for grp in sorted(set(g)):
        n = pos = tp = fp = correct = sel = 0.0
        for yi, pi, gi, wi in zip(y, p, g, w, strict=True):
            if gi != grp:
                continue
            n += wi
            pos += wi * (yi == 1)
            tp += wi * (yi == 1 and pi == 1)
            fp += wi * (yi == 0 and pi == 1)
            correct += wi * (yi == pi)
            sel += wi * (pi == 1)
        out[grp] = {"acc": correct / n, "tpr": tp / pos, "fpr": fp / (n - pos),
                    "sel": sel / n}
    return out


@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_matches_sklearn(ties: bool) -> None:
    y, _, s = _data(ties=ties)
    w = np.random.default_rng(1).integers(0, 4, len(y)).astype(float)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert average_precision(y, s, w) == pytest.approx(
        average_precision_score(y, s, sample_weight=w), abs=1e-12)


def test_average_precision_without_positives_is_undefined_not_zero() -> None:
    """All-negative labels (or a resample without positives) have no recall to average:
    NaN, which reports show as n/a (it was 0.000, read as a model that finds nothing)."""
    s = np.array([0.9, 0.1, 0.4, 0.7])
    assert np.isnan(average_precision(np.zeros(4), s))
    weights = np.array([[1.0, 1, 1, 1], [0, 1, 1, 0], [2, 0, 0, 1]])  # resample 2: none
    y = np.array([1, 0, 0, 1])
    ap = average_precision(y, s, weights)
    assert ap[0] == pytest.approx(average_precision_score(y, s)) and np.isnan(ap[1])
    assert ap[2] == pytest.approx(average_precision_score(y, s, sample_weight=weights[2]))


def test_calibrated_threshold_predicts_as_many_positives_as_labels() -> None:
    y, _, s = _data()
    thr = calibrated_threshold(y, s)
    assert (s >= thr).sum() == y.sum()
    with pytest.raises(FacebalanceError, match=ERR_NO_POSITIVES):
        calibrated_threshold(np.zeros(3), np.ones(3))


def test_group_rates_and_derived_gaps_match_loop() -> None:
    y, g, s = _data(seed=3)
    p = (s > 0.5).astype(int)
    w = np.random.default_rng(2).integers(0, 3, len(y)).astype(float)
    ref = _loop_rates(y, p, g, w)
    rates = group_rates(y, p, g, w).frame()
    for grp, r in ref.items():
        assert rates.loc[grp, "accuracy"] == pytest.approx(r["acc"])
        assert rates.loc[grp, "tpr"] == pytest.approx(r["tpr"])
        assert rates.loc[grp, "fpr"] == pytest.approx(r["fpr"])
    assert deo(y, p, g, w) == pytest.approx(abs((1 - ref[0]["tpr"]) - (1 - ref[1]["tpr"])))
    assert demographic_parity_difference(y, p, g, w) == pytest.approx(
        abs(ref[0]["sel"] - ref[1]["sel"]))
    assert equalized_odds_difference(y, p, g, w) == pytest.approx(
        max(abs(ref[0]["tpr"] - ref[1]["tpr"]), abs(ref[0]["fpr"] - ref[1]["fpr"])))
    correct = sum(wi * (yi == pi) for yi, pi, wi in zip(y, p, w, strict=True))
    assert accuracy(y, p, w) == pytest.approx(correct / w.sum())


def _loop_ba(y, p, g, reference):
    """Directional BA(A->T) written as in gan-debiasing's get_bias_amplification loop."""
    counts_true = np.zeros((2, 2))
    counts_pred = np.zeros((2, 2))
    for yi, pi, gi in zip(y, p, g, strict=True):
        counts_true[yi, gi] += 1
        counts_pred[pi, gi] += 1
    total = reference.sum()
    diff = np.zeros((2, 2))
    for t in range(2):
        for a in range(2):
            data = counts_true[t, a] / counts_true[:, a].sum()
            pred = counts_pred[t, a] / counts_true[:, a].sum()
            p_t_a = reference[t, a] / reference[:, a].sum()
            p_t = reference[t, :].sum() / total
            sign = np.sign(p_t_a - p_t)
            diff[t, a] = (pred - data) * sign
    return diff.mean()


def test_bias_amplification_matches_loop() -> None:
    y, g, s = _data(seed=4)
    p = (s > 0.55).astype(int)
    train = np.array([[800, 900], [300, 20]])  # blond rare among men in training
    assert bias_amplification(y, p, g, reference_counts=train) == pytest.approx(
        _loop_ba(y, p, g, train))
    own = np.array([[np.sum((y == t) & (g == a)) for a in (0, 1)] for t in (0, 1)])
    assert bias_amplification(y, p, g) == pytest.approx(_loop_ba(y, p, g, own))


def test_bias_amplification_is_zero_for_perfect_predictions() -> None:
    y, g, _ = _data(seed=5)
    assert bias_amplification(y, y, g, reference_counts=np.array([[5, 9], [9, 1]])) == 0.0


def _loop_kl(y, s, g, bins):
    def hist(mask):
        h = np.zeros(bins)
        for si, m in zip(s, mask, strict=True):
            if m:
                h[min(int(si * bins), bins - 1)] += 1
        h = gaussian_filter(h, 1.0)
        return h / h.sum() + 1e-6

    vals = []
    for label in (1, 0):
        a = hist((y == label) & (g == 0))
        b = hist((y == label) & (g == 1))
        vals += [sum(ai * np.log(ai / bi) for ai, bi in zip(a, b, strict=True)),
                 sum(bi * np.log(bi / ai) for ai, bi in zip(a, b, strict=True))]
    return float(np.median(vals))


def test_kl_matches_loop_and_is_zero_for_identical_groups() -> None:
    y, g, s = _data(seed=6)
    assert kl_divergence(y, s, g, bins=20) == pytest.approx(_loop_kl(y, s, g, 20))
    y2, s2 = np.r_[y, y], np.r_[s, s]
    g2 = np.r_[np.zeros(len(y), int), np.ones(len(y), int)]
    assert kl_divergence(y2, s2, g2) == pytest.approx(0.0, abs=1e-9)


def test_weight_matrix_equals_explicit_resampling() -> None:
    """A bootstrap row of count weights gives the metric of the resampled arrays."""
    y, g, s = _data(n=120, seed=7)
    p = (s > 0.5).astype(int)
    w = bootstrap_weights(len(y), 5, seed=3)
    assert w.shape == (5, 120) and (w.sum(axis=1) == 120).all()
    for fn, args in [(average_precision, (y, s)), (deo, (y, p, g)),
                     (kl_divergence, (y, s, g)), (bias_amplification, (y, p, g))]:
        batch = fn(*args, sample_weight=w)
        for b in range(5):
            idx = np.repeat(np.arange(len(y)), w[b])
            expanded = fn(*(np.asarray(a)[idx] for a in args))
            if fn is bias_amplification:
                own = np.array([[np.sum((y == t) & (g == a)) for a in (0, 1)] for t in (0, 1)])
                batch_b = fn(*args, sample_weight=w, reference_counts=own)[b]
                expanded = fn(*(np.asarray(a)[idx] for a in args), reference_counts=own)
                assert batch_b == pytest.approx(expanded)
            else:
                assert batch[b] == pytest.approx(expanded)


def test_bootstrap_is_seeded_and_summary_orders() -> None:
    np.testing.assert_array_equal(bootstrap_weights(50, 10, 1), bootstrap_weights(50, 10, 1))
    s = summarize(np.arange(1001.0))
    assert s == {"median": 500.0, "lo": 25.0, "hi": 975.0}


def test_length_mismatch_is_reported() -> None:
    with pytest.raises(FacebalanceError, match=ERR_LENGTHS):
        deo(np.zeros(3), np.zeros(4), np.zeros(3))


def _loop_ba_k(y, p, g, reference):
    """Directional BA(A->T) with any number of groups, one (t, a) cell at a time."""
    groups = sorted(set(g))
    total = reference.sum()
    cells = []
    for t in range(2):
        for k, a in enumerate(groups):
            n_a = sum(1 for gi in g if gi == a)
            data = sum(1 for yi, gi in zip(y, g, strict=True) if yi == t and gi == a) / n_a
            pred = sum(1 for pi, gi in zip(p, g, strict=True) if pi == t and gi == a) / n_a
            sign = np.sign(reference[t, k] / reference[:, k].sum() - reference[t].sum() / total)
            cells.append((pred - data) * sign)
    return float(np.mean(cells))


def test_k_group_deo_and_bias_amplification_match_loops() -> None:
    """Four skin-tone-like groups (0.55/0.25/0.12/0.08): DEO is the largest pairwise FNR
    gap, BA the mean over every (target, group) cell."""
    rng = np.random.default_rng(11)
    g = rng.choice(4, 3000, p=[0.55, 0.25, 0.12, 0.08])
    y = rng.integers(0, 2, 3000)
    p = np.where(rng.random(3000) < 0.75 - 0.1 * g, y, 1 - y)  # worse for rarer groups
    fnr = []
    for grp in range(4):
        pos = (y == 1) & (g == grp)
        fnr.append(np.sum(pos & (p == 0)) / np.sum(pos))
    gaps = [abs(a - b) for i, a in enumerate(fnr) for b in fnr[i + 1:]]
    assert deo(y, p, g) == pytest.approx(max(gaps))
    train = np.array([[500, 300, 200, 100], [100, 150, 40, 10]])
    assert bias_amplification(y, p, g, reference_counts=train) == pytest.approx(
        _loop_ba_k(y, p, g, train))
    # K = 2 is today's binary definition.
    two = g < 2
    assert deo(y[two], p[two], g[two]) == pytest.approx(abs(fnr[0] - fnr[1]))
    assert bias_amplification(y[two], p[two], g[two], reference_counts=train[:, :2]) == \
        pytest.approx(_loop_ba(y[two], p[two], g[two], train[:, :2]))
