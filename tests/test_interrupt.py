"""A stage stopped by a signal fails, says so in one line and keeps its previous outputs;
DVC then never records it as done."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import REPO
from .dvcproject import commit, dvc, new_project, set_params

# Signals reach a stage process as they do without the test session's stage server.
pytestmark = pytest.mark.usefixtures("own_stage_processes")

TINY = {"dataset": {"n_train": 64, "n_val": 16, "n_test": 16, "rows_per_file": 64,
                    "row_group_size": 16}}


def _tree_md5(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _wait_for_temp_output(parent: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Wait until prepare has started writing (its temporary sibling exists)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(p.name.startswith(".prepared.tmp-") for p in parent.iterdir()):
            time.sleep(0.5)  # inside the rendering loop
            return
        if proc.poll() is not None:
            raise AssertionError(f"the stage ended before it was interrupted: "
                                 f"{proc.communicate()}")
        time.sleep(0.1)
    raise AssertionError("prepare never started writing")


def _start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    # A new session: the signal goes to dvc and its stage together, as a terminal's Ctrl-C.
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signalled_stage_exits_128_plus_signal_and_keeps_its_outputs(
        tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    cmd = [sys.executable, str(REPO / "stages" / "prepare.py"), "--out", "data/prepared",
           "--summary", "prepare.json"]
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    before = _tree_md5(tmp_path / "data")
    set_params(tmp_path / "params.yaml", {"dataset": {"n_train": 400_000}})
    proc = _start(cmd, tmp_path)
    _wait_for_temp_output(tmp_path / "data", proc)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert proc.returncode == 128 + sig, err
    assert errors == [f"error: interrupted by {sig.name}; the stage did not finish and its "
                      "previous outputs are left as they were"]
    assert "Traceback" not in err
    assert _tree_md5(tmp_path / "data") == before  # no temporary sibling left either


def test_ctrl_c_during_dvc_repro_never_records_the_stage_as_done(tmp_path: Path) -> None:
    """The reported case: a bigger ``dataset.n_train``, ``dvc repro -s prepare``, Ctrl-C."""
    new_project(tmp_path, TINY)
    dvc(tmp_path, "repro", "-s", "prepare")
    commit(tmp_path)
    lock = (tmp_path / "dvc.lock").read_text()
    data = _tree_md5(tmp_path / "data" / "prepared")
    set_params(tmp_path / "params.yaml", {"dataset": {"n_train": 400_000}})

    proc = _start([sys.executable, "-m", "dvc", "repro", "-s", "prepare"], tmp_path)
    _wait_for_temp_output(tmp_path / "data", proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode != 0, out + err
    assert "interrupted by SIGINT" in err
    assert (tmp_path / "dvc.lock").read_text() == lock
    status = dvc(tmp_path, "status", "prepare").stdout
    assert "changed" in status and "params.yaml" in status, status
    if (tmp_path / "data" / "prepared").exists():  # whatever DVC left is the old data
        assert _tree_md5(tmp_path / "data" / "prepared") == data
