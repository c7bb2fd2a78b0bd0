"""The test suite's tiny binary project through ``dvc repro`` (every stage of dvc.yaml, 33
stage processes), with each stage in its own process as DVC starts it, against the same
with the test session's stage server (``tests/stageserver/``: stage processes fork from one
that imported torch once).

    python benchmarks/bench_stage_server.py

Both builds run one after the other in fresh temporary projects, one torch thread each
(``OMP_NUM_THREADS=1``, as under ``make test``); their metrics must agree.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.dvcproject import dvc, new_project, ran  # noqa: E402
from tests.projects import BINARY  # noqa: E402
from tests.stageserver.stageserver import hook_env, launch  # noqa: E402


def build(root: Path, env: dict[str, str]) -> tuple[float, int, dict]:
    """``dvc repro`` of :data:`BINARY` in ``root``: seconds, stages run, baseline's metrics."""
    root.mkdir()
    new_project(root, BINARY)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        start = time.perf_counter()
        proc = dvc(root, "repro")
        seconds = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(saved)
    metrics = json.loads((root / "metrics/eval/baseline.json").read_text())
    return seconds, len(ran(proc.stdout)), metrics


def main() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        address = Path(tmp) / "socket"
        server = launch(address)
        assert server.stdout.readline() == b"ready\n"
        try:
            own, n_own, m_own = build(Path(tmp) / "own", {})
            served, n_served, m_served = build(Path(tmp) / "served", hook_env(address))
        finally:
            server.stdin.close()
            server.wait(timeout=30)
    assert n_own == n_served, (n_own, n_served)
    assert m_own == m_served, (m_own, m_served)
    print(f"{n_own} stages, dvc repro: own processes {own:.1f} s, stage server {served:.1f} s: "
          f"{own / served:.2f}x; baseline metrics identical")


if __name__ == "__main__":
    main()
