"""Experiments as data: a file from an experiment's git ref, and the side-by-side table."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from facebalance.choices import DEFAULT_COMPARE
from facebalance.errors import FacebalanceError
from facebalance.experiments import experiment_file, exps_csv, exps_table, flat_keys

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def _commit(root: Path, text: str, date: str) -> str:
    """Commit ``metrics/paired.json`` holding ``text`` at a committer date; its hash."""
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics" / "paired.json").write_text(text)
    env = {**os.environ, "GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date}
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", text], cwd=root, check=True, env=env)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_experiment_file_reads_the_newest_experiment_of_a_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    old = _commit(tmp_path, "old", "2026-01-01T00:00:00")
    new = _commit(tmp_path, "new", "2026-02-01T00:00:00")
    # The same name queued from two baselines (DVC: refs/exps/<baseline[:2]>/<rest>/<name>).
    for ref, rev in (("refs/exps/aa/bbbb/share-0.5", old), ("refs/exps/cc/dddd/share-0.5", new),
                     ("refs/exps/aa/bbbb/other", old)):
        subprocess.run(["git", "update-ref", ref, rev], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    assert experiment_file("share-0.5", "metrics/paired.json") == "new"
    assert experiment_file("other", "metrics/paired.json") == "old"
    with pytest.raises(FacebalanceError, match=r"^no DVC experiment named 'share-1' "
                                               r"\(dvc exp show\)$"):
        experiment_file("share-1", "metrics/paired.json")
    with pytest.raises(FacebalanceError, match=r"^experiment 'other' has no metrics/x\.json$"):
        experiment_file("other", "metrics/x.json")


def test_flat_keys_are_dvc_param_names() -> None:
    data = {"base": {"seed": 0, "image_size": 32}, "strategies": ["baseline"],
            "gan": {"train": {"steps": 10}}}
    assert flat_keys(data) == {"base.seed", "base.image_size", "strategies",
                               "gan.train.steps"}


def test_exps_table_keeps_headlines_and_changed_params_only() -> None:
    base = {"Experiment": "", "rev": "workspace", "Created": "", "base.seed": "0",
            "train_target.lr": "0.001", "metrics/eval/baseline.json:ap": "0.95612",
            "metrics/eval/baseline.json:deo": "0.146", "metrics/eval/baseline.json:kl": "0.2",
            "metrics/verify.json:head.auc": "0.92", "metrics/verify.json:head.eer": "0.16",
            "lib/facebalance/task.py": "abc123", "target.accuracy": "0.9"}
    other = {**base, "Experiment": "lr2", "rev": "1a2b", "train_target.lr": "0.002",
             "metrics/eval/baseline.json:deo": "0.1", "lib/facebalance/task.py": "def456"}
    table = exps_table([base, other], params={"base.seed", "train_target.lr"})
    # baseline's file lacks some binary metrics, so no task kind's pair is complete: the
    # metrics asked for are shown.
    table = exps_table([base, other], params={"base.seed", "train_target.lr"},
                       metrics=("ap", "deo"))
    assert table == [["", "workspace", "lr2"],
                     ["baseline ap", "0.956", "0.956"],
                     ["baseline deo", "0.146", "0.100"],
                     ["verify head.auc", "0.920", "0.920"],
                     ["train_target.lr", "0.001", "0.002"]]
    # One strategy: DVC names its columns by the bare metric.
    single = [{"Experiment": "", "rev": "workspace", "deo": "0.1", "ap": "0.9", "kl": "0.2"}]
    assert exps_table(single, params=set(), metrics=("deo", "ap")) == [
        ["", "workspace"], ["deo", "0.100"], ["ap", "0.900"]]


def test_exps_table_shows_each_task_kinds_pair_by_default() -> None:
    binary = dict.fromkeys(DEFAULT_COMPARE["binary"], "0.5")
    regression = dict.fromkeys(DEFAULT_COMPARE["regression"], "4.0")
    # A binary workspace and an age experiment beside it: DVC's columns are the union.
    row = {"Experiment": "", "rev": "workspace", "task.kind": "binary"}
    row |= {f"metrics/eval/baseline.json:{m}": v for m, v in (binary | regression).items()}
    age = {**row, "Experiment": "age", "task.kind": "regression"}
    labels = [r[0] for r in exps_table([row, age], params={"task.kind"})[1:]]
    assert labels == ["baseline ap", "baseline deo", "baseline mae",
                      "baseline worst_group_mae", "task.kind"]
    # One binary strategy: bare names.
    single = {"Experiment": "", "rev": "workspace", **binary}
    assert [r[0] for r in exps_table([single], params=set())[1:]] == ["ap", "deo"]


def test_exps_csv_is_dvc_csv_cut_to_the_table_columns() -> None:
    base = {"Experiment": "", "rev": "workspace", "typ": "baseline", "Created": "",
            "parent": "", "base.seed": "0", "train_target.lr": "0.001",
            "metrics/eval/baseline.json:ap": "0.95612", "metrics/eval/baseline.json:kl": "0.2",
            "metrics/verify.json:cosine.auc": "0.8", "lib/facebalance/task.py": "abc123"}
    other = {**base, "Experiment": "lr2", "rev": "1a2b", "typ": "branch_base",
             "train_target.lr": "0.002", "lib/facebalance/task.py": "def456"}
    assert exps_csv([base, other], params={"base.seed", "train_target.lr"}, metrics=("ap",)) == [
        ["Experiment", "rev", "typ", "Created", "parent", "metrics/eval/baseline.json:ap",
         "metrics/verify.json:cosine.auc", "train_target.lr"],
        ["", "workspace", "baseline", "", "", "0.95612", "0.8", "0.001"],
        ["lr2", "1a2b", "branch_base", "", "", "0.95612", "0.8", "0.002"]]
    assert exps_csv([], params=set()) == []
