"""DVC experiments as data: a file of a finished experiment, and the experiments side by side.

A finished DVC experiment is a git commit under ``refs/exps/<baseline>/<name>``, so its
outputs tracked in git (metrics JSON) are read with ``git show <ref>:<path>`` in any later
shell, after ``dvc queue`` has finished. :func:`experiment_file` does that;
``facebalance choose-share`` and ``benchmarks/sweep_gan_defaults.py`` read their
experiments' metrics through it.

``dvc exp show --csv`` prints one row per experiment and one column per dep hash, param and
metric: far more than a screen. :func:`exps_table` keeps each strategy's headline pair
(quality and fairness, per task kind), verification's AUCs (:data:`EXPS_VERIFY`) and the
params whose values differ; ``facebalance exps`` prints it, ``--csv`` in DVC's shape
(:func:`exps_csv`).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from typing import Any

from facebalance.choices import DEFAULT_COMPARE, GUARD_METRICS
from facebalance.errors import FacebalanceError

#: What ``facebalance exps`` shows of verification.
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


#: DVC's own columns of ``dvc exp show --csv`` that name an experiment, kept by ``--csv``.
EXPS_ID_COLUMNS = ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")


def _headline(present: set[str]) -> set[str]:
    """The metrics shown by default of one strategy's columns: the (quality, fairness) pair
    of each task kind whose headline metrics are all there (binary: ap and deo; regression:
    mae and worst_group_mae), so an experiment of another task kind keeps its own."""
    return {m for kind, names in DEFAULT_COMPARE.items() if set(names) <= present
            for m in GUARD_METRICS[kind]}


def _picked(rows: list[dict[str, str]], params: set[str],
            metrics: tuple[str, ...] | None) -> list[tuple[str, str]]:
    """The columns worth a screen, each with its short label: headline metrics per strategy
    (``metrics``, or each task kind's pair), verification's AUCs, then the params whose
    values differ between the rows."""
    by_file: dict[str, dict[str, str]] = {}  # strategy -> metric -> column
    for col in rows[0]:
        strategy = re.fullmatch(r"metrics/eval/(.+)\.json:(\w+)", col)
        if strategy:
            by_file.setdefault(strategy[1], {})[strategy[2]] = col
    known = {m for names in DEFAULT_COMPARE.values() for m in names}
    if not by_file:  # one metrics file: DVC shortens its columns to the bare names
        by_file[""] = {col: col for col in rows[0] if col in known}
    picked: list[tuple[str, str]] = []
    for strategy, cols in by_file.items():
        shown = set(metrics) if metrics else _headline(set(cols))
        picked += [(col, f"{strategy} {m}".strip()) for m, col in cols.items() if m in shown]
    picked += [(col, f"verify {col.removeprefix('metrics/verify.json:')}") for col in rows[0]
               if col.removeprefix("metrics/verify.json:") in EXPS_VERIFY]
    picked += [(col, col) for col in rows[0]
               if col in params and len({r.get(col, "") for r in rows}) > 1]
    return picked


def exps_table(rows: list[dict[str, str]], params: set[str],
               metrics: tuple[str, ...] | None = None) -> list[list[str]]:
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
        The metrics shown per strategy; None: each task kind's (quality, fairness) pair
        (:data:`facebalance.choices.GUARD_METRICS`: ap and deo for a binary task).

    Returns
    -------
    list of rows
        The first row names the experiments; each further row is a label and one cell per
        experiment.
    """
    if not rows:
        return []
    table = [["", *[r["Experiment"] or r["rev"] for r in rows]]]
    table += [[label, *[_fmt_cell(r.get(col)) for r in rows]]
              for col, label in _picked(rows, params, metrics)]
    return table


def exps_csv(rows: list[dict[str, str]], params: set[str],
             metrics: tuple[str, ...] | None = None) -> list[list[str]]:
    """``dvc exp show --csv`` cut to the columns of :func:`exps_table`, in DVC's own shape
    (one row per experiment, DVC's column names and values), for a spreadsheet or a script.

    Parameters
    ----------
    rows, params, metrics
        As :func:`exps_table`.

    Returns
    -------
    list of rows
        The header (DVC's experiment columns, then the picked ones), then one row per
        experiment; empty when there are no rows.
    """
    if not rows:
        return []
    cols = [c for c in EXPS_ID_COLUMNS if c in rows[0]]
    cols += [col for col, _ in _picked(rows, params, metrics)]
    return [cols, *[[r.get(c) or "" for c in cols] for r in rows]]
