"""Teams: a DVC remote round trip, a shared cache directory and experiments shared through
a git remote, on a tiny project (prepare -> baseline's augment -> train_target ->
evaluate), as a teammate runs them."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import pytest
import yaml

from .dvcproject import GIT, commit, dvc, new_project, ran

pytestmark = pytest.mark.slow

TINY = {
    "dataset": {"n_train": 160, "n_val": 48, "n_test": 96, "rows_per_file": 200,
                "row_group_size": 50},
    "strategies": ["baseline"],
    "train_target": {"epochs": 1, "width": 16, "seeds": [0]},
    "evaluate": {"bootstrap": 20},
    "compare": {"references": ["baseline"]},
}
TARGET = "evaluate@baseline"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def _outputs(root: Path) -> dict[str, int]:
    """Size of every file under data/ and models/ (what a teammate must get)."""
    return {str(p.relative_to(root)): p.stat().st_size
            for d in ("data", "models") for p in sorted((root / d).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A project that ran and pushed: its DVC remote (a local directory) and a bare git
    remote holding the commit."""
    base = tmp_path_factory.mktemp("team")
    origin, storage = base / "origin.git", base / "storage"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    project = base / "alice"
    project.mkdir()
    new_project(project, TINY)
    dvc(project, "remote", "add", "-d", "shared", str(storage))
    dvc(project, "repro", TARGET)
    commit(project, "tiny run")
    dvc(project, "push")
    _git(project, "remote", "add", "origin", str(origin))
    _git(project, "push", "-q", "origin", "HEAD:main")
    return {"base": base, "origin": origin, "storage": storage, "project": project}


def test_a_clone_pulls_every_output_and_reruns_nothing(team: dict[str, Path]) -> None:
    clone = team["base"] / "bob"
    _git(team["base"], "clone", "-q", "-b", "main", str(team["origin"]), str(clone))
    assert not (clone / "data" / "prepared").exists()
    # The documented command: stages never run (no lock entry) have nothing to pull.
    dvc(clone, "pull", "--allow-missing")
    assert _outputs(clone) == _outputs(team["project"])
    assert "up to date" in dvc(clone, "status", TARGET).stdout
    proc = dvc(clone, "repro", TARGET)
    assert ran(proc.stdout) == set(), proc.stdout


def test_a_shared_cache_checks_out_without_copying(team: dict[str, Path]) -> None:
    """Two clones on one machine (or a shared disk) use one cache: outputs are links to
    it, never recomputed and never copied."""
    shared = team["base"] / "cache"
    for name in ("carol", "dave"):
        clone = team["base"] / name
        _git(team["base"], "clone", "-q", "-b", "main", str(team["origin"]), str(clone))
        dvc(clone, "cache", "dir", str(shared))
        dvc(clone, "config", "cache.shared", "group")
        dvc(clone, "config", "cache.type", "symlink")
    dvc(team["base"] / "carol", "pull", "--with-deps", TARGET)  # fills the shared cache
    dave = team["base"] / "dave"
    dvc(dave, "checkout", "--with-deps", TARGET)  # nothing fetched: the cache holds it
    assert _outputs(dave) == _outputs(team["project"])
    model = dave / "models" / "target" / "baseline" / "seed0.pt"
    assert model.is_symlink() and Path(model.resolve()).is_relative_to(shared)
    assert "up to date" in dvc(dave, "status", TARGET).stdout
    assert ran(dvc(dave, "repro", TARGET).stdout) == set()


def test_an_experiment_pushed_by_one_is_shown_to_another(team: dict[str, Path]) -> None:
    project = team["project"]
    dvc(project, "exp", "run", "-n", "wider", "-S", "train_target.width=24", TARGET)
    dvc(project, "exp", "push", "origin", "wider")
    erin = team["base"] / "erin"
    _git(team["base"], "clone", "-q", "-b", "main", str(team["origin"]), str(erin))
    dvc(erin, "exp", "pull", "origin", "wider")
    table = dvc(erin, "exp", "show", "--csv").stdout
    rows = {r["Experiment"]: r for r in csv.DictReader(io.StringIO(table))}
    assert "wider" in rows, table
    deo = "deo"  # DVC shortens a column name that is unambiguous
    assert rows["wider"]["train_target.width"] == "24"
    assert 0.0 <= float(rows["wider"][deo]) <= 1.0
    # The teammate applies it and gets its outputs from the shared remote.
    # apply checks out every stage's outputs and names those never run as missing: the
    # params and lock are applied all the same, then the outputs come from the remote.
    dvc(erin, "exp", "apply", "wider", check=False)
    assert yaml.safe_load((erin / "params.yaml").read_text())["train_target"]["width"] == 24
    dvc(erin, "pull", "--allow-missing")
    assert "up to date" in dvc(erin, "status", TARGET).stdout


def test_a_missing_remote_fails_in_one_line(team: dict[str, Path]) -> None:
    clone = team["base"] / "frank"
    _git(team["base"], "clone", "-q", "-b", "main", str(team["origin"]), str(clone))
    dvc(clone, "remote", "modify", "shared", "url", str(team["base"] / "nowhere"))
    proc = dvc(clone, "pull", "--with-deps", TARGET, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
