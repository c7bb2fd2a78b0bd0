"""End to end on a tiny `hard` setting: the old absolute synthetic budget against the
budget relative to the real data, and the validation guard on both.

The tiny pipeline runs the `hard` preset's data (P(blond | group) 0.85 vs 0.15, a small
real set) through DVC twice: once with the old GAN defaults (every one of many pairs at
loss weight 4: the generated images outweigh the real ones 32 to 1, as 48,000 pairs
at weight 4 did against 9,400 real photos), then with the committed defaults, where only
the stages after the latent ones rerun.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from facebalance.presets import PRESETS

from .conftest import REPO
from .dvcproject import dvc, new_project, ran, set_params

pytestmark = pytest.mark.slow

HARD = {k.split(".")[1]: v for k, v in PRESETS["hard"].items() if k.startswith("dataset.")}
TINY = {
    "dataset": {**HARD, "n_train": 1000, "n_val": 240, "n_test": 480, "rows_per_file": 500,
                "row_group_size": 100},
    "train_attr": {"epochs": 6, "width": 8, "batch_size": 32, "lr": 0.01},
    "train_target": {"epochs": 2, "width": 8, "seeds": [0, 1]},
    "evaluate": {"bootstrap": 100},
    # Enough GAN steps that its images get both labels of both attributes.
    "gan": {"steps": 600, "width": 16, "latent_dim": 16, "batch_size": 32},
    "sample": {"n": 900, "batch_size": 256},
    "boundaries": {"n_fit": 400, "n_val": 100},
    "strategies": ["baseline", "gan_complement"],
    "compare": {"references": ["baseline"]},
}
OLD = {"augment": {"synthetic_share": 0.0, "synthetic_weight": 4.0},
       "complement": {"n_pairs": 4000}}
DEFAULTS = yaml.safe_load((REPO / "params.yaml").read_text())


def _paired(root: Path) -> dict:
    return json.loads((root / "metrics/paired.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("hard")
    new_project(root, {**TINY, "augment": OLD["augment"], "complement": OLD["complement"]})
    dvc(root, "repro", "compare")
    old = _paired(root)
    old["budget"] = json.loads((root / "metrics/augment/gan_complement.json").read_text())
    # Back to the committed defaults, keeping the tiny sizes.
    set_params(root / "params.yaml", {
        "augment": {k: DEFAULTS["augment"][k] for k in OLD["augment"]},
        "complement": {"n_pairs": DEFAULTS["complement"]["n_pairs"]}})
    proc = dvc(root, "repro", "compare")
    assert "train_gan" not in ran(proc.stdout)  # the GAN and its latents are reused
    new = _paired(root)
    new["budget"] = json.loads((root / "metrics/augment/gan_complement.json").read_text())
    return {"old": old, "new": new}


def test_the_old_budget_outweighs_the_real_data_and_the_new_one_follows_it(runs) -> None:
    assert runs["old"]["budget"]["synthetic_share"] == pytest.approx(2 * 4000 * 4 / 1000)
    share = DEFAULTS["augment"]["synthetic_share"]
    assert runs["new"]["budget"]["synthetic_share"] == pytest.approx(share, rel=0.01)


def test_the_guard_judges_the_gan_strategy_on_validation_in_both_runs(runs) -> None:
    # At this size the old budget's AP loss is not beyond noise (measured: -0.035
    # [-0.084, +0.012]); the `hard` preset shows it at full size (README), the guard
    # flagging it on validation. Here: the guard's verdict and its val differences exist.
    for run in ("old", "new"):
        guard = runs[run]["val_guard"]["gan_complement"]
        assert isinstance(guard["flagged"], bool) and {"ap", "deo"} <= set(guard)


def test_new_defaults_cost_no_ap_point_and_raise_no_deo_beyond_noise(runs) -> None:
    new = runs["new"]["gan_complement-vs-baseline"]
    assert new["ap"]["ci95"]["hi"] >= -0.01
    assert new["deo"]["ci95"]["lo"] <= 0
    assert not runs["new"]["val_guard"]["gan_complement"]["flagged"]
