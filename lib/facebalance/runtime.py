"""What every stage does around its one lib call: logging, seeding, device, atomic JSON."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
import typer

from facebalance.config import BaseParams
from facebalance.data.shards import atomic_write_bytes
from facebalance.errors import FacebalanceError
from facebalance.models.train import resolve_device, set_threads


def derive_seed(*parts: int) -> int:
    """A 31-bit seed derived from several integers (e.g. ``base.seed`` and a run seed)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] & 0x7FFFFFFF)


def setup(base: BaseParams) -> torch.device:
    """Apply ``base.threads`` and return the device ``base.device`` names."""
    set_threads(base.threads)
    return resolve_device(base.device)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, keys in the dict's order (stable across strategies)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def run_app(app: typer.Typer | Callable[..., Any]) -> None:
    """Run a stage's typer app: log to stderr, turn user errors into one line and exit 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        typer.main.get_command(app)(standalone_mode=False)
    except FacebalanceError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except click.exceptions.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
