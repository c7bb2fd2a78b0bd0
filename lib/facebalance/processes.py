"""Worker processes of the stages (image decoding, dlib): they end with their parent and
leave Ctrl-C to it."""

from __future__ import annotations

import os
import signal
import sys


def leave_signals_to_parent() -> None:
    """Ctrl-C reaches the whole process group: the stage process stops the stage and its
    workers, which must not each print a traceback; SIGTERM keeps its default (the pools'
    own shutdown sends it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def exit_with_parent(parent: int) -> None:
    """Make a worker process end when ``parent`` dies, even by ``kill -9``.

    Linux delivers SIGKILL to the worker through ``PR_SET_PDEATHSIG``; elsewhere a daemon
    thread polls the parent id. Without this, decode workers (hundreds of MB each) outlive
    a killed ``prepare``. Ctrl-C, which reaches the whole process group, is left to the
    parent (it stops the stage and the pool; workers would each print a traceback).
    """
    leave_signals_to_parent()
    if sys.platform == "linux":
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
        return
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
