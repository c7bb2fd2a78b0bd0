"""``facebalance audit`` / ``audit-pairs``: reports from a user's own predictions.

The reports must be the pipeline's own (same functions, same numbers: checked against
``fairness_report`` / ``task_report`` / ``verifier_metrics`` called as the pipeline calls
them, and on a round trip of ``evaluate``'s scores table), name groups by their values,
count missing group values as ``unknown``, and turn every bad input into one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from facebalance.audit import (
    ERR_BINARY_LABEL,
    ERR_COLUMN,
    ERR_DUPLICATE_ID,
    ERR_FEW_GROUPS,
    ERR_IDS_NOT_SHARED,
    ERR_KIND,
    ERR_LABELS_DIFFER,
    ERR_NAN,
    ERR_SCORE_RANGE,
    ERR_STRICT,
    ERR_SUFFIX,
    audit_files,
    audit_pairs,
    audit_predictions,
    cell_counts,
    group_codes,
)
from facebalance.cli import app
from facebalance.errors import FacebalanceError
from facebalance.metrics.bootstrap import bootstrap_weights
from facebalance.metrics.fairness import calibrated_threshold
from facebalance.metrics.paired import paired_differences
from facebalance.metrics.report import fairness_report, task_report
from facebalance.metrics.verification import (
    best_threshold,
    group_rates_weighted,
    verifier_metrics,
)
from facebalance.models.evaluate import predictions_table, training_cell_counts
from facebalance.runtime import finite_or_none
from facebalance.task import Head, TaskSpec

runner = CliRunner()


def scored(n: int, seed: int, bias: float = 0.2, groups=("female", "male")) -> pd.DataFrame:
    """Test rows of a model that misses positives of the last group more often."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    g = rng.integers(0, len(groups), n)
    s = np.clip(0.5 * y + rng.normal(0.25, 0.15, n) - bias * y * (g == len(groups) - 1),
                0, 1)
    return pd.DataFrame({"id": [f"img{i:04d}" for i in range(n)], "label": y,
                         "gender": np.array(groups, dtype=object)[g], "score": s})


def json_roundtrip(obj):
    return json.loads(json.dumps(finite_or_none(obj)))


# ------------------------------------------------------------------- binary, groups, thresholds


def test_groups_are_named_by_value_and_unknown_rows_are_their_own_group() -> None:
    frame = scored(400, 0)
    frame.loc[[3, 10], "gender"] = None
    frame.loc[[5], "gender"] = "  "
    frame.loc[[7], "gender"] = "Unknown"
    rep = audit_predictions(frame, scores="score", groups=["gender"], threshold=0.5,
                            n_bootstrap=50)["gender"]
    assert list(rep["by_group"]) == ["gender=female", "gender=male", "gender=unknown"]
    assert rep["by_group"]["gender=unknown"]["n"] == 4
    assert rep["audit"]["n_unknown"] == 4 and rep["n_test"] == 396
    # The fairness metrics are those of the known rows alone: fairness_report on them.
    known = frame.drop(index=[3, 5, 7, 10])
    codes = (known["gender"] == "male").to_numpy().astype(int)
    ref = fairness_report(np.array([]), [np.array([])], known["label"].to_numpy(), codes,
                          [known["score"].to_numpy()], seeds=[0], group_name="gender",
                          n_bootstrap=50, threshold=0.5)
    for key in ("ap", "accuracy", "deo", "dp_diff", "eo_diff", "kl", "group_acc_std"):
        assert rep[key] == ref[key], key
    assert rep["by_group"]["gender=male"] == ref["by_group"]["gender=1"]
    assert rep["deo"]["value"] > 0.1  # the biased model is seen as biased
    assert any("4 of 400 test rows have no gender value" in w for w in rep["audit"]["warnings"])


def test_group_codes_sort_numbers_numerically_and_treat_blanks_as_unknown() -> None:
    codes, names = group_codes(pd.Series([10, 2, None, 2.0, "1"], dtype=object))
    assert names == ["1", "2", "10"]
    assert codes.tolist() == [2, 1, -1, 1, 0]


def test_threshold_is_calibrated_on_val_given_or_on_test_and_the_report_says_which() -> None:
    test = scored(300, 1).assign(split="test")
    val = scored(200, 2).assign(split="val", id=lambda f: "v" + f["id"])
    both = pd.concat([test, val], ignore_index=True)
    on_val = audit_predictions(both, scores="score", groups="gender", n_bootstrap=10)["gender"]
    assert on_val["threshold"]["seed0"] == calibrated_threshold(val["label"], val["score"])
    assert on_val["audit"]["threshold"]["source"] == "validation"
    given = audit_predictions(both, scores="score", groups="gender", threshold=0.3,
                              n_bootstrap=10)["gender"]
    assert given["threshold"] == {"seed0": 0.3}
    assert given["audit"]["threshold"]["source"] == "given"
    on_test = audit_predictions(test.drop(columns="split"), scores="score", groups="gender",
                                n_bootstrap=10)["gender"]
    assert on_test["threshold"]["seed0"] == calibrated_threshold(test["label"], test["score"])
    assert on_test["audit"]["threshold"]["source"] == "test"
    assert "test rows themselves" in on_test["audit"]["threshold"]["text"]


def test_fairness_report_threshold_argument_is_the_calibrated_path_when_equal() -> None:
    """``threshold=`` is a real argument, not faked validation rows; without it the report
    (what the pipeline's evaluate writes) is the calibrated one, unchanged."""
    test, val = scored(300, 21), scored(200, 22)
    codes = (test["gender"] == "male").to_numpy().astype(int)
    args = (test["label"].to_numpy(), codes, [test["score"].to_numpy()])
    thr = calibrated_threshold(val["label"], val["score"])
    calibrated = fairness_report(val["label"].to_numpy(), [val["score"].to_numpy()], *args,
                                 seeds=[0], n_bootstrap=20)
    given = fairness_report(np.array([]), [np.array([])], *args, seeds=[0], n_bootstrap=20,
                            threshold=thr)
    assert json_roundtrip(given) == json_roundtrip(calibrated)
    assert calibrated["threshold"] == {"seed0": thr}


def test_several_score_columns_are_seeds_and_a_group_rename_applies() -> None:
    frame = scored(300, 3).assign(score2=lambda f: np.clip(f["score"] + 0.03, 0, 1))
    rep = audit_predictions(frame, scores=["score", "score2"], groups={"gender": "sex"},
                            threshold=0.5, n_bootstrap=10)["sex"]
    assert rep["n_seeds"] == 2 and list(rep["deo"]["per_seed"]) == ["seed0", "seed1"]
    assert rep["deo"]["value"] == pytest.approx(np.mean(list(rep["deo"]["per_seed"].values())))
    assert list(rep["by_group"]) == ["sex=female", "sex=male"]
    assert rep["audit"]["scores"] == {"seed0": "score", "seed1": "score2"}


def test_a_group_without_positives_has_undefined_rates_and_gaps_not_zero(tmp_path: Path) -> None:
    frame = scored(200, 4)
    frame.loc[frame["gender"] == "male", "label"] = 0
    rep = audit_predictions(frame, scores="score", groups="gender", threshold=0.5,
                            n_bootstrap=10)["gender"]
    assert np.isnan(rep["by_group"]["gender=male"]["tpr"])
    assert np.isnan(rep["deo"]["value"]) and np.isnan(rep["eo_diff"]["value"])
    assert any("gender=male has no positive label" in w for w in rep["audit"]["warnings"])
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    audit_files(path, tmp_path / "out", groups=["gender"], scores="score", threshold=0.5,
                n_bootstrap=10)
    written = json.loads((tmp_path / "out" / "gender.json").read_text())
    assert written["by_group"]["gender=male"]["tpr"] is None
    assert written["deo"]["value"] is None and written["deo"]["ci95"]["lo"] is None
    md = (tmp_path / "out" / "audit.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| gender=male |"))
    assert row.split("|")[4].strip() == "n/a"  # tpr column: n/a, never 0


def test_bias_amplification_is_null_without_training_counts_and_uses_them_when_given() -> None:
    frame = scored(300, 5)
    no_train = audit_predictions(frame, scores="score", groups="gender", threshold=0.5,
                                 n_bootstrap=10)["gender"]
    assert np.isnan(no_train["ba"]["value"])
    assert no_train["audit"]["bias_amplification"].startswith("null")
    train = pd.DataFrame({"label": [1] * 40 + [0] * 60 + [1] * 5 + [0] * 95,
                          "gender": ["female"] * 100 + ["male"] * 100})
    rep = audit_predictions(frame, scores="score", groups="gender", threshold=0.5,
                            train=train, n_bootstrap=10)["gender"]
    codes = (frame["gender"] == "male").to_numpy().astype(int)
    ref = fairness_report(np.array([]), [np.array([])], frame["label"].to_numpy(), codes,
                          [frame["score"].to_numpy()], seeds=[0], group_name="gender",
                          reference_counts=np.array([[60, 95], [40, 5]]), n_bootstrap=10,
                          threshold=0.5)
    assert rep["ba"] == ref["ba"] and np.isfinite(rep["ba"]["value"])
    assert "200 training rows" in rep["audit"]["bias_amplification"]


def test_cell_counts_equal_the_pipelines_training_counts() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"t": rng.integers(0, 2, 200), "a": rng.integers(0, 3, 200)})
    np.testing.assert_array_equal(cell_counts(train["t"], train["a"], 3),
                                  training_cell_counts(train, "t", "a", np.arange(3)))


# -------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("change", "kwargs", "message"), [
    (lambda f: f, {"groups": ["gendr"]},
     ERR_COLUMN.format(source="the predictions", role="group", column="gendr",
                       hint=" (did you mean 'gender'?)", columns="id, label, gender, score")),
    (lambda f: f.assign(score=f["score"] * 3), {},
     None),  # checked below with the row
    (lambda f: f.assign(label=f["label"] * 2), {}, None),
])
def test_bad_columns_name_the_valid_ones(change, kwargs, message) -> None:
    frame = change(scored(50, 6))
    with pytest.raises(FacebalanceError) as err:
        audit_predictions(frame, scores="score", **{"groups": ["gender"], **kwargs})
    if message:
        assert str(err.value) == message
    else:
        assert str(err.value).startswith("audit:") and "row " in str(err.value)


def test_scores_outside_0_1_nan_bad_labels_and_duplicates_name_the_row() -> None:
    frame = scored(50, 7)
    frame.loc[4, "score"] = 1.5
    with pytest.raises(FacebalanceError, match=re.escape(ERR_SCORE_RANGE.format(
            column="score", value=1.5, where="row 5 (id 'img0004')"))):
        audit_predictions(frame, scores="score", groups="gender")
    frame.loc[4, "score"] = np.nan
    with pytest.raises(FacebalanceError, match=re.escape(ERR_NAN.format(
            role="score", column="score", where="row 5 (id 'img0004')"))):
        audit_predictions(frame, scores="score", groups="gender")
    frame.loc[4, "score"] = 0.5
    frame.loc[9, "label"] = 2
    with pytest.raises(FacebalanceError, match=re.escape(ERR_BINARY_LABEL.format(
            column="label", value=2, where="row 10 (id 'img0009')"))):
        audit_predictions(frame, scores="score", groups="gender")
    frame.loc[9, "label"] = 1
    frame.loc[12, "id"] = "img0002"
    with pytest.raises(FacebalanceError, match=re.escape(ERR_DUPLICATE_ID.format(
            id="img0002", source="the predictions", first="row 3", second="row 13"))):
        audit_predictions(frame, scores="score", groups="gender")


def test_strict_coverage_names_the_first_row_without_a_group() -> None:
    frame = scored(50, 8)
    frame.loc[[6, 20], "gender"] = ""
    with pytest.raises(FacebalanceError, match=re.escape(ERR_STRICT.format(
            where="row 7 (id 'img0006')", column="gender"))):
        audit_predictions(frame, scores="score", groups="gender", strict=True)
    assert audit_predictions(frame, scores="score", groups="gender", n_bootstrap=5)[
        "gender"]["audit"]["n_unknown"] == 2


def test_one_known_group_a_bad_kind_and_a_bad_file_type_are_errors(tmp_path: Path) -> None:
    frame = scored(50, 9).assign(gender="female")
    with pytest.raises(FacebalanceError, match=re.escape(ERR_FEW_GROUPS.format(
            column="gender", n=1, names="female"))):
        audit_predictions(frame, scores="score", groups="gender")
    with pytest.raises(FacebalanceError, match=re.escape(ERR_KIND.format(kind="ranking"))):
        audit_predictions(scored(50, 9), scores="score", groups="gender", kind="ranking")
    path = tmp_path / "p.xlsx"
    path.write_text("x")
    with pytest.raises(FacebalanceError, match=re.escape(ERR_SUFFIX.format(
            path=path, suffix=".xlsx"))):
        audit_files(path, tmp_path / "out")


# ------------------------------------------------------------------ the pipeline round trip


def pipeline_case(tmp_path: Path):
    """What ``evaluate`` computes for a binary task (blond vs male) with three seeds, and
    its scores table (val and test rows) as ``predictions_table`` writes it."""
    rng = np.random.default_rng(42)
    task = TaskSpec(heads=(Head("blond", "binary"),), protected="male")
    seeds = [0, 1, 2]

    def refs(n: int, prefix: str) -> pd.DataFrame:
        return pd.DataFrame({"id": [f"{prefix}{i:05d}" for i in range(n)],
                             "blond": rng.integers(0, 2, n).astype(np.int8),
                             "male": rng.integers(0, 2, n).astype(np.int8)})

    test, val = refs(500, "t"), refs(300, "v")

    def outputs(r: pd.DataFrame) -> list[np.ndarray]:  # float32, as the models output them
        y, g = r["blond"].to_numpy(), r["male"].to_numpy()
        return [np.clip(0.45 * y - 0.2 * y * g + rng.normal(0.3, 0.18, len(r)), 0, 1)
                .astype(np.float32)[:, None] for _ in seeds]

    test_out, val_out = outputs(test), outputs(val)
    train = pd.DataFrame({"blond": [1] * 120 + [0] * 380 + [1] * 10 + [0] * 490,
                          "male": [0] * 500 + [1] * 500})
    table = predictions_table(task, test, test_out, seeds)
    both = pd.concat([table.assign(split="test"),
                      predictions_table(task, val, val_out, seeds).assign(split="val")],
                     ignore_index=True)
    # models/evaluate.evaluate_models, binary branch, verbatim but for the bootstrap size.
    report = fairness_report(
        val["blond"].to_numpy(), [o[:, 0] for o in val_out], table["label"].to_numpy(),
        table["group"].to_numpy(), [o[:, 0] for o in test_out], seeds=seeds,
        group_name=task.protected,
        reference_counts=training_cell_counts(train, "blond", "male",
                                              np.unique(table["group"])),
        n_bootstrap=100, bootstrap_seed=0, kl_bins=50)
    expected = {"strategy": "baseline", "task": task.to_dict(), **report}
    train_file = tmp_path / "train.csv"
    train.rename(columns={"blond": "label", "male": "group"}).to_csv(train_file, index=False)
    return both, expected, train_file


def without_audit(rep: dict) -> dict:
    return {k: v for k, v in rep.items() if k not in ("audit", "task")}


def test_round_trip_of_the_pipelines_scores_table_gives_its_report(tmp_path: Path) -> None:
    both, expected, train_file = pipeline_case(tmp_path)
    path = tmp_path / "baseline.parquet"
    both.to_parquet(path)
    reports = audit_files(path, tmp_path / "out", groups=["group:male"], train=train_file,
                          n_bootstrap=100)
    rep = reports["male"]
    assert without_audit(rep) == without_audit(expected)  # identical, not approximately
    assert rep["audit"]["threshold"]["source"] == "validation"
    written = json.loads((tmp_path / "out" / "male.json").read_text())
    assert without_audit(written) == without_audit(json_roundtrip(expected))
    assert written["task"]["protected"] == "male"
    for png in ("male_metrics.png", "male_scores.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| baseline | 3 |" in (tmp_path / "out" / "audit.md").read_text()


def test_round_trip_through_a_csv_export(tmp_path: Path) -> None:
    """A CSV holds the float32 scores as short decimals: every prediction, rate and
    interval is unchanged; the thresholds differ only in their last float32 digits."""
    both, expected, train_file = pipeline_case(tmp_path)
    path = tmp_path / "baseline.csv"
    both.to_csv(path, index=False)
    rep = audit_files(path, tmp_path / "out", groups=["group:male"], train=train_file,
                      n_bootstrap=100)["male"]
    got, want = without_audit(rep), without_audit(expected)
    got_thr, want_thr = got.pop("threshold"), want.pop("threshold")
    assert got_thr == pytest.approx(want_thr, rel=1e-7) and got_thr != want_thr
    assert got == want


# ------------------------------------------------------------------ multiclass and regression


def test_multiclass_with_text_classes_is_task_reports_with_names() -> None:
    rng = np.random.default_rng(11)
    n = 300
    classes = np.array(["cat", "dog", "owl"])
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    g = rng.integers(0, 2, n)
    frame = pd.DataFrame({"species": classes[y], "guess": classes[pred],
                          "site": np.array(["north", "south"])[g]})
    rep = audit_predictions(frame, label="species", scores="guess", groups="site",
                            kind="multiclass", n_bootstrap=30)["site"]
    task = TaskSpec(kind="multiclass", heads=(Head("species", "multiclass", 3),),
                    protected="site")
    ref = task_report(task, pd.DataFrame({"label": y, "group": g, "pred_seed0": pred}), [0],
                      n_bootstrap=30)
    for key in ("accuracy", "macro_f1", "class_acc_std", "group_acc_std", "worst_group_acc"):
        assert rep[key] == ref[key]
    assert list(rep["by_group"]) == ["site=north", "site=south"]
    assert rep["by_group"]["site=south"] == ref["by_group"]["site=1"]
    assert list(rep["by_class"]) == ["species=cat", "species=dog", "species=owl"]


def test_multiclass_probability_columns_predict_the_argmax() -> None:
    rng = np.random.default_rng(12)
    proba = rng.dirichlet([1, 1, 1], 200)
    frame = pd.DataFrame({"label": rng.integers(0, 3, 200), "p0": proba[:, 0],
                          "p1": proba[:, 1], "p2": proba[:, 2],
                          "group": rng.integers(0, 2, 200)})
    rep = audit_predictions(frame, scores="p0,p1,p2", kind="multiclass", n_bootstrap=10)
    acc = (proba.argmax(axis=1) == frame["label"]).mean()
    assert rep["group"]["accuracy"]["value"] == pytest.approx(acc)


def test_regression_reports_wmae_and_per_group_mae() -> None:
    rng = np.random.default_rng(13)
    n = 300
    age = rng.uniform(18, 80, n)
    g = rng.integers(0, 2, n)
    pred = age + rng.normal(0, 3 + 4 * g, n)
    frame = pd.DataFrame({"age": age, "age_hat": pred,
                          "gender": np.where(g == 1, "male", "female").astype(object)})
    frame.loc[0, "gender"] = None
    rep = audit_predictions(frame, label="age", scores="age_hat", groups="gender",
                            kind="regression", n_bootstrap=20)["gender"]
    known = frame.iloc[1:]
    err = (known["age_hat"] - known["age"]).abs()
    mae = err.groupby(known["gender"]).mean()
    assert rep["wmae"]["value"] == pytest.approx(mae.mean())
    assert rep["worst_group_mae"]["value"] == pytest.approx(mae.max())
    assert rep["by_group"]["gender=male"]["mae"] == pytest.approx(mae["male"])
    assert rep["by_group"]["gender=unknown"]["n"] == 1
    bins = audit_predictions(frame, label="age", scores="age_hat", groups="gender",
                             kind="regression", age_bins=(30, 45, 60), n_bootstrap=20)
    assert list(bins["age bins"]["by_group"]) == ["age <30", "age 30-44", "age 45-59",
                                                  "age 60+"]
    young = frame["age"] < 30
    assert bins["age bins"]["by_group"]["age <30"]["mae"] == pytest.approx(
        (frame["age_hat"] - frame["age"]).abs()[young].mean())


# ------------------------------------------------------------------------ paired differences


def test_two_files_give_paired_differences_aligned_by_id() -> None:
    after = scored(300, 14, bias=0.05)
    before = after.assign(score=scored(300, 14, bias=0.3)["score"])
    shuffled = before.sample(frac=1, random_state=0).drop(columns="gender")
    rep = audit_predictions(after, scores="score", groups="gender", threshold=0.5,
                            reference=shuffled, reference_name="before", name="after",
                            n_bootstrap=100)["gender"]
    got = rep["paired"]["json"]["after-vs-before"]
    codes = (after["gender"] == "male").to_numpy().astype(int)
    tables = {n: pd.DataFrame({"id": after["id"], "label": after["label"], "group": codes,
                               "score_seed0": f["score"].to_numpy()})
              for n, f in (("after", after), ("before", before))}
    task = TaskSpec(heads=(Head("label", "binary"),), protected="gender")
    ref = paired_differences(tables, {"after": {"seed0": 0.5}, "before": {"seed0": 0.5}},
                             task=task, references=["before"], n_bootstrap=100)
    deo = ref[ref["metric"] == "deo"].iloc[0]
    assert got["deo"]["diff"] == deo["diff"] and got["deo"]["ci95"]["hi"] == deo["hi"]
    assert got["deo"]["ci95"]["hi"] < 0  # the fix lowered DEO beyond noise


def test_paired_files_must_share_ids_and_labels() -> None:
    after = scored(100, 15)
    with pytest.raises(FacebalanceError, match=re.escape(ERR_IDS_NOT_SHARED.format(
            n=1, a="the predictions", b="the reference predictions", id="img0099"))):
        audit_predictions(after, scores="score", groups="gender", reference=after.iloc[:99])
    other = after.copy()
    other.loc[3, "label"] = 1 - other.loc[3, "label"]
    with pytest.raises(FacebalanceError, match=re.escape(ERR_LABELS_DIFFER.format(
            id="img0003", a_value=int(after.loc[3, "label"]), a="the predictions",
            b_value=int(other.loc[3, "label"]), b="the reference predictions"))):
        audit_predictions(after, scores="score", groups="gender", reference=other)


# ------------------------------------------------------------------------------------ pairs


def pairs_case(n: int = 400, seed: int = 16) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    same = (rng.random(n) < 0.5).astype(int)
    race_a = rng.choice(["asian", "black", "white"], n).astype(object)
    race_b = np.where(rng.random(n) < 0.85, race_a, rng.choice(["asian", "white"], n))
    shift = np.where(race_a == "black", 0.15, 0.0)
    return pd.DataFrame({"id_a": [f"a{i}" for i in range(n)], "id_b": [f"b{i}" for i in range(n)],
                         "same": same, "score": 0.4 * same + shift + rng.normal(0.3, 0.15, n),
                         "race_a": race_a, "race_b": race_b.astype(object),
                         "identity_a": rng.integers(0, 60, n)})


def test_audit_pairs_is_verify_metrics_at_one_global_threshold() -> None:
    frame = pairs_case()
    frame.loc[0, "race_b"] = None
    rep = audit_pairs(frame, groups=["race"], n_bootstrap=50)
    scores, same = frame["score"].to_numpy(), frame["same"].to_numpy().astype(bool)
    thr = best_threshold(scores, same)
    cluster = pd.factorize(frame["identity_a"].astype(str))[0]
    w = np.vstack([np.ones(len(frame)), bootstrap_weights(cluster.max() + 1, 50, 0)[:, cluster]])
    ref = verifier_metrics(scores, same, thr, (0.01, 0.001), w)
    assert rep["threshold"]["value"] == thr and rep["threshold"]["source"] == "test"
    assert rep["metrics"]["auc"]["value"] == ref["auc"][0]
    assert rep["metrics"]["eer"]["ci95"]["lo"] == pytest.approx(
        np.nanpercentile(ref["eer"][1:], 2.5))
    codes = np.where((frame["race_a"] == frame["race_b"]).to_numpy(),
                     frame["race_a"].map({"asian": 0, "black": 1, "white": 2}), -1)
    codes[0] = -1
    _, rates = group_rates_weighted(scores, same, codes, thr, w)
    assert rep["by_group"]["race"]["black"]["fmr"]["value"] == rates["fmr"][0, 1]
    assert rep["metrics"]["fmr_ratio_race"]["value"] == pytest.approx(
        rates["fmr"][0].max() / rates["fmr"][0].min())
    assert rep["by_group"]["race"]["black"]["fmr"]["value"] > (
        rep["by_group"]["race"]["white"]["fmr"]["value"])
    assert rep["audit"]["n_unknown"] == {"race": 1}


def test_audit_pairs_errors() -> None:
    frame = pairs_case(50)
    with pytest.raises(FacebalanceError, match="has no group column 'ethnicity_a'"):
        audit_pairs(frame, groups=["ethnicity"])
    with pytest.raises(FacebalanceError, match=re.escape("pair 'a1' / 'b1' occurs twice")):
        audit_pairs(pd.concat([frame, frame.iloc[[1]]], ignore_index=True))
    with pytest.raises(FacebalanceError, match="rates need both"):
        audit_pairs(frame.assign(same=1))


# -------------------------------------------------------------------------------------- CLI


AUDIT_OPTIONS = ("--label", "--score", "--group", "--kind", "--id", "--split", "--val",
                 "--threshold", "--train", "--compare", "--strict", "--name", "--age-bins",
                 "--config", "--out", "--bootstrap", "--seed", "--kl-bins", "--images",
                 "--shards", "--gallery")
PAIR_OPTIONS = ("--score", "--same", "--id-a", "--id-b", "--group", "--identity-a", "--split",
                "--threshold", "--far", "--strict", "--config", "--out")


@pytest.mark.parametrize(("command", "options"), [("audit", AUDIT_OPTIONS),
                                                  ("audit-pairs", PAIR_OPTIONS)])
def test_help_documents_every_option(command: str, options: tuple[str, ...]) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in options:
        line = next((ln for ln in result.output.splitlines() if f" {option} " in ln), "")
        assert len(line.split(option, 1)[1].strip()) > 20, option  # it has help text


def test_cli_audit_writes_the_report_and_reads_a_yaml(tmp_path: Path) -> None:
    frame = scored(200, 17).assign(p2=lambda f: np.clip(f["score"] - 0.05, 0, 1))
    frame.loc[2, "gender"] = ""
    path = tmp_path / "preds.csv"
    frame.to_csv(path, index=False)
    config = tmp_path / "audit.yaml"
    config.write_text("score: [score, p2]\ngroup: [gender]\nthreshold: 0.5\nbootstrap: 20\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["audit", str(path), "--config", str(config), "--out",
                                 str(out), "--threshold", "0.4"])
    assert result.exit_code == 0, result.output
    rep = json.loads((out / "gender.json").read_text())
    assert rep["threshold"] == {"seed0": 0.4, "seed1": 0.4}  # the command line wins
    assert rep["n_seeds"] == 2 and rep["strategy"] == "preds"
    assert "| gender=unknown | 1 |" in result.output
    assert "warning: 1 of 200 test rows have no gender value" in result.output


def test_cli_audit_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "preds.csv"
    scored(50, 18).to_csv(path, index=False)
    result = runner.invoke(app, ["audit", str(path), "--score", "scor", "--group", "gender"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: " + ERR_COLUMN.format(source=str(path), role="score", column="scor",
                                      hint=" (did you mean 'score'?)",
                                      columns="id, label, gender, score")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("scores: [a]\n")
    result = runner.invoke(app, ["audit", str(path), "--config", str(bad)])
    assert result.exit_code == 1 and "unknown key 'scores'; valid keys: label, score" in (
        result.output)


def test_cli_audit_pairs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.parquet"
    pairs_case(200).to_parquet(path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["audit-pairs", str(path), "--group", "race", "--far", "0.05",
                                 "--bootstrap", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rep = json.loads((out / "pairs.json").read_text())
    assert set(rep["by_group"]["race"]) == {"asian", "black", "white"}
    assert "tar_at_far_0.05" in rep["metrics"] and "| fnmr_ratio_race |" in result.output


def test_audit_options_are_bounded_and_checked(tmp_path: Path) -> None:
    """A typo in a count fails in one line instead of allocating until killed."""
    import pandas as pd

    from facebalance.audit import MAX_BOOTSTRAP_CELLS, _check_bootstrap_size, audit_command

    frame = pd.DataFrame({"label": [0, 1] * 10, "score": [0.2, 0.8] * 10,
                          "group": ["a", "b"] * 10})
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    for key, value, why in (("bootstrap", 10**9, "from 1 to 100000"),
                            ("bootstrap", "many", "from 1 to 100000"),
                            ("seed", -1, "from 0 to 2147483647")):
        with pytest.raises(FacebalanceError, match=rf"^audit: {key} = .*; expected an "
                                                   rf"integer {why}$"):
            audit_command(path, tmp_path / "out", **{key: value})
    with pytest.raises(FacebalanceError, match=r"need \d+ GB of resample weights; lower "
                                               r"--bootstrap"):
        _check_bootstrap_size(500, MAX_BOOTSTRAP_CELLS // 100)


# ------------------------------------------------------- bad inputs found by a probe (2026-12-06)


def test_option_types_output_folder_and_report_names_fail_before_work(tmp_path: Path) -> None:
    from facebalance.audit import audit_command, audit_pairs_command

    path = tmp_path / "p.csv"
    frame = scored(60, 31)
    frame.assign(gender2=frame["gender"]).to_csv(path, index=False)
    out = tmp_path / "out"
    for options, message in (
            ({"threshold": "high"}, r"threshold = 'high'; expected a number in \[0, 1\]"),
            ({"threshold": [0.5]}, r"threshold = \[0\.5\]; expected a number in \[0, 1\]"),
            ({"strict": "maybe"}, r"strict = 'maybe'; expected true or false"),
            ({"group": ["gender:a/b", "gender2:a_b"]},
             r"--group gender2:a_b and --group gender:a/b would both be reported as "
             r"a_b\.json; give each its own name"),
            ({"group": ["gender:x", "gender2:x"]}, r"both be reported as x\.json"),
            ({"group": ["gender:X", "gender2:x"]}, r"both be reported as x\.json"),
            ({"group": ["gender:a", "gender:b"]}, r"--group gender:b: the column 'gender' is "
                                                  r"given twice"),
            ({"kind": "regression", "age_bins": "30,20", "group": ["gender"]},
             r"age bins \[30\.0, 20\.0\] must increase")):
        with pytest.raises(FacebalanceError, match=message):
            audit_command(path, out, score="score", **options)
    assert not out.exists()
    # 'false' as text is false, not a non-empty (true) string
    rows = scored(60, 31)
    rows.loc[0, "gender"] = None
    rows.to_csv(path, index=False)
    audit_command(path, out, score="score", group=["gender"], strict="false", bootstrap=5)
    (tmp_path / "file").write_text("x")
    for where in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(FacebalanceError, match=r"--out .*: .*file is a file; give a folder"):
            audit_command(path, where, score="score", group=["gender"])
    pairs = tmp_path / "pairs.csv"
    pairs_case(80).to_csv(pairs, index=False)
    for options, message in (({"threshold": "nan"}, r"threshold = 'nan'; expected a number"),
                             ({"far": "2"}, r"far 2 is invalid; expected false accept rates "
                                            r"in \(0, 1\)"),
                             ({"far": "nan"}, r"far 'nan': expected finite numbers such as "
                                              r"0\.01,0\.001")):
        with pytest.raises(FacebalanceError, match=message):
            audit_pairs_command(pairs, tmp_path / "pout", **options)


def test_an_earlier_audits_files_are_replaced_and_the_users_kept(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    frame = scored(80, 32)
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    audit_files(path, out, groups=["gender:sex"], scores="score", n_bootstrap=5)
    assert (out / "sex.json").is_file()
    audit_files(path, out, groups=["gender"], scores="score", n_bootstrap=5)
    assert (out / "gender.json").is_file() and not (out / "sex.json").exists()
    assert not (out / "sex_metrics.png").exists() and (out / "notes.txt").read_text() == "mine"


def test_regression_labels_bins_and_multiclass_classes_are_checked() -> None:
    rng = np.random.default_rng(33)
    age = rng.uniform(18, 80, 100)
    frame = pd.DataFrame({"age": age, "pred": age + rng.normal(0, 3, 100),
                          "group": rng.integers(0, 2, 100)})
    bad = frame.copy()
    bad.loc[3, "pred"] = np.inf
    with pytest.raises(FacebalanceError, match=r"prediction column 'pred' holds inf in row 4; "
                                               r"expected a finite number"):
        audit_predictions(bad, label="age", scores="pred", kind="regression", n_bootstrap=5)
    with pytest.raises(FacebalanceError, match=r"every test label of the predictions falls in "
                                               r"one age bin \(age 10\+; the labels run from "
                                               r"18\.\d+ to 79\.\d+\); give --age-bins edges"):
        audit_predictions(frame, label="age", scores="pred", kind="regression",
                          age_bins=(10,), n_bootstrap=5)
    classes = np.array(["cat", "dog", "eel"])
    y = rng.integers(0, 3, 60)
    for labels, guesses, shown in ((classes[y], (0.6, "0.1,0.6,0.3"), "cat, dog, eel"),
                                   (y, (2.5, "0.1,0.6,0.3", "cat"), "0, 1, 2")):
        multi = pd.DataFrame({"label": labels, "guess": labels, "group": y % 2})
        for guess in guesses:
            wrong = multi.copy()
            wrong["guess"] = wrong["guess"].astype(object)
            wrong.loc[5, "guess"] = guess
            with pytest.raises(FacebalanceError, match=rf"prediction column 'guess' holds .* "
                                                       rf"in row 6, which is no class \(the "
                                                       rf"labels' classes: {shown}\)"):
                audit_predictions(wrong, scores="guess", kind="multiclass", n_bootstrap=5)
    # A class no label has is a class (the model's argmax runs over all of them): counted
    for labels, guess in ((y, 3), (classes[y], "owl")):
        other = pd.DataFrame({"label": labels, "guess": labels, "group": y % 2})
        other["guess"] = other["guess"].astype(object)
        other.loc[5, "guess"] = guess
        rep = audit_predictions(other, scores="guess", kind="multiclass", n_bootstrap=5)
        assert rep["group"]["accuracy"]["value"] == pytest.approx(59 / 60)


def test_all_negative_labels_give_an_undefined_ap_and_a_threshold_hint(tmp_path: Path) -> None:
    rows = scored(80, 34).assign(label=0)
    path = tmp_path / "neg.csv"
    rows.to_csv(path, index=False)
    result = runner.invoke(app, ["audit", str(path), "--score", "score", "--group", "gender",
                                 "--bootstrap", "10", "--out", str(tmp_path / "a")])
    assert result.exit_code == 1 and "the test rows hold no positive label, so no threshold" \
        in result.output and "(--threshold)" in result.output
    import warnings

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["audit", str(path), "--score", "score", "--group",
                                     "gender", "--threshold", "0.5", "--bootstrap", "10",
                                     "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "| neg | 1 | n/a ± 0.000 [n/a, n/a] |" in result.output  # AP: undefined, not 0
    # numpy's all-NaN warnings would repeat "n/a" as noise on stderr
    assert not [w for w in shown if issubclass(w.category, RuntimeWarning)], shown


def test_named_columns_training_and_validation_files_are_checked(tmp_path: Path) -> None:
    from facebalance.audit import audit_command

    path = tmp_path / "p.csv"
    scored(80, 35).to_csv(path, index=False)
    out = tmp_path / "out"
    for key in ("split", "id"):  # named, so required; the defaults stay optional
        with pytest.raises(FacebalanceError, match=rf"p\.csv has no {key} column 'nope'"):
            audit_command(path, out, score="score", group=["gender"], **{key: "nope"})
    header = tmp_path / "header.csv"
    header.write_text("id,label,gender,score\n")
    with pytest.raises(FacebalanceError, match=r"header\.csv has no rows$"):
        audit_command(header, out, score="score", group=["gender"])
    with pytest.raises(FacebalanceError, match=r"the validation file .*header\.csv has no rows"):
        audit_command(path, out, score="score", group=["gender"], val=header)
    val = tmp_path / "val.csv"
    scored(40, 36).drop(columns=["label"]).to_csv(val, index=False)
    with pytest.raises(FacebalanceError, match=r"val\.csv has no label column 'label'"):
        audit_command(path, out, score="score", group=["gender"], val=val)
    train = tmp_path / "train.csv"
    for rows, message in (
            (scored(40, 37).drop(columns=["gender"]), r"the training rows has no group column"),
            (scored(40, 37).assign(label=["yes"] + [0] * 39), r"label column 'label' holds "
                                                              r"'yes' in row 1")):
        rows.to_csv(train, index=False)
        with pytest.raises(FacebalanceError, match=message):
            audit_command(path, out, score="score", group=["gender"], train=train)
    scored(40, 37).assign(gender="male").to_csv(train, index=False)
    rep = audit_command(path, out, score="score", group=["gender"], train=train,
                        bootstrap=5)["gender"]
    assert rep["ba"]["value"] is None or np.isnan(rep["ba"]["value"])  # not 0.000
    assert rep["audit"]["bias_amplification"].startswith(
        "null: training rows in 1 of the test's gender groups (the training rows' groups: "
        "male); bias amplification needs two")
    # Three groups, one without training rows: BA from the other two, as evaluate's nanmean
    three = scored(90, 40, groups=("a", "b", "c"))
    three.to_csv(path, index=False)
    scored(90, 41, groups=("a", "b")).to_csv(train, index=False)
    rep = audit_command(path, out, score="score", group=["gender"], train=train,
                        bootstrap=5)["gender"]
    assert np.isfinite(rep["ba"]["value"])
    assert rep["audit"]["bias_amplification"].endswith(
        "; gender=c has no training rows and takes no part")
    # A YAML that spells out the defaults, or leaves them empty, keeps them optional
    config = tmp_path / "a.yaml"
    config.write_text("split: split\nid:\nstrict:\n")
    scored(60, 42).drop(columns=["id"]).to_csv(path, index=False)
    audit_command(path, out, config=config, score="score", group=["gender"], bootstrap=5)


def test_audit_pairs_needs_two_groups_with_pairs_inside_them() -> None:
    one = pairs_case(100).assign(race_a="asian", race_b="asian")
    with pytest.raises(FacebalanceError, match=r"1 race group\(s\) have test pairs with both "
                                               r"faces in them \(asian; .*need two or more"):
        audit_pairs(one, groups=["race"], n_bootstrap=5)
    cross = pairs_case(100).assign(race_a="asian", race_b="white")
    with pytest.raises(FacebalanceError, match=r"0 race group\(s\) .*\(none; the faces' groups: "
                                               r"asian, white\)"):
        audit_pairs(cross, groups=["race"], n_bootstrap=5)


def test_group_values_differing_only_in_case_are_warned_about() -> None:
    rows = scored(80, 38)
    rows.loc[:9, "gender"] = rows.loc[:9, "gender"].str.upper()
    rep = audit_predictions(rows, scores="score", groups="gender", n_bootstrap=5)["gender"]
    assert len(rep["by_group"]) == 4  # kept apart: they may be meant so
    assert sum("differ only in case and are separate groups" in w
               for w in rep["audit"]["warnings"]) == 2


def test_score_errors_in_the_validation_and_reference_files_name_them(tmp_path: Path) -> None:
    from facebalance.audit import audit_command

    path, other = tmp_path / "p.csv", tmp_path / "nan.csv"
    scored(60, 39).to_csv(path, index=False)
    scored(60, 39).assign(score=np.nan).to_csv(other, index=False)
    # The reference's own row is named (its rows are matched by id, in another order)
    shuffled = scored(60, 39).iloc[::-1]
    shuffled.loc[shuffled["id"] == "img0005", "score"] = np.nan
    shuffled.to_csv(tmp_path / "ref.csv", index=False)
    with pytest.raises(FacebalanceError, match=r"no value in row 55 \(id 'img0005'\).*\(in the "
                                               r"reference .*ref\.csv\)$"):
        audit_command(path, tmp_path / "out", score="score", group=["gender"],
                      compare=tmp_path / "ref.csv")
    # A validation file without the id column: its rows have no ids, not duplicate ones
    scored(30, 43).drop(columns=["id"]).to_csv(tmp_path / "noid.csv", index=False)
    audit_command(path, tmp_path / "out", score="score", group=["gender"],
                  val=tmp_path / "noid.csv", bootstrap=5)
    for option in ("val", "compare"):
        with pytest.raises(FacebalanceError, match=rf"has no value in row 1 \(id 'img0000'\); "
                                                   rf".*\(in the .*{re.escape(str(other))}\)$"):
            audit_command(path, tmp_path / "out", score="score", group=["gender"],
                          **{option: other})


def test_a_validation_file_with_a_split_column_gives_its_val_rows_only(tmp_path: Path) -> None:
    """A ``--val`` file that holds test rows too (another run's predictions file, say) must
    not calibrate the threshold on them."""
    from facebalance.audit import audit_command

    rows = scored(120, 44)
    rows["split"] = ["val"] * 40 + ["test"] * 80
    path, test_only, other = tmp_path / "p.csv", tmp_path / "t.csv", tmp_path / "o.csv"
    rows.to_csv(path, index=False)
    rows.iloc[40:].to_csv(test_only, index=False)
    rows.assign(id=rows["id"] + "x").to_csv(other, index=False)  # 40 val + 80 test rows
    own = audit_command(path, tmp_path / "a", score="score", group=["gender"], bootstrap=5)
    via = audit_command(test_only, tmp_path / "b", score="score", group=["gender"], val=other,
                        bootstrap=5)
    assert "on the 40 validation rows" in own["gender"]["audit"]["threshold"]["text"]
    assert via["gender"]["audit"]["threshold"] == own["gender"]["audit"]["threshold"]
    rows.assign(split="test").to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(FacebalanceError, match=r"v\.csv has a 'split' column and no 'val' row"):
        audit_command(path, tmp_path / "c", score="score", group=["gender"],
                      val=tmp_path / "v.csv")
