"""Paired strategy differences against a per-resample reference loop."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facebalance.errors import FacebalanceError
from facebalance.metrics.bootstrap import bootstrap_weights
from facebalance.metrics.paired import (
    compare_paired,
    guard_json,
    guard_markdown,
    guard_verdicts,
    paired_differences,
    paired_json,
    paired_markdown,
    seed_mean_replicates,
    split_rows,
)
from facebalance.results import read_score_tables
from facebalance.task import Head, TaskSpec

BINARY = TaskSpec(heads=(Head("t", "binary"),), protected="p")


def _table(rng: np.random.Generator, n: int, seeds: int, miss_group1: float) -> pd.DataFrame:
    """Scores where positives of group 1 score low with probability ``miss_group1``."""
    y = rng.integers(0, 2, n)
    g = rng.integers(0, 2, n)
    frame = pd.DataFrame({"id": [f"i{k}" for k in range(n)], "label": y, "group": g})
    for s in range(seeds):
        score = np.where(y == 1, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.5, n))
        missed = (y == 1) & (g == 1) & (rng.random(n) < miss_group1)
        frame[f"score_seed{s}"] = np.where(missed, rng.uniform(0.0, 0.4, n), score)
    return frame


def _deo_loop(y: np.ndarray, g: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> float:
    fnr = []
    for grp in (0, 1):
        pos = [i for i in idx if g[i] == grp and y[i] == 1]
        fnr.append(sum(1 for i in pos if pred[i] == 0) / len(pos))
    return abs(fnr[0] - fnr[1])


def test_seed_mean_replicates_match_a_resample_loop() -> None:
    rng = np.random.default_rng(0)
    table = _table(rng, 60, seeds=3, miss_group1=0.3)
    thresholds = {"seed0": 0.5, "seed1": 0.45, "seed2": 0.55}
    w = bootstrap_weights(60, 25, seed=4)
    got = seed_mean_replicates(table, thresholds, task=BINARY, weights=w,
                               metrics=["deo", "accuracy"], seed_draws=9)
    y, g = table["label"].to_numpy(), table["group"].to_numpy()
    preds = [(table[f"score_seed{s}"].to_numpy() >= thresholds[f"seed{s}"]).astype(int)
             for s in range(3)]
    picks = np.random.default_rng(9).integers(0, 3, size=(25, 3))
    assert got["deo"][0] == pytest.approx(np.mean([_deo_loop(y, g, p, range(60))
                                                   for p in preds]))
    for b in range(25):
        idx = np.repeat(np.arange(60), w[b])
        deo = np.mean([_deo_loop(y, g, preds[s], idx) for s in picks[b]])
        acc = np.mean([np.mean([preds[s][i] == y[i] for i in idx]) for s in picks[b]])
        assert got["deo"][b + 1] == pytest.approx(deo, abs=1e-12)
        assert got["accuracy"][b + 1] == pytest.approx(acc, abs=1e-12)


def test_identical_strategies_differ_by_exactly_zero() -> None:
    table = _table(np.random.default_rng(1), 200, seeds=1, miss_group1=0.4)
    diffs = paired_differences({"baseline": table, "copy": table.copy()},
                               {"baseline": {"seed0": 0.5}, "copy": {"seed0": 0.5}},
                               task=BINARY, references=["baseline"], n_bootstrap=50)
    assert set(diffs["metric"]) == {"ap", "accuracy", "deo", "dp_diff", "eo_diff",
                                    "group_acc_std"}
    assert (diffs[["diff", "lo", "hi"]].to_numpy() == 0).all()


def test_a_fairer_strategy_has_an_interval_below_zero() -> None:
    rng = np.random.default_rng(2)
    base = _table(rng, 2000, seeds=3, miss_group1=0.5)
    fair = _table_like(base, rng)
    thr = {f"seed{s}": 0.5 for s in range(3)}
    diffs = paired_differences({"baseline": base, "fair": fair},
                               {"baseline": thr, "fair": thr}, task=BINARY,
                               references=["baseline"], metrics=["deo"], n_bootstrap=200)
    row = diffs.iloc[0]
    assert row["strategy"] == "fair" and row["diff"] < -0.3 and row["hi"] < 0
    assert row["p_better"] == 1.0
    out = paired_json(diffs)
    assert out["fair-vs-baseline"]["deo"]["ci95"]["hi"] == row["hi"]
    assert "Paired differences against `baseline`" in paired_markdown(diffs)


def _table_like(base: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Same images and labels as ``base``, scores that miss nobody."""
    y = base["label"].to_numpy()
    frame = base[["id", "label", "group"]].copy()
    for s in range(3):
        frame[f"score_seed{s}"] = np.where(y == 1, rng.uniform(0.5, 1.0, len(y)),
                                           rng.uniform(0.0, 0.5, len(y)))
    return frame


def test_different_test_images_are_refused() -> None:
    a = _table(np.random.default_rng(4), 30, seeds=1, miss_group1=0.2)
    b = a.iloc[::-1].reset_index(drop=True)
    with pytest.raises(FacebalanceError, match="'b' and 'a' were scored on different test"):
        paired_differences({"a": a, "b": b}, {"a": {"seed0": 0.5}, "b": {"seed0": 0.5}},
                           task=BINARY, references=["a"])


def test_compare_paired_skips_absent_references_and_a_missing_table_is_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(5)
    base = _table(rng, 100, seeds=2, miss_group1=0.3)
    base.to_parquet(tmp_path / "baseline.parquet")
    _table_like(base, rng).drop(columns="score_seed2").to_parquet(tmp_path / "other.parquet")
    reports = {s: {"threshold": {"seed0": 0.5, "seed1": 0.5}, "task": BINARY.to_dict()}
               for s in ("baseline", "other")}
    with caplog.at_level(logging.WARNING):
        diffs = compare_paired(read_score_tables(tmp_path, ["baseline", "other"]), reports,
                               ["baseline", "other"],
                               ["baseline", "gan_gz_only"], ["deo", "ba", "kl"], n_bootstrap=20)
    assert diffs[["strategy", "reference", "metric"]].values.tolist() == [
        ["other", "baseline", "deo"]]  # BA and KL need more than scores
    assert "reference 'gan_gz_only' is not in strategies" in caplog.text
    with pytest.raises(FacebalanceError, match=r"missing\.parquet is missing; run "
                       r"evaluate@missing"):
        read_score_tables(tmp_path, ["baseline", "missing"])


def _diff_rows(rows: list[tuple[str, str, float, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"strategy": s, "reference": "baseline", "metric": m, "diff": d,
                          "lo": lo, "hi": hi, "p_better": 0.5, "reference_value": ref}
                         for s, m, d, lo, hi, ref in rows])


def test_guard_flags_only_harm_beyond_noise_and_tolerance() -> None:
    diffs = _diff_rows([
        ("noisy", "ap", -0.02, -0.05, 0.01, 0.90), ("noisy", "deo", 0.03, -0.01, 0.07, 0.1),
        ("biased", "ap", 0.0, -0.01, 0.01, 0.90), ("biased", "deo", 0.05, 0.01, 0.09, 0.1),
        # 0.008 below AP 0.90 beyond noise: within 1% (0.009) of the baseline's value.
        ("cheap", "ap", -0.008, -0.0095, -0.0085, 0.90), ("cheap", "deo", -0.1, -0.2, 0.0, 0.1),
        ("costly", "ap", -0.03, -0.04, -0.02, 0.90), ("costly", "deo", -0.1, -0.2, -0.05, 0.1),
    ])
    got = guard_verdicts(diffs, "ap", "deo", tolerance=0.01).set_index("strategy")
    assert got["flagged"].to_dict() == {"noisy": False, "biased": True, "cheap": False,
                                        "costly": True}
    assert got.at["biased", "reasons"] == "DEO worse"
    assert got.at["costly", "reasons"] == "AP more than 1% worse"
    # Lower-is-better quality (MAE): worse means the whole interval above the tolerance.
    mae = _diff_rows([("r", "mae", 0.5, 0.2, 0.8, 8.0), ("r", "worst_group_mae", 0, -1, 1, 9)])
    assert guard_verdicts(mae, "mae", "worst_group_mae").at[0, "reasons"] == (
        "MAE more than 1% worse")
    md = guard_markdown(diffs, guard_verdicts(diffs, "ap", "deo"), "baseline", 0.01)
    assert "| biased | +0.000 [-0.010, +0.010] | +0.050 [+0.010, +0.090] | **worse than " \
           "baseline: DEO worse** |" in md
    out = guard_json(diffs, guard_verdicts(diffs, "ap", "deo"))
    assert out["costly"]["flagged"] and out["costly"]["ap"]["ci95"]["hi"] == -0.02


def test_compare_paired_reads_the_val_rows_for_the_guard(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    test, val = _table(rng, 200, seeds=2, miss_group1=0.0), _table(rng, 300, 2, 0.0)
    biased = _table_like(val, rng)
    miss = (biased["label"] == 1) & (biased["group"] == 1)
    for s in range(2):  # worse than the baseline on val only
        biased.loc[miss, f"score_seed{s}"] = 0.1
    both = pd.concat([test.assign(split="test"), val.assign(split="val")], ignore_index=True)
    both.to_parquet(tmp_path / "baseline.parquet")
    pd.concat([test.assign(split="test"), biased.drop(columns="score_seed2").assign(
        split="val")], ignore_index=True).to_parquet(tmp_path / "biased.parquet")
    reports = {s: {"threshold": {"seed0": 0.5, "seed1": 0.5}, "task": BINARY.to_dict()}
               for s in ("baseline", "biased")}
    args = (read_score_tables(tmp_path, ["baseline", "biased"]), reports,
            ["baseline", "biased"], ["baseline"], ["ap", "deo"])
    on_test = compare_paired(*args, n_bootstrap=50).set_index("metric")
    assert on_test.at["deo", "diff"] == 0.0
    on_val = compare_paired(*args, n_bootstrap=50, split="val")
    assert on_val.set_index("metric").at["deo", "lo"] > 0.5
    assert guard_verdicts(on_val, "ap", "deo")["flagged"].tolist() == [True]
    with pytest.raises(FacebalanceError, match="no val rows; rerun evaluate"):
        split_rows(test, "val")
