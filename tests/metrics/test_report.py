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


def _loop_class_metrics(y, pred, g):
    """accuracy, per-class accuracy std, group accuracies by plain loops."""
    acc = sum(int(a == b) for a, b in zip(y, pred, strict=True)) / len(y)
    per_class = []
    for c in sorted(set(y)):
        idx = [i for i in range(len(y)) if y[i] == c]
        per_class.append(sum(int(pred[i] == c) for i in idx) / len(idx))
    per_group = {}
    for grp in sorted(set(g)):
        idx = [i for i in range(len(y)) if g[i] == grp]
        per_group[grp] = sum(int(pred[i] == y[i]) for i in idx) / len(idx)
    return acc, float(np.std(per_class)), per_group


def test_multiclass_task_report_matches_loops() -> None:
    import pandas as pd

    from facebalance.metrics.report import task_report
    from facebalance.task import Head, TaskSpec

    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 4, n)
    table = pd.DataFrame({"id": np.arange(n), "label": y, "group": y})
    for s in (0, 1):  # a model worse on the darker classes
        wrong = rng.random(n) < np.array([0.05, 0.1, 0.3, 0.5])[y]
        table[f"pred_seed{s}"] = np.where(wrong, (y + 1) % 4, y)
    task = TaskSpec(kind="multiclass", heads=(Head("skin", "multiclass", 4),), protected="skin")
    rep = task_report(task, table, [0, 1], n_bootstrap=30)
    loops = [_loop_class_metrics(y, table[f"pred_seed{s}"].to_numpy(), y) for s in (0, 1)]
    assert rep["accuracy"]["value"] == pytest.approx(np.mean([lp[0] for lp in loops]))
    assert rep["class_acc_std"]["value"] == pytest.approx(np.mean([lp[1] for lp in loops]))
    assert rep["worst_group_acc"]["per_seed"]["seed1"] == pytest.approx(
        min(loops[1][2].values()))
    assert rep["by_class"]["skin=3"] == pytest.approx(np.mean([lp[2][3] for lp in loops]))
    assert rep["by_group"]["skin=0"]["n"] == int((y == 0).sum())
    for key in ("accuracy", "macro_f1", "class_acc_std", "group_acc_gap"):
        assert rep[key]["ci95"]["lo"] <= rep[key]["ci95"]["hi"]


def test_regression_task_report_matches_loops() -> None:
    import pandas as pd

    from facebalance.metrics.report import task_report
    from facebalance.task import Head, TaskSpec

    rng = np.random.default_rng(1)
    age = rng.uniform(18, 80, 400)
    group = np.digitize(age, [30, 45, 60])
    table = pd.DataFrame({"id": np.arange(400), "label": age, "group": group,
                          "pred_seed0": age + rng.normal(0, 1 + group * 2, 400)})
    task = TaskSpec(kind="regression", heads=(Head("age", "regression", 0),),
                    age_bins=(30.0, 45.0, 60.0))
    rep = task_report(task, table, [0], n_bootstrap=30)
    err = np.abs(table["pred_seed0"] - age).to_numpy()
    maes = [err[group == k].mean() for k in range(4)]
    assert rep["mae"]["value"] == pytest.approx(err.mean())
    assert rep["rmse"]["value"] == pytest.approx(np.sqrt((err ** 2).mean()))
    assert rep["wmae"]["value"] == pytest.approx(np.mean(maes))  # every group counts equally
    assert rep["worst_group_mae"]["value"] == pytest.approx(max(maes))
    assert rep["group_mae_gap"]["value"] == pytest.approx(max(maes) - min(maes))
    assert rep["by_group"]["age 60+"]["mae"] == pytest.approx(maes[3])
    assert list(rep["by_group"]) == ["age <30", "age 30-44", "age 45-59", "age 60+"]


def test_binary_report_with_four_groups() -> None:
    from facebalance.metrics.tasks import kl_to_pooled

    rng = np.random.default_rng(2)
    n = 800
    y, g = np.tile([0, 1], n // 2), np.repeat(np.arange(4), n // 4)
    s = np.clip(0.5 * y + rng.normal(0.25, 0.15, n) - 0.1 * g * y, 0, 1)
    rep = fairness_report(y, [s], y, g, [s], seeds=[0], group_name="skin",
                          reference_counts=np.array([[90, 98, 99, 99], [24, 8, 3, 1]]),
                          n_bootstrap=20)
    assert rep["kl"]["value"] is None or np.isnan(rep["kl"]["value"])  # two-group definition
    _, kl = kl_to_pooled(y, s, g)
    assert rep["kl_max"]["value"] == pytest.approx(kl.max())
    assert rep["kl_mean"]["value"] == pytest.approx(kl.mean())
    assert set(rep["by_group"]) == {f"skin={k}" for k in range(4)}
    assert rep["deo"]["value"] == pytest.approx(deo(y, s >= rep["threshold"]["seed0"], g))


def test_headline_metrics_are_the_seed_means_of_the_task_metrics() -> None:
    from facebalance.metrics.report import headline_metrics

    y, g, _ = _scores(200, 0.0, 0)
    rep = fairness_report(y, [_scores(200, 0.2, 1)[2]], y, g, [_scores(200, 0.2, 2)[2]],
                          seeds=[0], n_bootstrap=20)
    head = headline_metrics({"task": {"kind": "binary"}, **rep})
    assert head == {k: rep[k]["value"] for k in ("ap", "accuracy", "deo", "ba", "kl",
                                                 "group_acc_std")}
    rep["kl"]["value"] = float("nan")  # K groups: the two-group KL is undefined
    assert "kl_max" in headline_metrics(rep) and "kl" not in headline_metrics(rep)
    reg = {"task": {"kind": "regression"},
           **{k: {"value": 1.0} for k in ("mae", "wmae", "worst_group_mae", "group_mae_gap")}}
    assert list(headline_metrics(reg)) == ["mae", "wmae", "worst_group_mae", "group_mae_gap"]


def test_a_group_absent_from_train_gets_zero_reference_counts() -> None:
    import pandas as pd

    from facebalance.metrics.report import default_metrics
    from facebalance.models.evaluate import training_cell_counts

    train = pd.DataFrame({"y": [0, 1, 0, 1, 0], "g": [0, 0, 1, 1, 1]})
    assert training_cell_counts(train, "y", "g").tolist() == [[1, 2], [1, 1]]
    counts = training_cell_counts(train, "y", "g", np.array([0, 1, 2, 3]))
    assert counts.tolist() == [[1, 2, 0, 0], [1, 1, 0, 0]]
    rng = np.random.default_rng(3)
    y, g = np.tile([0, 1], 200), np.repeat(np.arange(4), 100)
    s = np.clip(0.6 * y + rng.normal(0.2, 0.15, 400), 0, 1)
    rep = fairness_report(y, [s], y, g, [s], seeds=[0], reference_counts=counts,
                          n_bootstrap=10)  # groups 2 and 3 unseen in train: no crash
    assert np.isfinite(rep["ba"]["value"]) and np.isfinite(rep["deo"]["value"])
    assert default_metrics({"task": {"kind": "binary"}, **rep})[4] == "kl_max"
