"""DVC experiments as data: a file of a finished experiment, and the experiments side by side.

A finished DVC experiment is a git commit under ``refs/exps/<baseline>/<name>``, so its
outputs tracked in git (metrics JSON) are read with ``git show <ref>:<path>`` in any later
shell, after ``dvc queue`` has finished. :func:`experiment_file` does that;
``facebalance choose-share`` and ``benchmarks/sweep_gan_defaults.py`` read their
experiments' metrics through it.

``dvc exp show --csv`` prints one row per experiment and one column per dep hash, param and
metric: far more than a screen. :func:`exps_table` keeps each strategy's headline metrics
(:data:`EXPS_METRICS`), verification's AUCs (:data:`EXPS_VERIFY`) and the params whose
values differ; ``facebalance exps`` prints it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from typing import Any

from facebalance.errors import FacebalanceError

#: What ``facebalance exps`` shows of each strategy, and of verification.
EXPS_METRICS = ("deo", "ap")
EXPS_VERIFY = ("head.auc", "cosine.auc")


def experiment_file(name: str, path: str) -> str:
    """A file of a finished DVC experiment, from its git ref (``refs/exps/.../<name>``).

    The newest experiment of that name wins: one queued again from a later commit keeps
    its name under another baseline prefix.

    Parameters
    ----------
    name
        The experiment's name (``dvc exp run -n NAME``).
    path
        The file's path in the repository, e.g. ``metrics/paired.json``.

    Returns
    -------
    str
        The file's text at that experiment's commit.

    Raises
    ------
    FacebalanceError
        No experiment of that name, or no such file in it.
    """
    refs = subprocess.run(["git", "for-each-ref", "--sort=-committerdate",
                           "--format=%(refname)", "refs/exps"],
                          capture_output=True, text=True).stdout.split()
    found = [r for r in refs if r.endswith(f"/{name}")]
    if not found:
        raise FacebalanceError(f"no DVC experiment named {name!r} (dvc exp show)")
    proc = subprocess.run(["git", "show", f"{found[0]}:{path}"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise FacebalanceError(f"experiment {name!r} has no {path}")
    return proc.stdout


def flat_keys(data: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The dotted keys of a nested mapping's leaves (``train_target.lr``), as DVC names
    params in ``dvc exp show``."""
    keys: set[str] = set()
    for k, v in data.items():
        key = f"{prefix}{k}"
        keys |= flat_keys(v, f"{key}.") if isinstance(v, dict) else {key}
    return keys


def _fmt_cell(value: str | None) -> str:
    """A number to 3 decimals, ``-`` for none, any other text as it is."""
    try:
        return f"{float(value):.3f}" if value not in (None, "") else "-"
    except ValueError:
        return str(value)


def exps_table(rows: list[dict[str, str]], params: set[str],
               metrics: tuple[str, ...] = EXPS_METRICS) -> list[list[str]]:
    """The part of ``dvc exp show --csv`` worth a screen, one column per experiment: each
    strategy's headline metrics (``<strategy> deo``), verification's AUCs and the
    ``params`` (dotted keys of params.yaml) whose values differ between experiments; deps
    (file hashes), unchanged params and diagnostic numbers are left out.

    Parameters
    ----------
    rows
        The CSV's rows (``csv.DictReader``), one per experiment.
    params
        The dotted param keys (:func:`flat_keys` of params.yaml).
    metrics
        The headline metrics shown per strategy.

    Returns
    -------
    list of rows
        The first row names the experiments; each further row is a label and one cell per
        experiment.
    """
    if not rows:
        return []
    picked: list[tuple[str, str]] = []
    for col in rows[0]:
        strategy = re.fullmatch(r"metrics/eval/(.+)\.json:(\w+)", col)
        if strategy and strategy[2] in metrics:
            picked.append((col, f"{strategy[1]} {strategy[2]}"))
        elif col in metrics:  # one strategy: DVC shortens its columns to the bare name
            picked.append((col, col))
        elif col.removeprefix("metrics/verify.json:") in EXPS_VERIFY:
            picked.append((col, f"verify {col.removeprefix('metrics/verify.json:')}"))
    picked += [(col, col) for col in rows[0]
               if col in params and len({r.get(col, "") for r in rows}) > 1]
    table = [["", *[r["Experiment"] or r["rev"] for r in rows]]]
    table += [[label, *[_fmt_cell(r.get(col)) for r in rows]] for col, label in picked]
    return table
