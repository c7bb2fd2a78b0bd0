"""Data-parallel training under ``torchrun``: one process per device, one code path.

``base.nproc: N`` (N > 1) makes a training stage re-run itself under
``torchrun --standalone --nproc-per-node N`` (:func:`start`); DVC still runs the stage
as one command and ``params.yaml`` records how the model was trained. Each process (rank)
reads its own slice of every batch from the streamed shards
(:class:`facebalance.data.datasets.BlockShuffleSampler`), the gradients are all-reduced
(PyTorch DDP: gloo on CPU, NCCL on GPUs) and rank 0 alone writes the outputs, atomically.
Several machines run the same code: start ``torchrun --nnodes M --nproc-per-node N
--rdzv-endpoint HOST:PORT stages/<stage>.py ...`` on each (docs/teams.md); a stage that
finds itself under torchrun joins the group instead of launching one.

A rank that fails stops the others (torchrun's agent) and the stage exits 1 with that rank's
one-line error; the atomic writers leave the previous outputs as they were.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from facebalance.errors import FacebalanceError

#: How torchrun's ``--tee`` prefixes a rank's lines, and torch an uncaught error's.
_RANK_LINE = re.compile(r"^\[default(\d+)\]:(.*)$")
_TRACE_LINE = re.compile(r"^\[rank\d+\]: ?")


@dataclass(frozen=True)
class Rank:
    """This process's place in the group: ``rank`` of ``size``, and its device."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Whether this process writes the outputs (rank 0)."""
        return self.rank == 0


def world() -> tuple[int, int]:
    """``(rank, world size)`` of this process: ``(0, 1)`` outside a process group."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes outputs (rank 0, or no process group)."""
    return world()[0] == 0


def under_torchrun() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(nproc: int, device: torch.device) -> Rank:
    """Join or launch the data-parallel group of a training stage.

    Under torchrun: initialise the process group (NCCL on CUDA, one GPU per local rank;
    gloo on CPU) and return this rank. With ``nproc`` > 1 outside torchrun: run this same
    command under ``torchrun --standalone --nproc-per-node nproc`` and exit with its status
    (raising ``SystemExit`` here, so the launching process does nothing else). Otherwise one
    process: rank 0 of 1.

    Parameters
    ----------
    nproc
        ``base.nproc``.
    device
        The device ``base.device`` resolved to (CUDA ranks use ``cuda:<local rank>``).

    Raises
    ------
    FacebalanceError
        When a rank fails: its one-line error (or how it died).
    """
    if under_torchrun():
        dist = torch.distributed
        if not dist.is_initialized():
            if device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        elif device.type == "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        return Rank(dist.get_rank(), dist.get_world_size(), device)
    if nproc > 1:
        raise SystemExit(_launch(nproc))
    return Rank(0, 1, device)


def _launch(nproc: int) -> int:
    """Run ``sys.argv`` under torchrun with ``nproc`` processes: rank 0's output is shown as
    it comes, every rank's is kept in its log; a failure becomes one line (the failing
    rank's last line)."""
    with tempfile.TemporaryDirectory(prefix="facebalance-ranks-") as logs:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", f"--log-dir={logs}", "--tee=3",
               "--local-ranks-filter=0", *sys.argv]
        # OMP_NUM_THREADS set: torchrun's banner stays out; base.threads applies in each rank.
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        agent: list[str] = []
        held: list[str] = []
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, bufsize=1)
        try:
            for line in proc.stderr:
                m = _RANK_LINE.match(line.rstrip("\n"))
                if m is None:
                    agent.append(line)  # torchrun's own: shown only to explain a failure
                elif _TRACE_LINE.match(m[2]):
                    # An uncaught error's traceback: when another rank died first it is
                    # only the consequence (a closed connection), so it waits for the cause.
                    held.append(_TRACE_LINE.sub("", m[2]))
                elif not m[2].startswith("error: "):  # the one line comes from here
                    print(m[2], file=sys.stderr)
            code = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: stop the ranks before leaving
                proc.terminate()
                proc.wait()
        if code == 0:
            print(*held, sep="\n", file=sys.stderr, end="\n" if held else "")
            return 0
        rank, message = _failure(Path(logs), "".join(agent), code)
        trace = _traceback(Path(logs), rank)
        if trace:  # a bug (not a user error): its traceback, as one process would show it
            print(trace, file=sys.stderr)
        raise FacebalanceError(message)


#: A rank's error that only says another rank went away first.
_CONSEQUENCE = re.compile(r"Connection (closed|reset) by peer|interrupted by SIGTERM")


def _failure(logs: Path, agent: str, code: int) -> tuple[str | None, str]:
    """The failing rank and one line for the failure: its last line of output, or the
    signal that killed it. torchrun lists its root cause first; a rank that only lost its
    peer (a closed connection, or stopped by the agent) is passed over for the one that
    failed first."""
    cause = agent[agent.find("Root Cause"):] if "Root Cause" in agent else agent
    failures = re.findall(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", cause, re.S)
    if not failures:
        return None, f"distributed training failed: torchrun exited with status {code}"
    found = []
    for rank, status in failures:
        lines = _log(logs, rank)
        last = _TRACE_LINE.sub("", lines[-1]).strip().removeprefix("error: ") if lines else ""
        found.append((rank, int(status), last))
    rank, value, last = next((f for f in found if f[1] != -15 and not _CONSEQUENCE.search(
        f[2])), found[0])
    if value < 0:
        return rank, (f"rank {rank} was killed by signal {-value}; the other ranks were "
                      "stopped")
    return rank, f"rank {rank} failed" + (f": {last}" if last else f" with status {value}")


def _log(logs: Path, rank: str) -> list[str]:
    """The non-empty lines a rank wrote to stderr."""
    for log in logs.glob(f"*/attempt_*/{rank}/stderr.log"):
        return [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return []


def _traceback(logs: Path, rank: str | None) -> str:
    """The traceback the failing rank printed, if it failed with one (a bug)."""
    lines = [_TRACE_LINE.sub("", x) for x in _log(logs, rank)] if rank else []
    starts = [i for i, x in enumerate(lines) if x.startswith("Traceback")]
    return "\n".join(lines[starts[0]:]) if starts else ""
