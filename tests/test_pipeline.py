"""End to end: the DVC pipeline with tiny params in a temporary copy of the repository.

``binary_project`` (conftest.py) is every stage of dvc.yaml run once by ``dvc repro``; the
tests that change params work on a copy of it. ``folder_run`` is a converted folder
dataset through every stage the default strategies need (in process: what DVC does with
the stages is tested here on ``binary_project``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from facebalance.data.shards import read_columns

from .dvcproject import dvc, ran, set_params
from .projects import BINARY_STRATEGIES, DEFAULT_STRATEGIES, GAN_STAGES

pytestmark = pytest.mark.slow

HEADLINE = ("ap", "accuracy", "deo", "ba", "kl", "group_acc_std")


def _report(root: Path, strategy: str) -> dict:
    return json.loads((root / f"metrics/reports/{strategy}.json").read_text())


def test_outputs_and_metrics(binary_project: Path) -> None:
    """Every strategy's report, the comparison table and figure, the paired differences,
    the prepared skew; ``dvc metrics show`` lists the headline numbers only."""
    project = binary_project
    for strategy in BINARY_STRATEGIES:
        rep = _report(project, strategy)
        assert rep["strategy"] == strategy and rep["n_seeds"] == 2 and rep["n_test"] == 240
        for key in HEADLINE:
            assert {"value", "std", "ci95"} <= set(rep[key])
        assert set(rep["by_group"]) == {"male=0", "male=1"}
        assert (project / f"models/target/{strategy}/seed1.pt").is_file()
    table = (project / "metrics/compare.md").read_text()
    assert all(f"| {s} | 2 |" in table for s in BINARY_STRATEGIES)
    assert (project / "metrics/compare.png").stat().st_size > 1000
    assert "Paired differences against `gan_gz_only`" in table
    paired = json.loads((project / "metrics/paired.json").read_text())
    assert {"gan_complement-vs-baseline", "gan_complement-vs-gan_gz_only"} <= set(paired)
    assert "baseline-vs-baseline" not in paired
    deo = paired["gan_complement-vs-baseline"]["deo"]
    assert deo["ci95"]["lo"] <= deo["ci95"]["hi"] and 0 <= deo["p_better"] <= 1
    summary = json.loads((project / "metrics/prepare.json").read_text())
    assert summary["train"]["cells"]["male=1,blond=1"] == 5  # 600 * 0.42 * 0.02 = 5.04
    # DVC tracks the headline numbers only: one line per metric and strategy.
    shown = json.loads(dvc(project, "metrics", "show", "--json").stdout)
    files = shown[""]["data"]
    rep = _report(project, "gan_complement")
    assert files["metrics/eval/gan_complement.json"]["data"] == {
        k: pytest.approx(rep[k]["value"]) for k in HEADLINE}
    assert not any(f.endswith(("paired.json", "prepare.json")) for f in files)


def test_second_repro_is_a_fast_noop(binary_project: Path) -> None:
    """After the full run, ``dvc status`` is clean and ``dvc repro`` runs nothing, fast."""
    assert "up to date" in dvc(binary_project, "status").stdout
    start = time.perf_counter()
    proc = dvc(binary_project, "repro")
    assert not ran(proc.stdout)
    assert time.perf_counter() - start < 10


def test_each_param_reruns_only_what_it_reaches(binary_copy: Path) -> None:
    """Dropping strategies reruns compare only; then an evaluate param reruns evaluation and
    compare; then a train_target param training, evaluation and compare: never a GAN,
    inversion, interpolation, guided, augment or prepare stage (all in this project).
    ``dvc metrics diff`` shows the headline keys. (One strategy from the first step on: a
    param reruns each ``foreach`` item alike.)"""
    project = binary_copy
    set_params(project / "params.yaml", {"strategies": ["baseline"]})
    assert ran(dvc(project, "repro").stdout) == {"compare"}
    set_params(project / "params.yaml", {"evaluate": {"bootstrap": 60}})
    assert ran(dvc(project, "repro").stdout) == {"evaluate@baseline", "compare"}
    set_params(project / "params.yaml", {"train_target": {"lr": 0.002}})
    status = json.loads(dvc(project, "status", "--json").stdout)
    assert set(status) == {"train_target@baseline"}
    proc = dvc(project, "repro")
    assert ran(proc.stdout) == {"train_target@baseline", "evaluate@baseline", "compare"}
    diff = json.loads(dvc(project, "metrics", "diff", "--json").stdout)
    # One line per headline metric of each strategy (no intervals, seeds or groups).
    assert "deo" in diff["metrics/eval/baseline.json"]
    assert set(diff["metrics/eval/baseline.json"]) <= set(HEADLINE)


def test_gan_outputs(binary_project: Path) -> None:
    """The z/z' pairs, boundaries, figures and the synthetic budget of gan_complement."""
    project = binary_project
    pairs = json.loads((project / "metrics/complement.json").read_text())
    assert pairs["n_pairs"] == 400 and 0 <= pairs["flip_and_keep"] <= 1
    assert pairs["latent_flip_rate"] > 0.99  # the paper formula mirrors the boundary
    bounds = json.loads((project / "metrics/boundaries.json").read_text())
    assert set(bounds) >= {"target", "protected", "cos_target_protected"}
    for png in ("metrics/gan/samples.png", "metrics/complement_pairs.png"):
        assert (project / png).stat().st_size > 500
    # The budget: synthetic weight = augment.synthetic_share (0.5) of the 600 real images'
    # at weight 1: 150 of the 400 pairs, 300 images.
    index = pd.read_parquet(project / "data/trainsets/gan_complement.parquet")
    assert (index["source"] == "generated").sum() == 300
    assert index.loc[index["source"] == "generated", "weight"].eq(1.0).all()
    budget = json.loads((project / "metrics/augment/gan_complement.json").read_text())
    assert budget["pairs_available"] == 400 and budget["pairs_used"] == 150
    assert budget["synthetic_share"] == 0.5


def test_pipeline_runs_unchanged_on_a_converted_folder_dataset(
        folder_run: tuple[Path, list[str]]) -> None:
    """A real-format dataset (folder of JPEGs + CSV) through the GAN stages and every
    default strategy: the converted shards serve every stage as synthfaces' do."""
    root, stages = folder_run
    assert set(stages) >= {"prepare", "train_attr@protected", *GAN_STAGES, "compare",
                           *(f"evaluate@{s}" for s in DEFAULT_STRATEGIES)}
    summary = json.loads((root / "metrics/prepare.json").read_text())
    assert summary["errors"] == {"missing": 1, "corrupt": 1, "not_a_file": 0,
                                 "outside_root": 0, "too_large": 0, "no_face": 0}
    assert [summary[s]["rows"] for s in ("train", "val", "test")] == [598, 120, 240]
    assert summary["train"]["p_target_given_protected"]["male=1"] < 0.05  # the CSV's skew
    train = read_columns(root / "data/prepared/train", ["blond", "male"])
    cells = train.groupby(["male", "blond"]).size()
    assert summary["train"]["cells"]["male=1,blond=1"] == cells[(1, 1)]
    table = (root / "metrics/compare.md").read_text()
    for strategy in DEFAULT_STRATEGIES:
        rep = _report(root, strategy)
        assert rep["strategy"] == strategy and rep["n_seeds"] == 2 and rep["n_test"] == 240
        assert set(rep["by_group"]) == {"male=0", "male=1"}
        assert 0 <= rep["deo"]["value"] <= 1
        for key in HEADLINE:
            assert {"value", "std", "ci95"} <= set(rep[key])
        assert (root / f"models/target/{strategy}/seed1.pt").is_file()
        assert f"| {strategy} | 2 |" in table
    paired = json.loads((root / "metrics/paired.json").read_text())
    assert {"reweight-vs-baseline", "gan_complement-vs-gan_gz_only"} <= set(paired)
    assert "baseline-vs-baseline" not in paired
    deo = paired["reweight-vs-baseline"]["deo"]
    assert deo["ci95"]["lo"] <= deo["ci95"]["hi"] and 0 <= deo["p_better"] <= 1
