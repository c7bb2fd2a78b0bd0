"""The stage boundary: one-line errors, atomic JSON and CSV without NaN."""

from __future__ import annotations

import errno
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer

from facebalance.errors import CorruptImageError
from facebalance.runtime import one_line, os_error_message, run_app, write_csv, write_json

from .conftest import REPO


def test_json_has_null_where_a_metric_is_undefined(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {"kl": {"value": math.nan, "ci95": [np.float32("inf"), 1]},
                                     "n": 3, "deo": np.float64(0.25)})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"kl": {"value": None, "ci95": [None, 1]}, "n": 3, "deo": 0.25}


def test_csv_is_written_atomically(tmp_path: Path) -> None:
    write_csv(tmp_path / "h" / "curve.csv", pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.4]}))
    assert (tmp_path / "h" / "curve.csv").read_text() == "epoch,loss\n1,0.5\n2,0.4\n"
    assert [p.name for p in (tmp_path / "h").iterdir()] == ["curve.csv"]


def test_os_errors_read_as_one_line_with_the_file_and_a_hint() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "data/prepared/train/x.parquet")
    assert os_error_message(full) == ("cannot access data/prepared/train/x.parquet: No space "
                                      "left on device (free space and rerun)")
    denied = PermissionError(errno.EACCES, "Permission denied", "models/attr/target.pt")
    assert os_error_message(denied).endswith("Permission denied (check the folder's "
                                             "permissions)")


def test_an_os_error_in_a_stage_exits_1_with_one_line(tmp_path: Path) -> None:
    """``prepare`` whose summary cannot be written (a file stands where its folder goes)."""
    (tmp_path / "params.yaml").write_text(
        "dataset: {n_train: 64, n_val: 16, n_test: 16, rows_per_file: 64, row_group_size: 16}\n")
    (tmp_path / "blocker").write_text("a file, not a folder")
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "prepare.py"), "--out", "data/prepared",
         "--summary", "blocker/prepare.json"], capture_output=True, text=True, cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert errors == ["error: cannot access blocker: File exists (a file stands where a "
                      "folder is needed)"]


def _exit_status(app: typer.Typer) -> int:
    """The status :func:`run_app` exits with, run as a stage without arguments."""
    argv, sys.argv = sys.argv, ["stage"]
    try:
        with pytest.raises(SystemExit) as exit_:
            run_app(app)
    finally:
        sys.argv = argv
    return exit_.value.code


def test_run_app_turns_os_errors_into_one_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    app = typer.Typer()

    @app.command()
    def main() -> None:
        (tmp_path / "missing" / "out.json").write_text("{}")

    assert _exit_status(app) == 1
    assert capsys.readouterr().err == (f"error: cannot access {tmp_path / 'missing' / 'out.json'}"
                                       ": No such file or directory\n")


def test_a_signal_while_a_bar_is_built_still_exits_128_plus_the_signal(
        capsys: pytest.CaptureFixture) -> None:
    """tqdm registers a bar before it sets its position: a SIGTERM in between left a bar
    whose close() raised, and the stage exited 1 with a traceback instead of 143."""
    from tqdm import tqdm

    from facebalance.runtime import Interrupted

    app = typer.Typer()
    bars = []

    @app.command()
    def main() -> None:
        # Where __init__ was when the signal came: registered (in __new__), enabled, waiting
        # for the lock to get a position.
        bars.append(tqdm.__new__(tqdm))
        bars[0].disable = False
        raise Interrupted(15)

    assert _exit_status(app) == 128 + 15
    err = capsys.readouterr().err
    assert err.startswith("error: interrupted by SIGTERM") and "Traceback" not in err
    assert bars[0] not in tqdm._instances


class _Broken(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        raise CorruptImageError(f"corrupt image id='x{i}' in data/prepared/train/part-00000")


def test_an_error_from_a_dataloader_worker_is_still_one_line() -> None:
    loader = torch.utils.data.DataLoader(_Broken(), num_workers=1)
    with pytest.raises(CorruptImageError) as info:
        next(iter(loader))
    assert "Traceback" in str(info.value)  # what torch re-raises
    assert one_line(info.value) == ("corrupt image id='x0' in "
                                    "data/prepared/train/part-00000")
