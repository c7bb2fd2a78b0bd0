"""latent_smote / pixel_smote end to end: a tiny `age_smote` pipeline through DVC."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from facebalance.data.shards import read_columns, read_parquet
from facebalance.presets import PRESETS

from .dvcproject import commit, dvc, new_project, ran, set_params

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


def _preset(name: str) -> dict:
    out: dict = {}
    for key, value in PRESETS[name].items():
        if "." in key:
            section, k = key.split(".")
            out.setdefault(section, {})[k] = value
        else:
            out[key] = value
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("age_smote")
    changes = _preset("age_smote")
    for section, values in TINY.items():
        changes[section] = {**changes.get(section, {}), **values}
    new_project(root, changes)
    stages = ran(dvc(root, "repro", "compare").stdout)
    assert SMOTE_STAGES <= stages
    assert not stages & {"sample", "score", "boundaries", "complement"}  # no z/z' pairs
    commit(root)
    return root


def test_cells_reach_the_mean_size_with_both_image_sets(project: Path) -> None:
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
    inv = json.loads((project / "metrics/invert.json").read_text())
    assert inv["test"]["n"] == 100 and inv["train"]["n"] == 600
    assert inv["test"]["error"] < inv["test"]["error_random"]
    assert len(inv["test"]["by_group"]) == 6  # age bins [30, 40, 50, 60, 70] -> 6 groups
    assert (project / "metrics/invert.png").stat().st_size > 0
    assert (project / "models/invert/encoder.pt").is_file()
    table = (project / "metrics/compare.md").read_text()
    assert "| latent_smote | 2 |" in table and "Paired differences against `pixel_smote`" in table


def test_a_train_target_change_reruns_neither_inversion_nor_generation(project: Path) -> None:
    set_params(project / "params.yaml", {"train_target": {"epochs": 2}})
    stages = ran(dvc(project, "repro", "compare").stdout)
    assert "train_target@latent_smote" in stages
    assert not stages & (SMOTE_STAGES | {"prepare"})
