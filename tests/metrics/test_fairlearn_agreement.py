"""facebalance's group rates and fairness gaps against Fairlearn, to 1e-12.

Random inputs (2..7 groups, unweighted and with bootstrap count weights) and adversarial
ones (a group without positives, without negatives, a one-row group, tied scores, text
groups). The one deliberate difference: a rate with an empty denominator (TPR of a group
without positives) is undefined in facebalance (NaN, JSON null) where Fairlearn returns 0;
there the gaps are compared with Fairlearn's over the groups where the rate is defined.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from fairlearn.metrics import demographic_parity_difference as fl_dp
from fairlearn.metrics import equalized_odds_difference as fl_eo
from sklearn.metrics import accuracy_score

from facebalance.audit import audit_predictions
from facebalance.metrics.fairness import (
    calibrated_threshold,
    demographic_parity_difference,
    deo,
    equalized_odds_difference,
    group_rates,
)
from facebalance.metrics.report import score_metrics

TOL = 1e-12
RATES = {"accuracy": accuracy_score, "tpr": true_positive_rate, "fpr": false_positive_rate,
         "fnr": false_negative_rate, "selection_rate": selection_rate}


def fairlearn_frame(y: np.ndarray, pred: np.ndarray, g: np.ndarray,
                    w: np.ndarray | None = None) -> MetricFrame:
    params = None if w is None else {k: {"sample_weight": w} for k in RATES}
    return MetricFrame(metrics=RATES, y_true=y, y_pred=pred, sensitive_features=g,
                       sample_params=params)


def random_case(seed: int, k: int, n: int = 300):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, k, n)
    g[:k] = np.arange(k)  # every group present
    y = rng.integers(0, 2, n)
    y[: 2 * k : 2], y[1 : 2 * k : 2] = 1, 0
    g[: 2 * k] = np.repeat(np.arange(k), 2)  # and holds a positive and a negative
    scores = np.round(np.clip(0.4 * y + 0.1 * g / k + rng.normal(0.3, 0.2, n), 0, 1), 2)
    return y, g, scores, rng


def assert_rates_match(y, pred, g, w=None) -> None:
    ours = group_rates(y, pred, g, w).frame()
    theirs = fairlearn_frame(y, pred, g, w).by_group
    assert list(ours.index) == list(theirs.index)
    for name in RATES:
        np.testing.assert_allclose(ours[name].to_numpy(), theirs[name].to_numpy(dtype=float),
                                   rtol=0, atol=TOL, err_msg=name)
    counts = pd.Series(np.ones(len(y)) if w is None else w).groupby(g).sum()
    np.testing.assert_allclose(ours["n"].to_numpy(), counts.to_numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("k", [2, 3, 5, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_inputs_match_fairlearn(k: int, seed: int) -> None:
    y, g, scores, _ = random_case(seed, k)
    # Ties: scores rounded to 0.01 and the threshold one of them, as the pipeline calibrates.
    pred = (scores >= calibrated_threshold(y, scores)).astype(np.int8)
    assert_rates_match(y, pred, g)
    assert demographic_parity_difference(y, pred, g) == pytest.approx(
        fl_dp(y, pred, sensitive_features=g), abs=TOL)
    assert equalized_odds_difference(y, pred, g) == pytest.approx(
        fl_eo(y, pred, sensitive_features=g), abs=TOL)
    fnr_gap = MetricFrame(metrics=false_negative_rate, y_true=y, y_pred=pred,
                          sensitive_features=g).difference()
    assert deo(y, pred, g) == pytest.approx(fnr_gap, abs=TOL)
    # The report's own code path (one weighting row, as fairness_report's point values).
    m = score_metrics(y, g, scores, pred, np.ones((1, len(y))), ["deo", "dp_diff", "eo_diff"])
    assert m["deo"][0] == pytest.approx(fnr_gap, abs=TOL)
    assert m["dp_diff"][0] == pytest.approx(fl_dp(y, pred, sensitive_features=g), abs=TOL)
    assert m["eo_diff"][0] == pytest.approx(fl_eo(y, pred, sensitive_features=g), abs=TOL)
    assert not np.isclose(m["deo"][0], 0)  # the case is not trivially fair


@pytest.mark.parametrize("k", [2, 4])
def test_bootstrap_weights_match_weighted_fairlearn(k: int) -> None:
    """Intervals come from count weights: each weighting is Fairlearn's weighted metric."""
    y, g, scores, rng = random_case(10 + k, k)
    pred = (scores >= 0.5).astype(np.int8)
    w = rng.integers(0, 4, (3, len(y))).astype(np.float64)
    w[:, : 2 * k] = 1  # keep every rate defined in every weighting
    rates = group_rates(y, pred, g, w)
    for b in range(len(w)):
        theirs = fairlearn_frame(y, pred, g, w[b]).by_group
        for name in RATES:
            np.testing.assert_allclose(getattr(rates, name)[b], theirs[name].to_numpy(float),
                                       rtol=0, atol=TOL)
        assert demographic_parity_difference(y, pred, g, w)[b] == pytest.approx(
            fl_dp(y, pred, sensitive_features=g, sample_weight=w[b]), abs=TOL)
        assert equalized_odds_difference(y, pred, g, w)[b] == pytest.approx(
            fl_eo(y, pred, sensitive_features=g, sample_weight=w[b]), abs=TOL)


def adversarial_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group 'c' has no positive, 'd' no negative, 'e' one row; predictions tie at 1."""
    g = np.array(list("aaaaaabbbbbbcccddde"))
    y = np.array([1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1])
    return y, pred, g


def test_adversarial_groups_agree_where_defined_and_are_undefined_elsewhere() -> None:
    y, pred, g = adversarial_case()
    ours = group_rates(y, pred, g).frame()
    theirs = fairlearn_frame(y, pred, g).by_group
    for name in RATES:
        defined = ours[name].notna().to_numpy()
        np.testing.assert_allclose(ours[name].to_numpy()[defined],
                                   theirs[name].to_numpy(float)[defined], rtol=0, atol=TOL)
    # Undefined, never a silent 0: TPR/FNR without positives, FPR without negatives.
    assert np.isnan(ours.loc["c", ["tpr", "fnr"]].to_numpy(float)).all()
    assert np.isnan(ours.loc[["d", "e"], "fpr"].to_numpy(float)).all()
    assert theirs.loc["c", "tpr"] == 0  # where Fairlearn reports 0
    # Gaps equal Fairlearn's over the groups where the rate is defined.
    pos, neg = ["a", "b", "d", "e"], ["a", "b", "c"]
    tpr = theirs.loc[pos, "tpr"].to_numpy(float)
    fpr = theirs.loc[neg, "fpr"].to_numpy(float)
    fnr = theirs.loc[pos, "fnr"].to_numpy(float)
    assert deo(y, pred, g) == pytest.approx(fnr.max() - fnr.min(), abs=TOL)
    assert equalized_odds_difference(y, pred, g) == pytest.approx(
        max(tpr.max() - tpr.min(), fpr.max() - fpr.min()), abs=TOL)
    # Selection rate is defined for every non-empty group: equal to Fairlearn's DP as is.
    assert demographic_parity_difference(y, pred, g) == pytest.approx(
        fl_dp(y, pred, sensitive_features=g), abs=TOL)


def test_all_equal_predictions_give_zero_dp_like_fairlearn() -> None:
    y, _, g = adversarial_case()
    pred = np.ones_like(y)
    assert demographic_parity_difference(y, pred, g) == fl_dp(y, pred, sensitive_features=g)
    assert demographic_parity_difference(y, pred, g) == 0


def test_audit_by_group_matches_fairlearn_on_text_groups() -> None:
    """The audit's per-group rates of a table with text groups (names, not codes) and an
    unknown row equal Fairlearn's on the rows of known group, at the audit's threshold."""
    y, g, scores, _ = random_case(5, 3, n=240)
    names = np.array(["Black", "White", "East Asian"])[g].astype(object)
    names[7] = None
    frame = pd.DataFrame({"label": y, "score": scores, "race": names})
    rep = audit_predictions(frame, scores="score", groups=["race"], threshold=0.55,
                            n_bootstrap=20)["race"]
    known = names != None  # noqa: E711 (elementwise on an object array)
    pred = (scores[known] >= 0.55).astype(np.int8)
    theirs = fairlearn_frame(y[known], pred, names[known].astype(str)).by_group
    for grp in ("Black", "East Asian", "White"):
        for name in RATES:
            assert rep["by_group"][f"race={grp}"][name] == pytest.approx(
                theirs.loc[grp, name], abs=TOL)
    assert rep["dp_diff"]["value"] == pytest.approx(
        fl_dp(y[known], pred, sensitive_features=names[known].astype(str)), abs=TOL)
    assert rep["eo_diff"]["value"] == pytest.approx(
        fl_eo(y[known], pred, sensitive_features=names[known].astype(str)), abs=TOL)
    assert "race=unknown" in rep["by_group"]
