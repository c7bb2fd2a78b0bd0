"""gan_complement_real end to end: complements of inverted real faces, a tiny DVC pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facebalance.data.shards import read_columns, read_parquet

from .dvcproject import dvc, new_project, ran

pytestmark = pytest.mark.slow

TINY = {
    "dataset": {"n_train": 600, "n_val": 160, "n_test": 240, "rows_per_file": 400,
                "row_group_size": 100},
    "train_target": {"epochs": 1, "width": 8, "seeds": [0, 1]},
    # As in test_pipeline.py: generated images get both labels from the tiny classifiers.
    "train_attr": {"epochs": 6, "width": 8, "batch_size": 32, "lr": 0.01, "balance": "none"},
    "evaluate": {"bootstrap": 40},
    # The plain stream: at this size the cell-balanced one (gan.balance auto) drew faces the
    # tiny labellers all put in one class, which boundaries refuses; the default stream runs
    # end to end in test_gan_budget.py.
    "gan": {"steps": 300, "width": 8, "latent_dim": 16, "batch_size": 32, "balance": "none"},
    "sample": {"n": 900, "batch_size": 256},
    "boundaries": {"n_fit": 400, "n_val": 100},
    "invert": {"encoder_steps": 40, "encoder_width": 8, "steps": 5, "n_test": 50},
    "strategies": ["baseline", "gan_complement_real"],
    "compare": {"references": ["baseline"]},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("complement_real")
    new_project(root, TINY)
    stages = ran(dvc(root, "repro", "compare").stdout)
    assert {"invert", "boundaries", "complement_real", "augment_real_pairs",
            "train_target@gan_complement_real"} <= stages
    assert not stages & {"complement", "interpolate"}
    return root


def test_every_partner_is_a_complemented_real_face_with_its_label(project: Path) -> None:
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
    assert "| gan_complement_real | 2 |" in (project / "metrics/compare.md").read_text()
