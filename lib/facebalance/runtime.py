"""What every stage does around its one lib call: logging, seeding, device, atomic JSON."""

from __future__ import annotations

import errno
import json
import logging
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np
import pandas as pd
import typer
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from facebalance.config import BaseParams
from facebalance.data.shards import atomic_write_bytes
from facebalance.errors import FacebalanceError

if TYPE_CHECKING:
    import torch


def derive_seed(*parts: int) -> int:
    """A 31-bit seed derived from several integers (e.g. ``base.seed`` and a run seed)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] & 0x7FFFFFFF)


def setup(base: BaseParams) -> torch.device:
    """Apply ``base.threads`` and return the device ``base.device`` names."""
    # Imported here: stages without a model (augment, compare) never load torch (~2 s).
    from facebalance.device import resolve_device, set_threads

    set_threads(base.threads)
    return resolve_device(base.device)


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON ``null``).

    ``json.dumps`` writes NaN as a bare ``NaN``, which is not JSON and which ``dvc metrics``
    then shows as a number; an undefined metric must read as missing instead.
    """
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, keys in the dict's order (stable across strategies); NaN and
    infinities become ``null``."""
    text = json.dumps(finite_or_none(obj), indent=2, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a CSV (a history or plot table) atomically."""
    atomic_write_bytes(path, frame.to_csv(index=False).encode())


def one_line(err: FacebalanceError) -> str:
    """The message of a user error, without the traceback text torch's DataLoader puts into
    errors re-raised from its worker processes."""
    text = str(err)
    if "Original Traceback" in text:  # "...\nfacebalance.errors.XError: <message>\n"
        last = text.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if last.startswith("facebalance.") else last
    return text


def os_error_message(err: OSError) -> str:
    """One line for an operating-system error: what failed, on which file, and why."""
    reason = err.strerror or str(err)
    name = errno.errorcode.get(err.errno or 0, "")
    where = f" {err.filename}" if err.filename else ""
    if err.filename2:
        where += f" -> {err.filename2}"
    hint = {"ENOSPC": "free space and rerun", "EACCES": "check the folder's permissions",
            "EROFS": "the file system is read-only", "EPERM": "check the folder's permissions",
            "EDQUOT": "free space and rerun",
            "EEXIST": "a file stands where a folder is needed",
            "ENOTDIR": "a file stands where a folder is needed"}.get(name, "")
    return f"cannot access{where}: {reason}" + (f" ({hint})" if hint else "")


class Interrupted(BaseException):
    """SIGINT or SIGTERM reached a stage: it stops without replacing its outputs.

    A ``BaseException`` that is not ``KeyboardInterrupt``: typer turns a
    ``KeyboardInterrupt`` into an exit code that it returns rather than raises (so a
    stage stopped by Ctrl-C exited 0 and DVC recorded it as done), and ``except
    Exception`` blocks in lib must not swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, _frame: object) -> None:
    # Later signals wait: the unwinding removes temporary outputs and must not be cut short.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def run_app(app: typer.Typer | Callable[..., Any]) -> None:
    """Run a stage's typer app: log to stderr, turn user errors into one line and exit 1.

    SIGINT (Ctrl-C) and SIGTERM stop the stage with exit status 128 + the signal number
    (130, 143) and one line: the atomic writers drop what they had written, so the
    previous outputs stay, and DVC sees a failed command and never records the stage as
    done. Any other non-zero status the command returns is passed on as well. Log and
    error lines start their own line, never the end of a progress bar's.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with logging_redirect_tqdm():  # log lines through tqdm.write, above any bar
            code = typer.main.get_command(app)(standalone_mode=False)
    except BaseException as err:
        _end_bars()
        sys.exit(_error_exit(err))
    finally:  # a caller in the same process (a test) gets its own handlers back
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if isinstance(code, int) and code != 0:  # typer returns exit codes in this mode
        sys.exit(code)


def _end_bars() -> None:
    """Close every open progress bar, so that the error line starts a line of its own.

    A signal can arrive while a bar is being built: tqdm registers it before it has a
    position (fresh-clone ``make test``, 2026-12-05: ``'tqdm' object has no attribute
    'pos'`` turned SIGTERM's exit status 143 into 1). Such a bar has nothing on screen;
    failing to close it must not replace the stage's own error.
    """
    for bar in list(getattr(tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # a half-built bar
            tqdm._instances.discard(bar)


def _error_exit(err: BaseException) -> int:
    """Print the one line an exception stands for and return the exit status (re-raise
    what is not a user's or the system's error: a bug keeps its traceback)."""
    if isinstance(err, Interrupted):
        print(f"error: interrupted by {signal.Signals(err.signum).name}; the stage did not "
              "finish and its previous outputs are left as they were", file=sys.stderr)
        return 128 + err.signum
    if isinstance(err, FacebalanceError):
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1
    if isinstance(err, OSError):  # a read-only or full disk, a permission: file and cause
        print(f"error: {os_error_message(err)}", file=sys.stderr)
        return 1
    if isinstance(err, click.exceptions.ClickException):
        err.show()
        return err.exit_code
    if isinstance(err, click.exceptions.Abort):
        return 130
    raise err
