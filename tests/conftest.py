"""Tiny fixtures that make every path run in seconds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from facebalance.config import DatasetParams
from facebalance.data.prepare import write_synthfaces

REPO = Path(__file__).resolve().parents[1]


# Under pytest-xdist (make test: one process per core) each process and the stages it
# starts use one thread: two processes of two threads on two cores slowed each other.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
THREADS = 1 if WORKER else 2
if WORKER:
    os.environ["OMP_NUM_THREADS"] = "1"  # the stages' subprocesses (base.threads: 0)


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True, scope="session")
def _stage_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One stage server for this test process (``tests/stageserver/stageserver.py``): the
    stage processes of the tests' DVC pipelines fork from a process that imported torch
    once, instead of importing it each. ``FACEBALANCE_TEST_STAGE_SERVER=0`` turns it off.
    Yields the server's process (None when off).

    Nothing waits for it: a stage that starts before it listens (its first seconds, while
    it imports) runs in its own process, as without a server."""
    if os.environ.get("FACEBALANCE_TEST_STAGE_SERVER") == "0":
        yield None
        return
    from .stageserver.stageserver import hook_env, launch

    address = tmp_path_factory.mktemp("stageserver") / "socket"
    server = launch(address)
    hook = hook_env(address)
    saved = {k: os.environ.get(k) for k in hook}
    os.environ.update(hook)
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stdin.close()  # the server returns when its standard input closes
        server.wait(timeout=30)


@pytest.fixture
def stage_server(_stage_server: object) -> str:
    """The address of this process's stage server once it listens (its tests need it)."""
    import select

    if _stage_server is None:
        pytest.skip("the stage server is off (FACEBALANCE_TEST_STAGE_SERVER=0)")
    if not getattr(_stage_server, "ready", False):  # its one "ready" line, read once
        started = select.select([_stage_server.stdout], [], [], 120)[0]
        if not started or _stage_server.stdout.readline() != b"ready\n":
            pytest.fail(f"the stage server did not start (exit {_stage_server.poll()})")
        _stage_server.ready = True
    return os.environ["FACEBALANCE_STAGE_SERVER"]


@pytest.fixture
def own_stage_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stages in their own processes, not forks of the stage server: for tests of what a
    stage process does with signals and ``kill -9``."""
    monkeypatch.delenv("FACEBALANCE_STAGE_SERVER", raising=False)


@pytest.fixture(autouse=True)
def _same_threads_after_each_test() -> Iterator[None]:
    """A test that changes torch's thread count must not change the numbers of the tests
    after it: in-process stage runs keep the current count (``base.threads: 0``), and a
    float sum split over 1 or 2 threads differs in its last bits (enough, on 2026-12-05,
    to flip a borderline interval in test_gan_budget.py)."""
    yield
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


TINY_DATASET = DatasetParams(n_train=480, n_val=80, n_test=160, rows_per_file=200,
                             row_group_size=50)


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/val/test synthfaces shards at 32 px: 480/80/160 images."""
    out = tmp_path_factory.mktemp("prepared")
    write_synthfaces(TINY_DATASET, out, seed=0, image_size=32, progress=False)
    return out


# The slow tests' shared projects (tests/projects.py says what each holds). Session scope:
# each is built once, by the first test that needs it, and only read afterwards; a test that
# changes a project works on a copy (``binary_copy``).

@pytest.fixture(scope="session")
def binary_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny blond-vs-male pipeline, every stage run by ``dvc repro``, committed."""
    from .projects import build_binary

    return build_binary(tmp_path_factory.mktemp("binary"))


@pytest.fixture
def binary_copy(binary_project: Path, tmp_path: Path) -> Path:
    """A copy of :func:`binary_project` (with its git and DVC cache) a test may change."""
    from .projects import copy_project

    return copy_project(binary_project, tmp_path / "project")


@pytest.fixture(scope="session")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A real-format dataset (a folder of JPEGs and a label CSV, one file missing, one
    corrupt; train skewed like CelebA) through every stage the default strategies and
    gan_complement_real need, in process; (project, stages run)."""
    from .data.realdata import make_folder
    from .projects import BINARY, DEFAULT_STRATEGIES, build_inprocess, merge

    faces = tmp_path_factory.mktemp("faces")
    make_folder(faces, size=64, split_sizes=(600, 120, 240))
    root = tmp_path_factory.mktemp("folder_project")
    changes = merge(BINARY, {
        "dataset": {"name": "folder", "root": str(faces), "on_error": "skip"},
        "strategies": [*DEFAULT_STRATEGIES, "gan_complement_real"]})
    return root, build_inprocess(root, changes, "compare")


@pytest.fixture(scope="session")
def skin4_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The ``skin4_guided`` preset (blond vs 4 skin groups) with val_attention added, tiny,
    in process; (project, stages run)."""
    from .projects import build_inprocess, merge, preset

    changes = merge(preset("skin4_guided"), {
        "dataset": {"n_train": 800, "n_val": 160, "n_test": 240, "rows_per_file": 400,
                    "row_group_size": 100},
        "strategies": ["baseline", "oversample", "val_attention", "guided"],
        "train_target": {"epochs": 1, "width": 8, "seeds": [0, 1]},
        "train_attr": {"epochs": 3, "width": 8},
        "evaluate": {"bootstrap": 40},
        "gan": {"steps": 300, "width": 16},
        "guided": {"n_fit": 600, "batch_size": 64}})
    root = tmp_path_factory.mktemp("skin4_guided")
    return root, build_inprocess(root, changes, "compare")


def with_pickled_entry(pt2: Path, out: Path) -> Path:
    """A copy of a ``torch.export`` archive whose weights config says one entry is pickled
    (what :func:`facebalance.model_files.check_pt2` must refuse)."""
    import zipfile

    with zipfile.ZipFile(pt2) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("_weights_config.json"):
                data = data.replace(b'"use_pickle": false', b'"use_pickle": true', 1)
            dst.writestr(item, data)
    return out


@pytest.hookimpl(optionalhook=True)  # plain pytest without xdist must still run
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: the cores this process may use (its affinity), not the physical cores
    of the host (xdist's default), which a container's CPU limit does not lower."""
    from facebalance.models.dlib_embedder import cpu_workers

    return cpu_workers()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``pytest -n``: every user of a shared project in one process (tests/groups.py)."""
    from .groups import make_scheduler

    return make_scheduler(config, log)
