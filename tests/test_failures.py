"""A stage that fails loses nothing: through ``dvc repro`` / ``dvc exp run`` as a user runs it.

The tests break one thing (a param, the device, a shard, a checkpoint) in one copy of the
session's finished tiny pipeline (``binary_project``), check the one-line message and exit
code, and that every output file is byte-identical to before (DVC does not delete
``persist`` outs; stages replace them atomically).
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO
from .data.realdata import make_folder
from .dvcproject import dvc, set_params
from .projects import copy_project

pytestmark = pytest.mark.slow

TARGETS = ("train_attr@target", "evaluate@baseline")


def _snapshot(root: Path) -> dict[str, str]:
    """md5, inode and mtime of every output file (data, models, metrics) and params.yaml:
    a file rewritten with the same bytes counts as changed too."""
    files = [p for d in ("data", "models", "metrics") for p in (root / d).rglob("*")
             if p.is_file()]
    return {str(p.relative_to(root)):
            f"{hashlib.md5(p.read_bytes()).hexdigest()} {p.stat().st_ino} {p.stat().st_mtime_ns}"
            for p in [*files, root / "params.yaml"]}


def _md5s(snapshot: dict[str, str]) -> dict[str, str]:
    return {k: v.split()[0] for k, v in snapshot.items()}


def _changed(before: dict[str, str], root: Path) -> set[str]:
    """Files added, removed or modified since ``before``."""
    after = _snapshot(root)
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def _one_error_line(stderr: str) -> str:
    """The stage's own error line; there must be exactly one and no traceback."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def project(binary_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the finished tiny pipeline for this module's tests (each restores it)."""
    return copy_project(binary_project, tmp_path_factory.mktemp("failures") / "project")


@pytest.fixture
def state(project: Path) -> Iterator[dict[str, str]]:
    """The outputs before a test; after it, the committed params and a clean checkout."""
    before = _snapshot(project)
    yield before
    subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=project, check=True)
    dvc(project, "checkout", "-f")
    assert _md5s(_snapshot(project)) == _md5s(before)


def test_bad_param_in_the_workspace_keeps_every_output(project: Path,
                                                       state: dict[str, str]) -> None:
    """An invalid value: one error line naming key and type; no output touched."""
    set_params(project / "params.yaml", {"dataset": {"n_train": "abc"}})
    proc = dvc(project, "repro", *TARGETS, check=False)
    assert proc.returncode != 0
    assert _one_error_line(proc.stderr) == (
        "error: params.yaml: params: dataset.n_train = 'abc' is invalid; expected an integer")
    assert _changed(state, project) == {"params.yaml"}


def test_a_non_finite_float_stops_training_and_keeps_the_models(
        project: Path, state: dict[str, str]) -> None:
    """A NaN learning rate is refused before training; the models stay."""
    set_params(project / "params.yaml", {"train_attr": {"lr": math.nan}})
    assert "lr: .nan" in (project / "params.yaml").read_text()
    proc = dvc(project, "repro", *TARGETS, check=False)
    assert proc.returncode != 0
    assert "train_attr.lr = nan is invalid; expected a finite number" in _one_error_line(
        proc.stderr)
    assert _changed(state, project) == {"params.yaml"}


def test_exp_run_temp_keeps_params_and_outputs(project: Path, state: dict[str, str]) -> None:
    """``dvc exp run -S`` writes the value into params.yaml before any stage runs (and keeps
    it after a failure: DVC's behaviour); ``--temp`` runs elsewhere and keeps both."""
    proc = dvc(project, "exp", "run", "--temp", "-S", "dataset.n_train=abc", *TARGETS,
               check=False)
    assert proc.returncode != 0
    assert "dataset.n_train = 'abc' is invalid; expected an integer" in proc.stdout + proc.stderr
    # DVC rewrites params.yaml with the same text (new mtime); the outputs are untouched.
    assert _changed(state, project) <= {"params.yaml"}
    assert _md5s(_snapshot(project)) == _md5s(state)


def test_a_missing_device_keeps_every_output(project: Path, state: dict[str, str]) -> None:
    """A device this machine lacks: one error line; no output touched."""
    import torch

    device = "cuda:7" if torch.backends.mps.is_available() else "mps"
    set_params(project / "params.yaml", {"base": {"device": device}})
    proc = dvc(project, "repro", *TARGETS, check=False)
    assert proc.returncode != 0
    assert f"base.device = '{device}' but" in _one_error_line(proc.stderr)
    assert _changed(state, project) == {"params.yaml"}


def test_a_truncated_shard_is_named_and_the_model_kept(project: Path,
                                                        state: dict[str, str]) -> None:
    """A truncated shard read after training: one line naming it; the model stays."""
    # The test split: train_attr reads it after training, when a careless stage would
    # already have replaced its model.
    shard = project / "data" / "prepared" / "test" / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:300])
    proc = dvc(project, "repro", "-s", "train_attr@target", check=False)
    assert proc.returncode != 0
    line = _one_error_line(proc.stderr)
    assert line.startswith("error: data/prepared/test/part-00000.parquet is not a readable "
                           "Parquet file (")
    # The model and its metrics survived, untouched.
    assert _changed(state, project) == {"data/prepared/test/part-00000.parquet"}


def test_an_unknown_key_fails_before_work_with_the_key(project: Path,
                                                    state: dict[str, str]) -> None:
    """A misspelt key stops the first stage with the key and the nearest valid one."""
    set_params(project / "params.yaml", {"dataset": {"n_trian": 10}})
    proc = dvc(project, "repro", check=False)
    assert proc.returncode != 0
    assert "unknown key 'dataset.n_trian' (did you mean 'n_train'?)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _changed(state, project) == {"params.yaml"}


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_holding_code_is_refused_and_outputs_kept(
        project: Path, state: dict[str, str], tmp_path: Path) -> None:
    """A pickled-code checkpoint is refused unloaded (the code never runs); outputs stay."""
    marker = tmp_path / "code-ran"
    ckpt = project / "models" / "target" / "baseline" / "seed0.pt"
    ckpt.write_bytes(pickle.dumps(_RunsCode(str(marker))))
    proc = dvc(project, "repro", "-s", "evaluate@baseline", check=False)
    assert proc.returncode != 0
    assert _one_error_line(proc.stderr) == (
        "error: checkpoint models/target/baseline/seed0.pt is not a facebalance checkpoint: "
        "it holds pickled Python objects that a weights-only load refuses, and it must not be "
        "loaded (unpickling runs code); rebuild it with the stage that writes it")
    assert not marker.exists()
    # Metrics and scores survived.
    assert _changed(state, project) == {"models/target/baseline/seed0.pt"}


@pytest.mark.usefixtures("own_stage_processes")
def test_kill_9_during_prepare_leaves_nothing_behind(tmp_path: Path) -> None:
    """The killed run's temporary directory is removed by the next run of the stage."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text("dataset: {n_train: 20000}\n")
    cmd = [sys.executable, str(REPO / "stages" / "prepare.py"), "--out", "data/prepared",
           "--summary", "prepare.json"]
    proc = subprocess.Popen(cmd, cwd=work, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    temps: list[Path] = []
    while time.monotonic() < deadline and not any(t.rglob("*.parquet") for t in temps):
        time.sleep(0.2)
        temps = list((work / "data").glob(".prepared.tmp-*")) if (work / "data").is_dir() else []
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert temps and all(t.exists() for t in temps)  # what kill -9 leaves
    (work / "params.yaml").write_text(
        "dataset: {n_train: 64, n_val: 16, n_test: 16, row_group_size: 16}\n")
    subprocess.run(cmd, cwd=work, check=True, capture_output=True)
    assert sorted(p.name for p in (work / "data").iterdir()) == ["prepared"]


def test_a_label_row_outside_the_root_stops_prepare_in_one_line(tmp_path: Path) -> None:
    """A CSV path escaping the image folder stops prepare in one line, unread."""
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(b"private")
    faces = tmp_path / "faces"
    make_folder(faces, n=24, broken=False)
    frame = pd.read_csv(faces / "labels.csv")
    frame.loc[3, "file"] = "../outside/secret.png"  # CSV line 5
    frame.to_csv(faces / "labels.csv", index=False)
    (tmp_path / "params.yaml").write_text(
        f"dataset: {{name: folder, root: {faces}, workers: 1}}\n")
    atime = secret.stat().st_atime_ns
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "prepare.py"), "--out",
                           "data/prepared", "--summary", "prepare.json"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert _one_error_line(proc.stderr) == (
        f"error: dataset: {faces / 'labels.csv'} line 5: image path '../outside/secret.png' "
        f"lies outside the image folder {faces}; paths must be relative to it and stay inside")
    assert not (tmp_path / "data" / "prepared").exists()
    assert secret.stat().st_atime_ns == atime
