"""make test's process split (tests/groups.py) against the fixtures pytest resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO
from .groups import HEAVY, SHARED, unit_of


def _collected(session: pytest.Session) -> list[tuple[str, str]]:
    """(node id, its shared fixtures) of every test of the suite, as pytest resolves them:
    this session's own items when it collected every test file (``make test``: each xdist
    process collects them all), else a ``--collect-only`` run."""
    files = {str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")}
    if files <= {item.nodeid.split("::", 1)[0] for item in session.items}:
        return [(item.nodeid, ",".join(sorted(f for f in item.fixturenames if f in SHARED)))
                for item in session.items]
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "tests.groups", "-p", "no:cacheprovider", "tests"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    return [tuple(line[5:].rsplit(" ", 1)) for line in proc.stdout.splitlines()
            if line.startswith("UNIT ")]


def test_every_user_of_a_shared_project_is_in_its_unit(request: pytest.FixtureRequest) -> None:
    rows = _collected(request.session)
    assert len(rows) > 100
    # Every test pytest sees using a shared project is in that project's unit. (A test can
    # also reach one through request.getfixturevalue, which pytest only sees when it runs:
    # unit_of reads those calls too, so such tests may be in a shared unit pytest does not
    # list; the task-kind tests are, below.)
    wrong = []
    for nodeid, shared in rows:
        units = {SHARED[f] for f in shared.split(",") if f}
        if units and unit_of(nodeid) != sorted(units)[0]:
            wrong.append((nodeid, unit_of(nodeid), sorted(units)[0]))
    assert not wrong, wrong[:5]
    assert sum(unit_of(n) == "binary" for n, _ in rows) >= 10
    assert set(HEAVY) <= {unit_of(n) for n, _ in rows}  # the heavy units exist
    kinds = [n for n, _ in rows if n.startswith("tests/test_task_pipelines.py::")]
    assert kinds and {unit_of(n) for n in kinds} == {"skin4"}  # getfixturevalue("skin4_run")


def test_units_of_files_and_parameters() -> None:
    assert unit_of("tests/test_pipeline.py::test_outputs_and_metrics") == "binary"
    assert unit_of("tests/test_failures.py::test_kill_9_during_prepare_leaves_nothing_behind"
                   ) == "tests/test_failures.py"  # no shared project: its file's unit
    assert unit_of("tests/test_guided_pipeline.py::test_the_protected_classifier_has_one_"
                   "output_per_group") == "skin4"
    assert unit_of("tests/test_task.py::test_x[a-b]") == "tests/test_task.py"
    # A parameter id may hold "::"; the test's name comes before it.
    assert unit_of("tests/test_pipeline.py::test_second_repro_is_a_fast_noop[a::b]") == "binary"
