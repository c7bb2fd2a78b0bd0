"""Run the repository's pipeline stages in this process: DVC plans, no process per stage.

DVC decides which stages a target needs and in what order (``dvc repro --dry --force`` through
its Python API, in the project's directory); each stage's ``cmd`` from ``dvc.yaml`` then runs
its typer app here, with the same arguments and working directory as under ``dvc repro``.
That skips the ~3.5 s of interpreter start-up and imports each stage pays as a process, so
tests of what the stages compute (task kinds, strategies, data formats) stay cheap. DVC's own
behaviour (caching, reruns, failures, experiments) is tested through the ``dvc`` command in
``test_pipeline.py``, ``test_failures.py`` and the experiment tests.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import shlex
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import typer

from .conftest import REPO
from .dvcproject import set_params


@contextlib.contextmanager
def _in(root: Path) -> Iterator[None]:
    """Work in ``root`` with the stage scripts' folder importable (``import _checkout``)."""
    cwd = Path.cwd()
    stages = str(REPO / "stages")
    os.chdir(root)
    sys.path.insert(0, stages)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path.remove(stages)


def new_inprocess_project(root: Path, changes: dict) -> None:
    """The repository's ``dvc.yaml`` and ``params.yaml`` (with ``changes``) in ``root``, a DVC
    project without git; the stage scripts run from the repository."""
    from dvc.repo import Repo

    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    set_params(root / "params.yaml", changes)
    Repo.init(str(root), no_scm=True).close()


def plan(root: Path, *targets: str) -> list[tuple[str, str]]:
    """(stage name, command) of every stage ``targets`` need (all stages without targets), in
    the order ``dvc repro --force`` runs them."""
    from dvc.repo import Repo

    with _in(root), Repo(str(root)) as repo, warnings.catch_warnings():
        # DVC's own deprecation warnings (pygtrie), hundreds per plan.
        warnings.simplefilter("ignore", DeprecationWarning)
        stages = repo.reproduce(list(targets) or None, dry=True, force=True)
        return [(stage.addressing, stage.cmd) for stage in stages]


def run_stage(root: Path, cmd: str) -> None:
    """Run one stage command (``python stages/<name>.py ...``) in this process, in ``root``.

    A user error raises (with its traceback) instead of printing one line and exiting: the
    one-line errors of the stages as processes are tested in ``test_failures.py``.
    """
    argv = shlex.split(cmd)
    if argv[0] != "python" or not argv[1].startswith("stages/"):
        raise ValueError(f"not a stage command: {cmd}")
    with _in(root):
        app = runpy.run_path(str(REPO / argv[1]), run_name="stage")["app"]
        typer.main.get_command(app).main(args=argv[2:], prog_name=argv[1],
                                         standalone_mode=False)


def run_pipeline(root: Path, *targets: str) -> list[str]:
    """Run every stage ``targets`` need, in order, in this process; the stage names run."""
    steps = plan(root, *targets)
    for _, cmd in steps:
        run_stage(root, cmd)
    return [name for name, _ in steps]
