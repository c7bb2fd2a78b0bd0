"""The issue's round trip: the pipeline's own ``baseline`` test scores, exported to a CSV and
audited, give the numbers of ``metrics/reports/baseline.json``.

It reads the session's tiny pipeline (``binary_project``, built by ``dvc repro`` for the
slow tests) and runs no stage of its own; the fast suite checks the same on a simulated
scores table (tests/test_audit.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from facebalance.audit import audit_files
from facebalance.data.shards import read_columns

pytestmark = pytest.mark.slow


def test_baseline_scores_exported_to_csv_audit_to_the_stage_report(
        binary_project: Path, tmp_path: Path) -> None:
    project = binary_project
    params = yaml.safe_load((project / "params.yaml").read_text())
    target, protected = params["dataset"]["target"], params["dataset"]["protected"]
    want = json.loads((project / "metrics/reports/baseline.json").read_text())
    scores = pd.read_parquet(project / "data/scores/baseline.parquet")
    csv = tmp_path / "baseline.csv"
    scores.to_csv(csv, index=False)
    train = read_columns(project / "data/prepared/train", [target, protected])
    train_csv = tmp_path / "train.csv"
    train[[target, protected]].set_axis(["label", "group"], axis=1).to_csv(train_csv,
                                                                          index=False)
    audit_files(csv, tmp_path / "out", groups=[f"group:{protected}"], train=train_csv,
                name="baseline", n_bootstrap=params["evaluate"]["bootstrap"],
                bootstrap_seed=params["base"]["seed"],
                kl_bins=params["evaluate"].get("kl_bins", 50))
    got = json.loads((tmp_path / "out" / f"{protected}.json").read_text())
    # A CSV holds the float32 scores as short decimals: predictions are unchanged, the
    # thresholds differ in their last float32 digits only.
    assert got.pop("threshold") == pytest.approx(want.pop("threshold"), rel=1e-6)
    assert got["audit"]["threshold"]["source"] == "validation"
    # The audit's task names the CSV's columns (label, group), the stage's the dataset's.
    assert got.pop("task")["protected"] == want.pop("task")["protected"] == protected
    for key, value in want.items():
        assert got[key] == value, key
