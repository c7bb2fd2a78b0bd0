"""gan_complement_real end to end: complements of inverted real faces.

The stages run in the session's tiny pipeline (``binary_project``, through ``dvc repro``);
the strategy is planned, trained and compared in ``folder_run``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facebalance.data.shards import read_columns, read_parquet

from .stagerun import plan

pytestmark = pytest.mark.slow


def test_the_strategy_needs_inversion_but_not_the_sampled_pairs(
        folder_run: tuple[Path, list[str]]) -> None:
    """DVC's plan for the strategy's training: inversion and the real complements, neither
    the sampled z/z' complements nor the interpolations."""
    root, _ = folder_run
    stages = {name for name, _ in plan(root, "train_target@gan_complement_real")}
    assert {"invert", "boundaries", "complement_real", "augment_real_pairs",
            "train_target@gan_complement_real"} <= stages
    assert not stages & {"complement", "interpolate"}


def test_every_partner_is_a_complemented_real_face_with_its_label(
        binary_project: Path, folder_run: tuple[Path, list[str]]) -> None:
    """300 partners of distinct real faces, with their labels; the training index adds
    them to the 600 real images; the strategy is trained and compared."""
    project = binary_project
    partners = read_parquet(project / "data/complement_real/partners.parquet")
    # synthetic_share 0.5 of 600 real images at weight 1: 300 partners, distinct real faces.
    assert len(partners) == 300 and partners["real_id"].is_unique
    train = read_columns(project / "data/prepared/train", ["id", "blond", "male"])
    real = train.set_index("id").loc[partners["real_id"]]
    np.testing.assert_array_equal(partners["label"], real["blond"])
    np.testing.assert_array_equal(partners["real_group"], real["male"])
    ids = read_columns(project / "data/complement_real/images", ["id"])["id"]
    assert ids.tolist() == partners["id"].tolist()
    report = json.loads((project / "metrics/complement_real.json").read_text())
    assert report["partners"] == 300 and report["n_real"] == 600
    flipped = (partners["group"] != partners["real_group"]).mean()
    assert report["protected_flip_rate"] == pytest.approx(flipped)
    index = read_parquet(project / "data/trainsets/gan_complement_real.parquet")
    assert len(index) == 900 and (index["source"] == "generated").sum() == 300
    root, _ = folder_run
    rep = json.loads((root / "metrics/reports/gan_complement_real.json").read_text())
    assert rep["n_seeds"] == 2 and set(rep["by_group"]) == {"male=0", "male=1"}
    assert "| gan_complement_real | 2 |" in (root / "metrics/compare.md").read_text()
