import numpy as np
import pytest

from facebalance.metrics.compare import comparison_frame, to_markdown
from facebalance.metrics.fairness import deo
from facebalance.metrics.report import METRIC_KEYS, fairness_report


def _scores(n: int, bias: float, seed: int):
    """Scores of a classifier that misses positives of group 1 more often by ``bias``."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    g = np.repeat([0, 1], n // 2)
    s = np.clip(0.5 * y + rng.normal(0.25, 0.15, n) - bias * y * g, 0, 1)
    return y, g, s


def test_report_layout_and_seed_statistics() -> None:
    y, g, _ = _scores(400, 0.0, 0)
    seeds = [0, 1, 2]
    val = [_scores(400, 0.2, 10 + s)[2] for s in seeds]
    test = [_scores(400, 0.2, 20 + s)[2] for s in seeds]
    rep = fairness_report(y, val, y, g, test, seeds=seeds, group_name="male",
                          reference_counts=np.array([[90, 98], [24, 2]]), n_bootstrap=50)
    for key in METRIC_KEYS:
        r = rep[key]
        assert set(r) == {"value", "std", "median", "ci95", "per_seed"}
        assert list(r["per_seed"]) == ["seed0", "seed1", "seed2"]
        assert r["value"] == pytest.approx(np.mean(list(r["per_seed"].values())))
        assert r["std"] == pytest.approx(np.std(list(r["per_seed"].values()), ddof=1))
        assert r["ci95"]["lo"] <= r["median"] <= r["ci95"]["hi"]
    # DEO recomputed by hand for seed 1 at its calibrated threshold.
    thr = rep["threshold"]["seed1"]
    assert rep["deo"]["per_seed"]["seed1"] == pytest.approx(deo(y, test[1] >= thr, g))
    assert rep["deo"]["value"] > 0.1 and rep["deo"]["ci95"]["lo"] > 0
    assert set(rep["by_group"]) == {"male=0", "male=1"}
    assert rep["by_group"]["male=1"]["tpr"] < rep["by_group"]["male=0"]["tpr"]


def test_fair_scores_give_small_deo_interval_around_zero() -> None:
    y, g, _ = _scores(2000, 0.0, 0)
    rep = fairness_report(y, [_scores(2000, 0.0, 1)[2]], y, g, [_scores(2000, 0.0, 2)[2]],
                          seeds=[0], n_bootstrap=100)
    assert rep["deo"]["value"] < 0.05 and rep["deo"]["std"] == 0.0


def test_markdown_table_shows_relative_change() -> None:
    def rep(v):
        return {"n_seeds": 3, **{m: {"value": v, "std": 0.01, "ci95": {"lo": v - 0.02,
                                                                         "hi": v + 0.02}}
                                 for m in ("ap", "deo")}}

    frame = comparison_frame({"baseline": rep(0.2), "reweight": rep(0.1)}, ["ap", "deo"])
    md = to_markdown(frame)
    assert "| baseline | 3 | 0.200 ± 0.010 [0.180, 0.220] | 0.200 ± 0.010" in md
    assert "0.100 ± 0.010 [0.080, 0.120] (-50%) |" in md  # DEO: lower is better
    assert md.count("(-50%)") == 1  # not for AP


def test_undefined_values_read_n_a_never_nan() -> None:
    def rep(v):
        return {"n_seeds": 2, "kl": {"value": v, "std": None, "ci95": {"lo": v, "hi": None}}}

    md = to_markdown(comparison_frame({"baseline": rep(None), "reweight": rep(0.1)}, ["kl"]))
    assert "| baseline | 2 | n/a ± n/a [n/a, n/a] |" in md
    assert "| reweight | 2 | 0.100 ± n/a [0.100, n/a] |" in md  # no % against an n/a base
    assert "nan" not in md.lower()
