"""The test session's stage server (tests/stageserver/): a stage process handed to it
behaves as one that ran itself, for DVC and for whoever signals it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """\
import os, signal, sys, time
print("torch preloaded:", "torch" in sys.modules, flush=True)
with open("runs", "a") as runs:
    runs.write(f"{'torch' in sys.modules}\\n")
print("argv:", sys.argv[1:], "cwd:", os.getcwd(), "mark:", os.environ.get("FB_MARK"))
print("path0:", sys.path[0])
print("file:", __file__, "argv0:", sys.argv[0])
print("to stderr", file=sys.stderr)
mode = sys.argv[1]
if mode == "wait":
    def stop(signum, frame):  # os.write: the signal may come while print flushes
        os.write(1, f"stopped by {signal.Signals(signum).name}\\n".encode())
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    open("pid", "w").write(str(os.getpid()))
    print("waiting", flush=True)
    time.sleep(60)
elif mode == "raise":
    raise ValueError("boom")
elif mode == "die":
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "seed":
    import torch
    print("seed:", torch.initial_seed())
sys.exit(int(mode))
"""


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    """A stage script (``stages/probe.py``) that reports how it runs."""
    (tmp_path / "stages").mkdir()
    script = tmp_path / "stages" / "probe.py"
    script.write_text(SCRIPT)
    return script


def _run(stage: Path, mode: str, **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "stages/probe.py", mode], cwd=stage.parents[1],
                            env={**os.environ, "FB_MARK": "m1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.usefixtures("stage_server")
def test_a_handed_over_stage_gets_argv_cwd_env_streams_and_exit_status(stage: Path) -> None:
    proc = _run(stage, "3")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert out.splitlines() == ["torch preloaded: True",
                                f"argv: ['3'] cwd: {stage.parents[1]} mark: m1",
                                f"path0: {stage.parent}",
                                f"file: {stage} argv0: stages/probe.py"]
    assert err == "to stderr\n"


def test_without_a_server_the_stage_runs_in_its_own_process(
        stage: Path, own_stage_processes: None) -> None:
    proc = _run(stage, "0")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.startswith("torch preloaded: False")


@pytest.mark.usefixtures("stage_server")
def test_an_exception_prints_its_traceback_and_exits_1(stage: Path) -> None:
    proc = _run(stage, "raise")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Traceback" in err and err.rstrip().endswith("ValueError: boom")


@pytest.mark.usefixtures("stage_server")
def test_a_stage_killed_by_a_signal_kills_its_process_alike_and_runs_once(stage: Path) -> None:
    proc = _run(stage, "die")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert (stage.parents[1] / "runs").read_text() == "True\n"  # in the fork, only there


@pytest.mark.usefixtures("stage_server")
def test_each_fork_has_its_own_torch_seed_as_a_new_process(stage: Path) -> None:
    seeds = {_run(stage, "seed").communicate(timeout=60)[0].splitlines()[-1]
             for _ in range(2)}
    assert len(seeds) == 2


def _wait_for(proc: subprocess.Popen, stage: Path) -> int:
    assert proc.stdout.readline().startswith("torch preloaded: True")
    for line in proc.stdout:
        if line == "waiting\n":
            return int((stage.parents[1] / "pid").read_text())
    raise AssertionError(proc.stderr.read())


@pytest.mark.usefixtures("stage_server")
def test_a_signal_to_the_stage_process_reaches_the_stage(stage: Path) -> None:
    proc = _run(stage, "wait")
    fork = _wait_for(proc, stage)
    assert fork != proc.pid
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert (out, proc.returncode) == ("stopped by SIGTERM\n", 128 + signal.SIGTERM), err


@pytest.mark.usefixtures("stage_server")
def test_a_signal_the_stage_process_ignores_stays_ignored(stage: Path) -> None:
    proc = _run(stage, "wait", preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    fork = _wait_for(proc, stage)
    proc.send_signal(signal.SIGHUP)  # ignored by both, as by a process that ignores it
    os.kill(fork, signal.SIGHUP)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert (out, proc.returncode) == ("stopped by SIGTERM\n", 128 + signal.SIGTERM), err


@pytest.mark.usefixtures("stage_server")
def test_kill_9_of_the_stage_process_kills_the_fork(stage: Path) -> None:
    proc = _run(stage, "wait")
    fork = _wait_for(proc, stage)
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{fork}").exists():
        time.sleep(0.05)
    assert not Path(f"/proc/{fork}").exists()
