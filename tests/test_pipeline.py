"""End to end: the DVC pipeline with tiny params in a temporary copy of the repository."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from .data.realdata import make_folder
from .dvcproject import dvc as _dvc
from .dvcproject import new_project as _new_project
from .dvcproject import ran as _ran
from .dvcproject import set_params as _set_params

pytestmark = pytest.mark.slow

TINY = {
    "dataset": {"n_train": 600, "n_val": 120, "n_test": 240, "rows_per_file": 400,
                "row_group_size": 100},
    # Plain labellers as before the reweighted default: this GAN is tuned for them (the
    # reweighted ones run end to end in test_gan_budget.py).
    "train_attr": {"epochs": 6, "width": 8, "batch_size": 32, "lr": 0.01, "balance": "none"},
    "train_target": {"epochs": 1, "width": 8, "seeds": [0, 1]},
    "evaluate": {"bootstrap": 50},
    # Enough GAN steps that generated images get both labels from the tiny classifiers.
    # The plain stream: at this size the cell-balanced one (gan.balance auto) drew faces the
    # tiny labellers all put in one class, which boundaries refuses; the default stream runs
    # end to end in test_gan_budget.py.
    "gan": {"steps": 300, "width": 8, "latent_dim": 16, "batch_size": 32, "balance": "none"},
    "sample": {"n": 900, "batch_size": 256},
    "boundaries": {"n_fit": 400, "n_val": 100},
    "complement": {"n_pairs": 400, "batch_size": 256},
}
STRATEGIES = ("baseline", "reweight", "oversample", "mixup", "cutmix", "val_attention",
              "gan_complement", "gan_gz_only")
GAN_STAGES = {"train_gan", "sample", "score", "boundaries", "complement"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    _new_project(root, TINY)
    proc = _dvc(root, "repro")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tiny run"], cwd=root, check=True)
    assert _ran(proc.stdout) >= {"prepare", "train_attr@target", "train_attr@protected",
                                 "augment@baseline", "train_target@reweight",
                                 "evaluate@oversample", "compare", *GAN_STAGES,
                                 "augment_gan@gan_complement", "evaluate@gan_gz_only"}
    return root


def test_outputs_and_metrics(project: Path) -> None:
    for strategy in STRATEGIES:
        rep = json.loads((project / f"metrics/reports/{strategy}.json").read_text())
        assert rep["strategy"] == strategy and rep["n_seeds"] == 2 and rep["n_test"] == 240
        for key in ("ap", "accuracy", "deo", "ba", "kl", "group_acc_std"):
            assert {"value", "std", "ci95"} <= set(rep[key])
        assert set(rep["by_group"]) == {"male=0", "male=1"}
        assert (project / f"models/target/{strategy}/seed1.pt").is_file()
    table = (project / "metrics/compare.md").read_text()
    assert all(f"| {s} | 2 |" in table for s in STRATEGIES)
    assert (project / "metrics/compare.png").stat().st_size > 1000
    assert "Paired differences against `gan_gz_only`" in table
    paired = json.loads((project / "metrics/paired.json").read_text())
    assert {"reweight-vs-baseline", "gan_complement-vs-gan_gz_only"} <= set(paired)
    assert "baseline-vs-baseline" not in paired
    deo = paired["reweight-vs-baseline"]["deo"]
    assert deo["ci95"]["lo"] <= deo["ci95"]["hi"] and 0 <= deo["p_better"] <= 1
    summary = json.loads((project / "metrics/prepare.json").read_text())
    assert summary["train"]["cells"]["male=1,blond=1"] == 5  # 600 * 0.42 * 0.02 = 5.04
    # DVC tracks the headline numbers only: one line per metric and strategy.
    shown = json.loads(_dvc(project, "metrics", "show", "--json").stdout)
    files = shown[""]["data"]
    assert files["metrics/eval/reweight.json"]["data"] == {
        k: pytest.approx(rep_value(project, "reweight", k))
        for k in ("ap", "accuracy", "deo", "ba", "kl", "group_acc_std")}
    assert not any(f.endswith(("paired.json", "prepare.json")) for f in files)


def rep_value(project: Path, strategy: str, key: str) -> float:
    """The seed mean of ``key`` in a strategy's full report."""
    return json.loads((project / f"metrics/reports/{strategy}.json").read_text())[key]["value"]


def test_second_repro_is_a_fast_noop(project: Path) -> None:
    assert "up to date" in _dvc(project, "status").stdout
    start = time.perf_counter()
    proc = _dvc(project, "repro")
    assert not _ran(proc.stdout)
    assert time.perf_counter() - start < 10


def test_train_target_param_reruns_only_downstream(project: Path) -> None:
    _set_params(project / "params.yaml", {"train_target": {"lr": 0.002}})
    status = json.loads(_dvc(project, "status", "--json").stdout)
    assert set(status) == {f"train_target@{s}" for s in STRATEGIES}
    proc = _dvc(project, "repro")
    expected = {f"{stage}@{s}" for stage in ("train_target", "evaluate")
                for s in STRATEGIES} | {"compare"}
    assert _ran(proc.stdout) == expected  # no GAN stage, no augment, no prepare
    diff = json.loads(_dvc(project, "metrics", "diff", "--json").stdout)
    # One line per headline metric of each strategy (no intervals, seeds or groups).
    assert "deo" in diff["metrics/eval/baseline.json"]
    assert set(diff["metrics/eval/baseline.json"]) <= {"ap", "accuracy", "deo", "ba", "kl",
                                                       "group_acc_std"}


def test_evaluate_param_reruns_only_evaluate_and_compare(project: Path) -> None:
    _set_params(project / "params.yaml", {"evaluate": {"bootstrap": 60}})
    proc = _dvc(project, "repro")
    assert _ran(proc.stdout) == {f"evaluate@{s}" for s in STRATEGIES} | {"compare"}


def test_gan_outputs(project: Path) -> None:
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


def test_bad_params_fail_before_work_with_the_key(project: Path) -> None:
    params = project / "params.yaml"
    good = params.read_text()
    try:
        _set_params(params, {"dataset": {"n_trian": 10}})
        proc = _dvc(project, "repro", check=False)
        assert proc.returncode != 0
        assert "unknown key 'dataset.n_trian' (did you mean 'n_train'?)" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        params.write_text(good)
    _dvc(project, "checkout")
    assert "up to date" in _dvc(project, "status").stdout


def test_pipeline_runs_unchanged_on_a_converted_folder_dataset(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A real-format dataset (folder of JPEGs + CSV) through every stage, tiny params."""
    faces = tmp_path_factory.mktemp("faces")
    make_folder(faces, size=64, split_sizes=(600, 120, 240))  # one missing, one corrupt
    root = tmp_path_factory.mktemp("folder_project")
    _new_project(root, {**TINY, "dataset": {"rows_per_file": 400, "row_group_size": 100}})
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tiny params"], cwd=root, check=True)
    # The README's command for a folder dataset.
    proc = _dvc(root, "exp", "run", "-S", "dataset.name=folder", "-S", f"dataset.root={faces}",
                "-S", "dataset.on_error=skip")
    assert _ran(proc.stdout) >= {"prepare", "train_attr@protected", *GAN_STAGES, "compare",
                                 *(f"evaluate@{s}" for s in STRATEGIES)}
    summary = json.loads((root / "metrics/prepare.json").read_text())
    assert summary["errors"] == {"missing": 1, "corrupt": 1, "not_a_file": 0,
                                 "outside_root": 0, "too_large": 0, "no_face": 0}
    assert [summary[s]["rows"] for s in ("train", "val", "test")] == [598, 120, 240]
    assert summary["train"]["p_target_given_protected"]["male=1"] < 0.05  # the CSV's skew
    for strategy in STRATEGIES:
        rep = json.loads((root / f"metrics/reports/{strategy}.json").read_text())
        assert rep["n_test"] == 240 and set(rep["by_group"]) == {"male=0", "male=1"}
        assert 0 <= rep["deo"]["value"] <= 1
    assert all(f"| {s} | 2 |" in (root / "metrics/compare.md").read_text() for s in STRATEGIES)
    assert "up to date" in _dvc(root, "status").stdout
