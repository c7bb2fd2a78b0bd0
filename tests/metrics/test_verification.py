import numpy as np
import pytest

from facebalance.choices import VERIFY_FEATURES
from facebalance.errors import FacebalanceError
from facebalance.metrics.bootstrap import bootstrap_weights
from facebalance.metrics.verification import (
    PAIR_FEATURES,
    auc,
    best_threshold,
    chi_square,
    cosine,
    eer_from_roc,
    equal_error_rate,
    f1_score,
    group_match_rates,
    group_rates_weighted,
    match_rates,
    max_min_ratio,
    pair_features,
    rates_at_threshold,
    roc,
    split_signs,
    tar_at_far,
    tar_at_far_from_roc,
    threshold_at_far,
    verifier_metrics,
    weighted_auc,
    weighted_roc,
)


def _scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.4
    scores = np.round(rng.normal(same * 1.5, 1.0), 1)  # rounded: ties on purpose
    return scores, same


def test_chi_square_matches_a_loop_and_splits_negative_values() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 5)), rng.random((4, 5))
    b[0, 0] = a[0, 0] = 0.0
    loop = np.zeros((4, 5))
    for i in range(4):
        for j in range(5):
            s = a[i, j] + b[i, j]
            loop[i, j] = 0.0 if s == 0 else (a[i, j] - b[i, j]) ** 2 / s
    np.testing.assert_allclose(chi_square(a, b), loop)
    f, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    out = chi_square(f, g)
    assert out.shape == (3, 8) and (out >= 0).all()
    np.testing.assert_allclose(out, chi_square(split_signs(f), split_signs(g)))
    np.testing.assert_allclose(split_signs(np.array([[1.0, -2.0]])), [[1.0, 0.0, 0.0, 2.0]])


def test_pair_features_and_cosine() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random((6, 3)), rng.random((6, 3))
    feats = pair_features(a, b)
    assert feats.shape == (6, 6 + 3 + 3 + 1) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[:, :3], chi_square(a, b), rtol=1e-6)
    assert (feats[:, 3:6] == 0).all()  # non-negative embeddings: no negative part
    np.testing.assert_allclose(feats[:, 6:9], np.abs(a - b), rtol=1e-6)
    np.testing.assert_allclose(feats[:, 9:12], a * b, rtol=1e-6)
    # The width is the same whether or not the embeddings hold negative values.
    assert pair_features(a - 0.5, b).shape == feats.shape
    loop = [a[i] @ b[i] / np.linalg.norm(a[i]) / np.linalg.norm(b[i]) for i in range(6)]
    np.testing.assert_allclose(cosine(a, b), loop)
    np.testing.assert_allclose(feats[:, 12], loop, rtol=1e-6)
    with pytest.raises(FacebalanceError, match="unknown pair feature 'l2'"):
        pair_features(a, b, ("l2",))
    with pytest.raises(FacebalanceError, match=r"two \(n, d\) arrays of one shape"):
        pair_features(a, b[:, :2])


def test_rates_roc_auc_against_loops() -> None:
    scores, same = _scores(300, 2)
    fmr, fnmr = match_rates(scores, same, 0.7)
    pairs = list(zip(scores, same, strict=True))
    assert fmr == pytest.approx(np.mean([s >= 0.7 for s, y in pairs if not y]))
    assert fnmr == pytest.approx(np.mean([s < 0.7 for s, y in pairs if y]))
    rf, rt, thr = roc(scores, same)
    for k in range(1, len(thr)):  # every ROC point is the rates at its threshold
        f, n = match_rates(scores, same, thr[k])
        assert rf[k] == pytest.approx(f) and rt[k] == pytest.approx(1 - n)
    assert (rf[0], rt[0], rf[-1], rt[-1]) == (0.0, 0.0, 1.0, 1.0)
    pos, neg = scores[same], scores[~same]
    pairs = [(p > q) + 0.5 * (p == q) for p in pos for q in neg]
    assert auc(scores, same) == pytest.approx(np.mean(pairs))
    assert auc(scores, same) == pytest.approx(np.trapezoid(rt, rf))
    # TAR at FAR: the best TAR among thresholds whose FMR is at most the FAR.
    for far in (0.01, 0.1, 0.3):
        best = max(1 - match_rates(scores, same, t)[1] for t in np.unique(scores)
                   if match_rates(scores, same, t)[0] <= far)
        assert tar_at_far(scores, same, far) == pytest.approx(best)
        assert match_rates(scores, same, threshold_at_far(scores, same, far))[0] <= far
    tp = np.sum((scores >= 0.7) & same)
    assert f1_score(scores, same, 0.7) == pytest.approx(
        2 * tp / (2 * tp + np.sum((scores >= 0.7) & ~same) + np.sum((scores < 0.7) & same)))


def test_equal_error_rate_where_the_rates_cross() -> None:
    scores, same = _scores(2000, 3)
    eer = equal_error_rate(scores, same)
    grid = np.linspace(scores.min(), scores.max(), 400)
    rates = np.array([match_rates(scores, same, t) for t in grid])
    k = np.argmin(np.abs(rates[:, 0] - rates[:, 1]))
    assert eer == pytest.approx(rates[k].mean(), abs=0.02)
    perfect = equal_error_rate(np.array([0.0, 0.1, 0.9, 1.0]), np.array([0, 0, 1, 1]))
    assert perfect == 0.0


def test_group_rates_at_one_threshold_against_a_loop() -> None:
    scores, same = _scores(600, 4)
    groups = np.random.default_rng(5).choice(["a", "b", "c"], 600)
    out = group_match_rates(scores, same, groups, 0.7)
    for g in "abc":
        m = groups == g
        f, n = match_rates(scores[m], same[m], 0.7)
        assert out["by_group"][g]["fmr"] == pytest.approx(f)
        assert out["by_group"][g]["fnmr"] == pytest.approx(n)
    fmrs = [out["by_group"][g]["fmr"] for g in "abc"]
    assert out["fmr_ratio"] == pytest.approx(max(fmrs) / min(fmrs))
    assert out["fmr_gap"] == pytest.approx(max(fmrs) - min(fmrs))
    with pytest.raises(FacebalanceError, match="genuine and impostor pairs both"):
        match_rates(scores[same], same[same], 0.0)


def test_best_threshold_maximizes_accuracy_against_a_scan() -> None:
    scores, same = _scores(500, 6)
    t = best_threshold(scores, same)
    def acc(th: float) -> float:
        return float(np.mean((scores >= th) == same))
    scan = max(acc(th) for th in np.r_[np.unique(scores), np.inf])
    assert acc(t) == pytest.approx(scan)
    assert best_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 0.5


def test_pair_features_are_the_params_choices() -> None:
    assert PAIR_FEATURES == VERIFY_FEATURES


def test_weighted_metrics_equal_the_plain_ones_on_each_resample() -> None:
    """A weight row of counts is the resample itself: every weighted metric equals the
    plain function on the pairs repeated that often (a loop over resamples)."""
    scores, same = _scores(300, 3)
    w = np.vstack([np.ones(300, int), bootstrap_weights(300, 20, seed=1)])
    fmr, tar = weighted_roc(scores, same, w)
    aucs, eers = weighted_auc(scores, same, w), eer_from_roc(fmr, tar)
    rates = rates_at_threshold(scores, same, 0.7, w)
    for r in range(len(w)):
        idx = np.repeat(np.arange(300), w[r])
        s, y = scores[idx], same[idx]
        f0, t0, _ = roc(s, y)
        # The weighted ROC has a point for every distinct score of all pairs; the resample's
        # own ROC visits a subset of them with the same values.
        keep = np.r_[True, np.diff(fmr[r]) + np.diff(tar[r]) > 0]
        np.testing.assert_allclose(np.c_[fmr[r][keep], tar[r][keep]], np.c_[f0, t0])
        assert aucs[r] == pytest.approx(auc(s, y))
        assert eers[r] == pytest.approx(equal_error_rate(s, y))
        for far in (0.01, 0.1):
            assert tar_at_far_from_roc(fmr[r:r + 1], tar[r:r + 1], far)[0] == pytest.approx(
                tar_at_far(s, y, far))
        m, nm = match_rates(s, y, 0.7)
        assert rates["fmr"][r] == pytest.approx(m) and rates["fnmr"][r] == pytest.approx(nm)
        assert rates["f1"][r] == pytest.approx(f1_score(s, y, 0.7))
        assert rates["accuracy"][r] == pytest.approx(((s >= 0.7) == y).mean())


def test_verifier_metrics_keys_and_shapes() -> None:
    scores, same = _scores(200, 4)
    out = verifier_metrics(scores, same, 0.5, (0.01, 0.001), bootstrap_weights(200, 7))
    assert sorted(out) == sorted(["auc", "accuracy", "f1", "fmr", "fnmr", "eer",
                                  "tar_at_far_0.01", "tar_at_far_0.001"])
    assert all(v.shape == (7,) for v in out.values())


def test_weighted_group_rates_against_a_loop() -> None:
    scores, same = _scores(400, 5)
    groups = np.random.default_rng(6).integers(-1, 3, 400)  # -1: cross-group pairs
    w = bootstrap_weights(400, 5, seed=2)
    names, rates = group_rates_weighted(scores, same, groups, 0.6, w)
    assert names == [0, 1, 2]
    for r in range(len(w)):
        idx = np.repeat(np.arange(400), w[r])
        plain = group_match_rates(scores[idx], same[idx], groups[idx], 0.6)["by_group"]
        for j, g in enumerate(names):
            assert rates["fmr"][r, j] == pytest.approx(plain[str(g)]["fmr"])
            assert rates["fnmr"][r, j] == pytest.approx(plain[str(g)]["fnmr"])
    ratio = max_min_ratio(rates["fmr"])
    np.testing.assert_allclose(ratio, rates["fmr"].max(1) / rates["fmr"].min(1))
    assert np.isnan(max_min_ratio(np.array([[0.0, 0.2]])))[0]


def test_rates_of_a_resample_without_impostors_are_undefined() -> None:
    scores = np.array([0.9, 0.8, 0.2, 0.1])
    same = np.array([1, 1, 0, 0])
    w = np.array([[1, 1, 1, 1], [2, 2, 0, 0]])  # the second resample has no impostor
    fmr, tar = weighted_roc(scores, same, w)
    assert eer_from_roc(fmr, tar)[0] == 0.0 and np.isnan(eer_from_roc(fmr, tar)[1])
    far = tar_at_far_from_roc(fmr, tar, 0.01)
    assert far[0] == 1.0 and np.isnan(far[1])
    names, rates = group_rates_weighted(scores, same, np.full(4, -1), 0.5, w)
    assert names == [] and rates["fmr"].shape == (2, 0)
    assert np.isnan(max_min_ratio(rates["fmr"])).all()
