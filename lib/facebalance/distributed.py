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

import atexit
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


def under_torchrun() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun): valid before the
    process group is initialised."""
    return int(os.environ.get("RANK", "0"))


def start(nproc: int, device: torch.device, threads: int = 0) -> Rank:
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
    threads
        ``base.threads``; 0 splits the CPU's cores between the ranks.

    Raises
    ------
    FacebalanceError
        When the device cannot hold ``nproc`` ranks, or a rank fails: its one-line error
        (or how it died).
    """
    if under_torchrun():
        dist = torch.distributed
        if not dist.is_initialized():
            if device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            # NCCL warns at exit when the group is left open (and that line would stand
            # where a failed rank's one-line error belongs).
            atexit.register(_leave_group)
        elif device.type == "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        return Rank(dist.get_rank(), dist.get_world_size(), device)
    if nproc > 1:
        _check_devices(nproc, device)
        raise SystemExit(_launch(nproc, threads))
    return Rank(0, 1, device)


def _leave_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _check_devices(nproc: int, device: torch.device) -> None:
    """``nproc`` ranks fit the device kind: one GPU each on CUDA, none on MPS."""
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise FacebalanceError(
            f"params: base.nproc = {nproc} needs one GPU per process, but "
            f"{torch.cuda.device_count()} are visible; lower base.nproc or use more GPUs")
    if device.type not in ("cuda", "cpu"):
        raise FacebalanceError(
            f"params: base.nproc = {nproc} runs on CPUs (gloo) or CUDA GPUs (NCCL), not on "
            f"{device.type}; set base.nproc: 1 or base.device: cpu")


def _launch(nproc: int, threads: int = 0) -> int:
    """Run ``sys.argv`` under torchrun with ``nproc`` processes: rank 0's output is shown as
    it comes, every rank's is kept in its log; a failure becomes one line (the failing
    rank's error)."""
    with tempfile.TemporaryDirectory(prefix="facebalance-ranks-") as logs:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", f"--log-dir={logs}", "--tee=3",
               "--local-ranks-filter=0", *sys.argv]
        # Each rank's CPU threads: base.threads when set, else the cores split between the
        # ranks (torchrun's own default is 1 thread a rank, which idles a big CPU).
        share = str(threads or max(1, (os.cpu_count() or 1) // nproc))
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", share)}
        agent: list[str] = []
        shown = _RankZero()
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, bufsize=1)
        try:
            for line in proc.stderr:
                m = _RANK_LINE.match(line.rstrip("\n"))
                if m is None:
                    agent.append(line)  # torchrun's own: shown only to explain a failure
                elif (text := shown.feed(m[2])) is not None:
                    print(text, file=sys.stderr)
            code = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: stop the ranks before leaving
                proc.terminate()
                proc.wait()
        if code == 0:
            print(*shown.held, sep="\n", file=sys.stderr, end="\n" if shown.held else "")
            return 0
        rank, message = _failure(Path(logs), "".join(agent), code)
        if rank is None and agent:  # torchrun itself failed (rendezvous, arguments)
            message += ": " + agent[-1].strip()
        trace = _traceback(Path(logs), rank)
        if trace:  # a bug (not a user error): its traceback, as one process would show it
            print(trace, file=sys.stderr)
        raise FacebalanceError(message)


class _RankZero:
    """Which of rank 0's lines to show as they come.

    Its log lines are shown. Lines torch prefixes with ``[rankN]:`` (an uncaught error's
    traceback once the group is up, C++ warnings) are held one by one; a traceback raised
    before the prefix exists (joining the group after a peer died) is held from its first
    line on. When another rank died first such a traceback is only the consequence (a closed
    or refused connection) and the one line names the cause instead; when the run succeeds
    after all, what was held is shown at the end. Its ``error:`` line is held too: the one
    line of a failure comes from :func:`_failure`.
    """

    def __init__(self) -> None:
        self.held: list[str] = []
        self._tracing = False

    def feed(self, text: str) -> str | None:
        """The line to show now for one line rank 0 wrote, or None to hold it."""
        plain = _TRACE_LINE.sub("", text)
        self._tracing = self._tracing or plain.startswith("Traceback (most recent call last)")
        if self._tracing or plain != text:
            self.held.append(plain)
            return None
        return None if text.startswith("error: ") else text


#: A rank's error that only says another rank went away first.
_CONSEQUENCE = re.compile(
    r"Connection (closed|reset) by peer|Connection refused|interrupted by SIGTERM")


def _failure(logs: Path, agent: str, code: int) -> tuple[str | None, str]:
    """The failing rank and one line for the failure: its error line, or the signal that
    killed it. torchrun names a root cause (and lists the other failures before it); a rank
    that only lost its peer (a closed connection, or stopped by the agent) is passed over
    for one that failed first."""
    i = agent.find("Root Cause")
    ordered = agent[i:] + agent[:i] if i >= 0 else agent  # the root cause first
    failures = re.findall(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", ordered, re.S)
    if not failures:
        return None, f"distributed training failed: torchrun exited with status {code}"
    found = []
    for rank, status in dict.fromkeys(failures):
        found.append((rank, int(status), _error_line(_log(logs, rank))))
    rank, value, last = next((f for f in found if f[1] != -15 and not _CONSEQUENCE.search(
        f[2])), found[0])
    if value < 0:
        return rank, (f"rank {rank} was killed by signal {-value}; the other ranks were "
                      "stopped")
    return rank, f"rank {rank} failed" + (f": {last}" if last else f" with status {value}")


def _error_line(lines: list[str]) -> str:
    """A rank's error: its last ``error:`` line (run_app's one line), else its last line
    that is not a C++ warning (a traceback's exception)."""
    plain = [_TRACE_LINE.sub("", x).strip() for x in lines]
    errors = [x for x in plain if x.startswith("error: ")]
    if errors:
        return errors[-1].removeprefix("error: ")
    rest = [x for x in plain if not re.match(r"^\[?[WI]\d{4}", x)]
    return rest[-1] if rest else ""


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
