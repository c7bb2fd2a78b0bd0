"""Multi-class, regression and K-group metrics against plain loops (and scikit-learn)."""

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import f1_score

from facebalance.metrics.bootstrap import bootstrap_weights
from facebalance.metrics.fairness import kl_divergence
from facebalance.metrics.tasks import (
    best_group_mae,
    class_accuracy_std,
    group_accuracy,
    group_mae,
    kl_to_pooled,
    macro_f1,
    mean_absolute_error,
    per_class_accuracy,
    root_mean_squared_error,
    weighted_mae,
    worst_group_mae,
)


def _classes(n: int = 400, k: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    right = rng.random(n) < 0.4 + 0.1 * y  # classes 0..4 get 40%..80% right
    pred = np.where(right, y, rng.integers(0, k, n))
    g = rng.integers(0, 3, n)
    return y, pred, g


def _ages(n: int = 500, seed: int = 0):
    rng = np.random.default_rng(seed)
    age = np.clip(rng.gamma(4.0, 8.0, n), 1, 100)
    pred = age + rng.normal(0, 3 + age / 10, n)  # older faces: larger errors
    group = np.minimum(age // 10, 7).astype(int)
    return age, pred, group


def test_per_class_accuracy_and_its_spread_match_a_loop() -> None:
    y, pred, _ = _classes()
    got = per_class_accuracy(y, pred)
    ref = [sum(p == c for t, p in zip(y, pred, strict=True) if t == c) / sum(y == c)
           for c in range(5)]
    np.testing.assert_allclose(got, ref)
    assert class_accuracy_std(y, pred) == pytest.approx(np.std(ref))
    assert got[4] > got[0]  # the data's design
    labelled = per_class_accuracy(y, pred, labels=[4, 9])
    assert labelled[0] == pytest.approx(ref[4]) and math.isnan(labelled[1])


def test_macro_f1_matches_scikit_learn_with_and_without_weights() -> None:
    y, pred, _ = _classes(seed=1)
    pred[:3] = 7  # a class only predicted, never true
    assert macro_f1(y, pred) == pytest.approx(f1_score(y, pred, average="macro"))
    w = np.random.default_rng(2).integers(0, 4, len(y)).astype(float)
    assert macro_f1(y, pred, w) == pytest.approx(
        f1_score(y, pred, average="macro", sample_weight=w))


def test_group_accuracy_of_multiclass_labels_matches_a_loop() -> None:
    y, pred, g = _classes(seed=3)
    groups, acc = group_accuracy(y, pred, g)
    assert groups.tolist() == [0, 1, 2]
    for k, grp in enumerate(groups):
        mask = g == grp
        assert acc[k] == pytest.approx(np.mean(y[mask] == pred[mask]))


def test_regression_errors_match_loops() -> None:
    age, pred, group = _ages()
    assert mean_absolute_error(age, pred) == pytest.approx(
        sum(abs(a - p) for a, p in zip(age, pred, strict=True)) / len(age))
    assert root_mean_squared_error(age, pred) == pytest.approx(
        math.sqrt(sum((a - p) ** 2 for a, p in zip(age, pred, strict=True)) / len(age)))
    groups, mae = group_mae(age, pred, group)
    ref = {int(gv): np.mean([abs(a - p) for a, p, gg in zip(age, pred, group, strict=True)
                             if gg == gv]) for gv in groups}
    np.testing.assert_allclose(mae, [ref[int(gv)] for gv in groups])
    assert worst_group_mae(age, pred, group) == pytest.approx(max(ref.values()))
    assert best_group_mae(age, pred, group) == pytest.approx(min(ref.values()))


def test_weighted_mae_is_the_papers_per_sample_weighting() -> None:
    """WMAE with w_i = N / (n_groups * n_g), written as the paper states it."""
    age, pred, group = _ages(seed=4)
    n, levels = len(age), np.unique(group)
    count = {gv: np.sum(group == gv) for gv in levels}
    ref = sum(n / (len(levels) * count[gg]) * abs(a - p)
              for a, p, gg in zip(age, pred, group, strict=True)) / n
    assert weighted_mae(age, pred, group) == pytest.approx(ref)
    # The skew makes it differ from the plain MAE: older groups are rarer and worse.
    assert weighted_mae(age, pred, group) > mean_absolute_error(age, pred) + 0.25


def test_count_weight_matrices_give_one_value_per_resample() -> None:
    age, pred, group = _ages(seed=5)
    w = bootstrap_weights(len(age), 6, seed=0)
    got = weighted_mae(age, pred, group, w)
    assert got.shape == (6,)
    for b in range(6):
        idx = np.repeat(np.arange(len(age)), w[b].astype(int))
        assert got[b] == pytest.approx(weighted_mae(age[idx], pred[idx], group[idx]))
    y, p, _ = _classes(seed=6)
    wc = bootstrap_weights(len(y), 4, seed=1)
    assert per_class_accuracy(y, p, sample_weight=wc).shape == (4, 5)
    assert macro_f1(y, p, wc).shape == (4,)


def _kl_loop(y, s, g, grp, bins=50, sigma=1.0):
    """KL(h_group || h_pooled) per class, then the mean over classes, one bin at a time."""
    values = []
    for label in (1, 0):
        def hist(mask):
            h = np.zeros(bins)
            for si, mi in zip(s, mask, strict=True):
                if mi:
                    h[min(int(si * bins), bins - 1)] += 1
            h = gaussian_filter1d(h, sigma, mode="reflect")
            return h / h.sum() + 1e-6
        a = hist((y == label) & (g == grp))
        b = hist(y == label)
        values.append(sum(ai * math.log(ai / bi) for ai, bi in zip(a, b, strict=True)))
    return np.mean(values)


def test_kl_to_pooled_matches_a_loop_for_four_groups() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 800)
    g = rng.choice(4, 800, p=[0.55, 0.25, 0.12, 0.08])
    s = np.clip(0.4 * y + 0.05 * g + rng.normal(0.3, 0.15, 800), 0, 1)
    groups, kl = kl_to_pooled(y, s, g)
    assert groups.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(kl, [_kl_loop(y, s, g, k) for k in range(4)], rtol=1e-9)
    assert kl[3] > kl[0]  # the group shifted most from the pooled scores


def test_kl_to_pooled_is_zero_for_identical_groups_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 2000)
    s = np.clip(0.4 * y + rng.normal(0.3, 0.15, 2000), 0, 1)
    g = np.tile([0, 1], 1000)
    _, same = kl_to_pooled(np.r_[y, y], np.r_[s, s], np.r_[np.zeros(2000), np.ones(2000)])
    np.testing.assert_allclose(same, 0.0, atol=1e-12)
    shifted = np.where(g == 1, np.clip(s + 0.2, 0, 1), s)
    _, kl = kl_to_pooled(y, shifted, g)
    assert kl.min() > 0.05
    # Same direction as the binary pairwise KL it generalizes.
    assert kl_divergence(y, shifted, g) > kl_divergence(y, s, g)
