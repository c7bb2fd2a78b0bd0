"""End to end per task kind: a tiny pipeline of the classic strategies for each, in process.

skin4 (binary target, K = 4 groups) is the session's ``skin4_run`` (shared with the guided
tests); multitask and multiclass run here. DVC's own behaviour is tested on the session's
``binary_project`` (test_pipeline.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .projects import build_inprocess, merge

pytestmark = pytest.mark.slow

TINY = {
    "dataset": {"n_train": 480, "n_val": 160, "n_test": 240, "rows_per_file": 400,
                "row_group_size": 100},
    "train_target": {"epochs": 1, "width": 8, "seeds": [0, 1]},
    "evaluate": {"bootstrap": 40},
    "strategies": ["baseline", "oversample", "val_attention"],
    "compare": {"metrics": [], "references": ["baseline"]},
}
SKEW = [0.55, 0.25, 0.12, 0.08]
KINDS = {
    "skin4": {"dataset": {"protected": "skin", "skin_shares": SKEW,
                          "p_target_given_group": [0.3, 0.15, 0.06, 0.03]}},
    "race_gender": {"dataset": {"target": "skin", "protected": "skin", "skin_shares": SKEW},
                    "task": {"kind": "multitask", "extra_targets": ["male"]}},
    "skin_classes": {"dataset": {"target": "skin", "protected": "skin", "skin_shares": SKEW},
                     "task": {"kind": "multiclass"}},
}
# Regression (age) runs through DVC in tests/test_presets.py, as the `age` preset.
GAN_STAGES = {"train_attr@target", "train_gan", "sample", "score", "boundaries", "complement"}


@pytest.fixture(scope="module", params=list(KINDS))
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[str, Path]:
    if request.param == "skin4":  # with guided beside the classic strategies
        root, stages = request.getfixturevalue("skin4_run")
    else:
        root = tmp_path_factory.mktemp(request.param)
        stages = build_inprocess(root, merge(TINY, KINDS[request.param]), "compare")
        assert not set(stages) & GAN_STAGES  # no GAN strategy listed: no latent stage
    assert {"prepare", "augment@oversample", "train_target@val_attention",
            "evaluate@baseline", "compare"} <= set(stages)
    return request.param, root


def test_reports_hold_the_task_metrics(project: tuple[str, Path]) -> None:
    """The kind's metrics (per group or per class), the headline = the seed means, the
    comparison and paired differences."""
    name, root = project
    rep = json.loads((root / "metrics/reports/baseline.json").read_text())
    kind = KINDS[name].get("task", {}).get("kind", "binary")
    assert rep["task"]["kind"] == kind and rep["n_seeds"] == 2 and rep["n_test"] == 240
    if kind == "binary":
        assert set(rep["by_group"]) == {f"skin={g}" for g in range(4)}
        assert rep["kl"]["value"] is None  # the two-group KL; kl_max / kl_mean for K groups
        assert rep["kl_max"]["value"] >= rep["kl_mean"]["value"] >= 0
        assert 0 <= rep["deo"]["value"] <= 1
    else:
        assert set(rep["by_class"]) == {f"skin={c}" for c in range(4)}
        assert 0 <= rep["class_acc_std"]["value"] <= 0.5
        if kind == "multitask":
            assert 0.3 <= rep["accuracy_male"]["value"] <= 1
    headline = json.loads((root / "metrics/eval/baseline.json").read_text())
    assert headline == {k: rep[k]["value"] for k in headline}  # the report's seed means
    assert len(headline) in (4, 6)
    table = (root / "metrics/compare.md").read_text()
    assert "| val_attention | 2 |" in table and "Paired differences against `baseline`" in table
    paired = json.loads((root / "metrics/paired.json").read_text())
    assert "oversample-vs-baseline" in paired


def test_checkpoints_record_their_task(project: tuple[str, Path]) -> None:
    """A checkpoint's outputs match its task's heads."""
    from facebalance.models.classifier import load_checkpoint

    name, root = project
    _, config, meta = load_checkpoint(root / "models/target/oversample/seed0.pt")
    heads = meta["task"]["heads"]
    assert config.num_outputs == sum(h["n_classes"] if h["kind"] == "multiclass" else 1
                                     for h in heads)
    if name == "race_gender":
        assert [(h["column"], h["kind"]) for h in heads] == [("skin", "multiclass"),
                                                             ("male", "binary")]
