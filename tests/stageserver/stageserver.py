"""A fork server for the stage processes of the test suite's DVC pipelines.

Every stage is a process (``python stages/<name>.py``, started by DVC), and most of a tiny
stage's time is its imports: torch alone takes 1.2 to 1.6 s, and a stage that trains also
imports ``torch._dynamo`` (another 1.5 s, from ``torch.optim``), while the tiny stages'
work is well under a second. The test session starts one server per test process
(``tests/conftest.py``) that imports the third-party packages once (:data:`PRELOAD`, never
``facebalance``: a temporary DVC experiment runs the ``lib/`` of its own copy), and puts
this directory on ``PYTHONPATH``. Its ``sitecustomize.py`` runs first in every Python
process the tests start; in a stage process it calls :func:`hand_over`, which sends the
script, its arguments, working directory, environment, ``sys.path``, stream settings and
ignored signals, and its standard streams (the file descriptors themselves,
``SCM_RIGHTS``) to the server. The server forks a monitor, which forks the stage: it runs
the script as ``python`` would (a new ``__main__``) on those streams, and the stage
process waits, forwards the signals it gets (Ctrl-C, SIGTERM) and exits as the fork did:
the same exit status, or killed by the same signal. A fork that loses its stage process
(killed with SIGKILL) is killed too.

What a fork shares with the server beyond the imports, unlike a new process: the string
hash seed (set iteration order), warnings the imports already showed and the server's
frames in tracebacks; a Ctrl-Z stops the stage process but not its fork. Its numpy and
torch random states are reseeded from the OS, as a new process's.

With no server (``FACEBALANCE_STAGE_SERVER`` unset, or nothing answering the connection)
a stage runs in its own process as always; tests of process behaviour (signals, ``kill
-9``, torchrun) unset it. Once a server has taken the request, the stage never runs a
second time here: any failure after that exits 1 (the monitor then kills the fork).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in launch() only: every process the tests start imports this
    import subprocess

#: Imported once by the server: the packages every torch stage imports first.
PRELOAD = ("numpy", "scipy.ndimage", "yaml", "typer", "PIL.Image", "torch", "torch._dynamo",
           "torch.utils.data", "torchvision")

_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
#: Seconds to connect and to get the fork's pid (the server forks at once); the stage
#: itself may run as long as it needs.
_CONNECT_TIMEOUT = 30
_REPLY_TIMEOUT = 60


def launch(address: str | os.PathLike) -> subprocess.Popen:
    """Start a server listening at ``address`` (it prints ``ready`` once it listens, and
    returns when its standard input closes), in a session of its own: a Ctrl-C reaches the
    stage processes, which forward it to their forks once."""
    import subprocess

    return subprocess.Popen([sys.executable, __file__, str(address)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, start_new_session=True)


def hook_env(address: str | os.PathLike) -> dict[str, str]:
    """The environment that hands a stage process to the server at ``address``: its
    address, and this directory (``sitecustomize.py``) first on ``PYTHONPATH``."""
    here = os.path.dirname(os.path.abspath(__file__))
    return {"FACEBALANCE_STAGE_SERVER": str(address), "PYTHONPATH": os.pathsep.join(
        [here, *filter(None, [os.environ.get("PYTHONPATH")])])}


def is_stage(argv: list[str]) -> bool:
    """Whether a process runs a stage script (``stages/<name>.py`` of a project)."""
    script = argv[0] if argv else ""
    return (script.endswith(".py") and not os.path.basename(script).startswith("_")
            and os.path.basename(os.path.dirname(os.path.abspath(script))) == "stages")


def _stream(stream: object) -> dict:
    """How a standard stream is set up (encoding, errors, buffering), to rebuild it alike;
    Python's defaults for a closed one."""
    if stream is None:
        return {"encoding": "utf-8", "errors": "strict", "line_buffering": False,
                "write_through": False}
    return {"encoding": stream.encoding, "errors": stream.errors,
            "line_buffering": stream.line_buffering, "write_through": stream.write_through}


def hand_over(address: str) -> None:
    """Run this process's stage in a fork of the server at ``address`` and exit as it does.

    Returns (the stage then runs here) only when no server takes the request.
    """
    import json
    import signal
    import socket
    import struct

    # Forward signals from before the request is sent: a stage can start (and be signalled)
    # before the server's reply with its pid arrives; those wait here until it does. Signals
    # this process ignores stay ignored, here and in the fork.
    pid: list[int] = []
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if not pid:
            pending.append(signum)
            return
        try:
            os.kill(pid[0], signum)
        except ProcessLookupError:
            pass

    signals = [getattr(signal, name) for name in _FORWARDED]
    ignored = [int(sig) for sig in signals if signal.getsignal(sig) == signal.SIG_IGN]
    before = {sig: signal.signal(sig, forward) for sig in signals if int(sig) not in ignored}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(_CONNECT_TIMEOUT)
    try:
        sock.connect(address)
    except OSError:  # no server: run here, with the signals so far
        sock.close()
        for sig, handler in before.items():
            signal.signal(sig, handler)
        for sig in pending:
            os.kill(os.getpid(), sig)
        return
    try:
        # sys.path as the script will see it: Python puts the script's directory first
        # after site (and this hook) ran.
        path = [os.path.dirname(os.path.abspath(sys.argv[0])), *sys.path]
        request = json.dumps({
            "argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ), "path": path,
            "ignored": ignored,
            "streams": [_stream(s) for s in (sys.stdin, sys.stdout, sys.stderr)],
        }).encode()
        fds = [fd if _is_open(fd) else os.open(os.devnull, os.O_RDWR) for fd in (0, 1, 2)]
        sock.settimeout(_REPLY_TIMEOUT)
        socket.send_fds(sock, [struct.pack("!Q", len(request))], fds)
        sock.sendall(request)
        replies = sock.makefile("rb")
        line = replies.readline()
        if not line.startswith(b"pid "):
            raise OSError(f"no pid from the server ({line!r})")
        pid.append(int(line.split()[1]))
        for sig in pending:
            forward(sig, None)
        sock.settimeout(None)  # the stage runs as long as it needs
        kind, _, value = replies.readline().decode().partition(" ")
        if kind == "signal":  # die of the same signal, as DVC would have seen the stage do
            sig = int(value)
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            os._exit(128 + sig)
        if kind != "exit":
            raise OSError("the server's monitor went away")
        os._exit(int(value))
    except BaseException as err:  # the server has the stage: never run it here
        try:
            os.write(2, f"error: stage server ({address}): {err}\n".encode())
        finally:
            os._exit(1)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def serve(address: str) -> None:
    """Import :data:`PRELOAD`, listen at ``address`` and fork one stage per connection;
    return when standard input closes (the test process that started it has gone)."""
    import importlib
    import select
    import signal
    import socket

    for name in PRELOAD:
        importlib.import_module(name)
    assert not any(m == "facebalance" or m.startswith("facebalance.") for m in sys.modules)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the monitors are reaped by the kernel
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            return
        if listener in ready:
            conn, _ = listener.accept()
            sys.stdout.flush()
            sys.stderr.flush()
            if os.fork() == 0:
                listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _monitor(conn)
            conn.close()


def _recv_exact(conn: object, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise OSError("stage process went away")
        data += chunk
    return data


def _gone(conn: object) -> bool:
    """Whether the stage process closed its end (it died: nothing else is ever sent)."""
    try:
        return not conn.recv(1)
    except OSError:
        return True


def _wait(pid: int, conn: object) -> int:
    """Wait for the fork ``pid``, killing it if its stage process goes first; its status."""
    import select
    import signal

    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):  # no pidfd (not Linux, old kernel, seccomp): poll
        pidfd = None
    while True:
        if pidfd is not None:
            ready, _, _ = select.select([pidfd, conn], [], [])
            if pidfd in ready:
                break
        else:
            ready, _, _ = select.select([conn], [], [], 0.05)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
        if conn in ready and _gone(conn):  # the stage process is gone: its fork goes too
            os.kill(pid, signal.SIGKILL)
            break
    return os.waitpid(pid, 0)[1]


def _monitor(conn: object) -> None:
    """In a fork of the server: receive one stage, fork it, tell its process the pid, wait
    for it and send how it ended; never returns."""
    import json
    import signal
    import socket
    import struct

    try:
        head, fds, _, _ = socket.recv_fds(conn, 8, 3)
        head += _recv_exact(conn, 8 - len(head))
        request = json.loads(_recv_exact(conn, struct.unpack("!Q", head)[0]))
    except (OSError, ValueError):
        os._exit(1)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run_stage(request, fds)
    for fd in fds:
        os.close(fd)
    try:
        conn.sendall(f"pid {pid}\n".encode())
        status = _wait(pid, conn)
    except BaseException:  # never leave the stage running unwatched
        os.kill(pid, signal.SIGKILL)
        os._exit(1)
    reply = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
             else f"exit {os.waitstatus_to_exitcode(status)}")
    try:
        conn.sendall(f"{reply}\n".encode())
    except OSError:
        pass
    os._exit(0)


def _run_stage(request: dict, fds: list[int]) -> None:
    """In the stage's fork: become the stage process (streams, directory, environment,
    ``sys.path``, signals, fresh random state), run its script as ``__main__`` and shut
    down as Python does; never returns (anything unexpected: a traceback, exit 1)."""
    code = 1
    try:
        _become(request, fds)
        code = _run_main(request["argv"][0])
    except BaseException:  # a failure here must not unwind into the server
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _become(request: dict, fds: list[int]) -> None:
    """The fork takes the stage process's streams, directory, environment, ``sys.path``,
    ignored signals and stream settings, and a new process's random state."""
    import io
    import multiprocessing.process
    import signal
    import tempfile

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv[:] = request["argv"]
    sys.path[:] = request["path"]
    for sig in request["ignored"]:
        signal.signal(sig, signal.SIG_IGN)
    # Whatever the server computed from its own directory and environment, recomputed.
    multiprocessing.process.ORIGINAL_DIR = os.getcwd()
    tempfile.tempdir = None
    # New stream objects on the received descriptors, set up as the stage process's were
    # (-u / PYTHONUNBUFFERED: no buffer under the text layer).
    inp, out, err = request["streams"]
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        open(0, "rb", closefd=False), encoding=inp["encoding"], errors=inp["errors"])
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        open(1, "wb", buffering=0 if out["write_through"] else -1, closefd=False), **out)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        open(2, "wb", buffering=0 if err["write_through"] else -1, closefd=False), **err)
    _fresh_state()


def _run_main(script: str) -> int:
    """Run ``script`` as Python runs ``python script``: a new ``__main__`` module with the
    absolute ``__file__`` (``sys.argv[0]`` as given), the exit status as Python's, then
    Python's shutdown (non-daemon threads joined, atexit, garbage collected). A
    KeyboardInterrupt ends it killed by SIGINT, as Python's does."""
    import atexit
    import gc
    import importlib.machinery
    import signal
    import threading
    import types

    path = os.path.abspath(script)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__cached__ = None
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(path, "rb") as source:
            compiled = compile(source.read(), path, "exec")
        exec(compiled, main.__dict__)  # the stage script, as python runs it
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except KeyboardInterrupt:  # as Python does: the traceback, then die of SIGINT
        sys.excepthook(*sys.exc_info())
        code = -2
    except BaseException:  # as Python does: the traceback, exit 1
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()
    atexit._run_exitfuncs()
    gc.collect()
    if code == -2:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def _fresh_state() -> None:
    """What a new process would start with: numpy's global and torch's default random
    states from the OS (a fork copies the server's), torch's thread count from
    ``OMP_NUM_THREADS`` (unset: the server's)."""
    import numpy as np
    import torch

    np.random.seed()  # noqa: NPY002 - the legacy global state a new process seeds itself
    torch.seed()
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))


def _exit_code(code: object) -> int:
    """``sys.exit``'s argument as Python's exit status (None: 0; text: printed, 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    serve(sys.argv[1])
