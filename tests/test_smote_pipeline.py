"""latent_smote / pixel_smote end to end: a tiny `age_smote` pipeline, in process.

That a train_target change reruns neither inversion nor generation is tested through DVC
on the session's pipeline (test_pipeline.py), which runs these stages too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from facebalance.data.shards import read_columns, read_parquet

from .projects import build_inprocess, merge, preset

pytestmark = pytest.mark.slow

TINY = {
    "dataset": {"n_train": 600, "n_val": 160, "n_test": 240, "rows_per_file": 400,
                "row_group_size": 100},
    "train_target": {"epochs": 1, "width": 8, "seeds": [0, 1]},
    "evaluate": {"bootstrap": 40},
    "gan": {"steps": 60, "width": 8},
    "sample": {"n": 200},
    "boundaries": {"n_fit": 100, "n_val": 50},
    "invert": {"encoder_steps": 40, "encoder_width": 8, "steps": 5, "n_test": 100},
}
SMOTE_STAGES = {"train_gan", "invert", "interpolate", "augment_smote@latent_smote",
                "augment_smote@pixel_smote"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("age_smote")
    stages = set(build_inprocess(root, merge(preset("age_smote"), TINY), "compare"))
    assert SMOTE_STAGES <= stages
    assert not stages & {"sample", "score", "boundaries", "complement"}  # no z/z' pairs
    return root


def test_cells_reach_the_mean_size_with_both_image_sets(project: Path) -> None:
    """Cells below the mean grow to it with interpolations in [0.1, 0.9]; both image sets
    follow the plan, and each training index adds them with the plan's labels."""
    report = json.loads((project / "metrics/interpolate.json").read_text())
    target = report["target_size"]
    assert all(c["after"] >= min(c["before"], target) for c in report["cells"].values())
    assert any(c["after"] > c["before"] for c in report["cells"].values())
    assert 0.1 <= report["alpha"]["min"] <= report["alpha"]["max"] <= 0.9
    plan = read_parquet(project / "data/interpolated/plan.parquet")
    assert len(plan) == report["new_samples"]
    for kind in ("latent", "pixel"):
        ids = read_columns(project / f"data/interpolated/{kind}", ["id"])["id"]
        assert ids.tolist() == plan["id"].tolist()
    for strategy in ("latent_smote", "pixel_smote"):
        index = read_parquet(project / f"data/trainsets/{strategy}.parquet")
        new = index[index["source"] == "interpolated"]
        assert len(new) == len(plan) and len(index) == 600 + len(plan)
        assert new["path"].str.endswith(strategy.split("_")[0]).all()
        pd.testing.assert_series_equal(new["label"].reset_index(drop=True),
                                       plan["label"].astype(new["label"].dtype),
                                       check_names=False)


def test_inversion_report_and_comparison(project: Path) -> None:
    """Inversion beats random latents on the 6 age groups; both strategies compared."""
    inv = json.loads((project / "metrics/invert.json").read_text())
    assert inv["test"]["n"] == 100 and inv["train"]["n"] == 600
    assert inv["test"]["error"] < inv["test"]["error_random"]
    assert len(inv["test"]["by_group"]) == 6  # age bins [30, 40, 50, 60, 70] -> 6 groups
    assert (project / "metrics/invert.png").stat().st_size > 0
    assert (project / "models/invert/encoder.pt").is_file()
    table = (project / "metrics/compare.md").read_text()
    assert "| latent_smote | 2 |" in table and "Paired differences against `pixel_smote`" in table
