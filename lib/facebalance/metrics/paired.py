"""Paired comparison of strategies: differences on the same test resamples.

Every strategy is scored on the same test images, so the question "does A beat B?" is
answered more sharply by bootstrapping the *difference* ``metric(A) - metric(B)`` on shared
resamples than by comparing two separate intervals: sampling noise of the test set that
hits both strategies alike cancels. Each strategy's value is its seed mean, as in the
per-strategy reports, with the same calibrated thresholds (from validation); the training
seeds are resampled as well, so seed-to-seed noise stays in the intervals.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from facebalance.errors import FacebalanceError
from facebalance.metrics.bootstrap import bootstrap_weights
from facebalance.metrics.compare import label, lower_is_better
from facebalance.metrics.report import available_metrics, score_metrics, task_metrics
from facebalance.task import TaskSpec

log = logging.getLogger(__name__)

#: Binary metrics that need only labels, groups and scores (BA and KL need more context).
PAIRED_METRICS = ("ap", "accuracy", "deo", "dp_diff", "eo_diff", "group_acc_std")


def paired_metrics(task: TaskSpec) -> tuple[str, ...]:
    """Metrics :func:`paired_differences` computes for a task: every metric of a
    multi-class, multitask or regression task; :data:`PAIRED_METRICS` of a binary one."""
    return PAIRED_METRICS if task.kind == "binary" else available_metrics(task)


def seed_mean_replicates(table: pd.DataFrame, thresholds: Mapping[str, float], *,
                         task: TaskSpec, weights: np.ndarray,
                         metrics: Sequence[str] = PAIRED_METRICS,
                         seed_draws: int | Sequence[int] = 0) -> dict[str, np.ndarray]:
    """Seed-mean metrics on the full test set (row 0) and on each resample (rows 1..B).

    Resample b weights the test images by ``weights[b - 1]`` and averages over seeds drawn
    with replacement (a two-level bootstrap: test images and training runs).

    Parameters
    ----------
    table
        Test predictions as ``evaluate`` writes them: ``id``, ``label``, ``group`` and one
        ``score_seed<N>`` (binary) or ``pred_seed<N>`` column per seed.
    thresholds
        ``seed<N>`` -> calibrated threshold (the ``threshold`` entry of a binary report).
    task
        The models' task (the ``task`` entry of the report).
    weights
        ``(B, n)`` bootstrap count weights.
    metrics
        Names from :data:`PAIRED_METRICS`.
    seed_draws
        Seed of the training-seed draws: one per strategy (their runs are independent),
        derived from its name so that adding a strategy leaves the others' draws as they
        were.
    """
    prefix = "score_" if task.kind == "binary" else "pred_"
    seeds = [c.removeprefix(prefix) for c in table.columns if c.startswith(f"{prefix}seed")]
    if not seeds:
        raise FacebalanceError(f"paired: the scores table has no {prefix}seed<N> column")
    w = np.vstack([np.ones((1, len(table))), weights])
    per_seed = []
    if task.kind == "binary":
        missing = [s for s in seeds if s not in thresholds]
        if missing:
            raise FacebalanceError(f"paired: no calibrated threshold for {', '.join(missing)}")
        y, g = table["label"].to_numpy(), table["group"].to_numpy()
        for s in seeds:
            scores = table[f"score_{s}"].to_numpy()
            pred = (scores >= thresholds[s]).astype(np.int8)
            per_seed.append(score_metrics(y, g, scores, pred, w, metrics))
    else:
        per_seed = [task_metrics(task, table, s, w, metrics) for s in seeds]
    # Resample the training seeds too (with replacement, one draw per test resample), so the
    # intervals hold seed-to-seed noise as well as test-set noise.
    rng = np.random.default_rng(seed_draws)
    picks = rng.integers(0, len(seeds), size=(len(w) - 1, len(seeds)))
    out = {}
    for m in metrics:
        values = np.stack([p[m] for p in per_seed])  # (n_seeds, B + 1)
        boot = values[picks, np.arange(1, len(w))[:, None]].mean(axis=1)
        out[m] = np.concatenate([[values[:, 0].mean()], boot])
    return out


def paired_differences(tables: Mapping[str, pd.DataFrame],
                       thresholds: Mapping[str, Mapping[str, float]], *, task: TaskSpec,
                       references: Sequence[str],
                       metrics: Sequence[str] = PAIRED_METRICS, n_bootstrap: int = 500,
                       seed: int = 0) -> pd.DataFrame:
    """Differences of every strategy against each reference, with paired 95% intervals.

    Returns
    -------
    pandas.DataFrame
        One row per (strategy, reference, metric): ``diff`` (full test set, seed means),
        ``lo`` and ``hi`` (2.5 / 97.5 percentiles over shared resamples), ``p_better``
        (share of resamples in which the strategy is better than the reference) and
        ``reference_value`` (the reference's seed mean).

    Raises
    ------
    FacebalanceError
        When the strategies were not scored on the same test images in the same order.
    """
    names = list(tables)
    ids = tables[names[0]]["id"].to_numpy()
    for name in names[1:]:
        if not np.array_equal(tables[name]["id"].to_numpy(), ids):
            raise FacebalanceError(
                f"paired: {name!r} and {names[0]!r} were scored on different test images; "
                "rerun evaluate for both")
    weights = bootstrap_weights(len(ids), n_bootstrap, seed)
    reps = {n: seed_mean_replicates(tables[n], thresholds[n], task=task, weights=weights,
                                    metrics=metrics,
                                    seed_draws=[seed, zlib.crc32(n.encode())])
            for n in names}
    rows = []
    for ref in references:
        for name in names:
            if name == ref:
                continue
            for m in metrics:
                d = reps[name][m] - reps[ref][m]
                lo, hi = np.nanpercentile(d[1:], [2.5, 97.5])
                better = d[1:] < 0 if lower_is_better(m) else d[1:] > 0
                rows.append({"strategy": name, "reference": ref, "metric": m,
                             "diff": float(d[0]), "lo": float(lo), "hi": float(hi),
                             "p_better": float(better.mean()),
                             "reference_value": float(reps[ref][m][0])})
    return pd.DataFrame(rows)


def split_rows(table: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of one split of an ``evaluate`` scores table (tables written before val rows
    were added hold test rows only)."""
    if "split" not in table.columns:
        if split != "test":
            raise FacebalanceError(
                f"paired: the scores table has no {split} rows; rerun evaluate")
        return table
    return table[table["split"] == split].drop(columns="split").reset_index(drop=True)


def compare_paired(tables: Mapping[str, pd.DataFrame],
                   reports: Mapping[str, Mapping[str, Any]], strategies: Sequence[str],
                   references: Sequence[str], metrics: Sequence[str], *,
                   n_bootstrap: int = 500, seed: int = 0, split: str = "test") -> pd.DataFrame:
    """:func:`paired_differences` from ``evaluate``'s outputs.

    ``tables`` are the strategies' score tables (val and test rows; the rows of ``split``
    are used), ``reports`` their reports (task, and thresholds calibrated on val, for
    either split). References that are not among ``strategies`` are skipped with a
    warning; metrics that need more than predictions (BA, KL) are left out. Returns an
    empty frame when nothing is to compare.
    """
    refs = [r for r in references if r in strategies]
    for r in references:
        if r not in refs:
            log.warning("compare: reference %r is not in strategies; no differences against "
                        "it", r)
    task = report_task(reports, strategies)
    metrics = [m for m in metrics if m in paired_metrics(task)]
    if not refs or not metrics or len(strategies) < 2:
        return pd.DataFrame()
    missing = [s for s in strategies if s not in tables]
    if missing:
        raise FacebalanceError(f"compare: no scores table for {', '.join(missing)}; run "
                               "evaluate")
    rows = {s: split_rows(tables[s], split) for s in strategies}
    thresholds = {s: reports[s].get("threshold", {}) for s in strategies}
    return paired_differences(rows, thresholds, task=task, references=refs,
                              metrics=metrics, n_bootstrap=n_bootstrap, seed=seed)


def report_task(reports: Mapping[str, Mapping[str, Any]], strategies: Sequence[str]
                ) -> TaskSpec:
    """The task all strategies' reports were evaluated for (they must agree)."""
    tasks = {s: TaskSpec.from_dict(reports[s]["task"]) if "task" in reports[s] else None
             for s in strategies}
    missing = [s for s, t in tasks.items() if t is None]
    if missing:
        raise FacebalanceError(
            f"compare: the metrics of {', '.join(missing)} record no task; rerun evaluate")
    first = tasks[strategies[0]]
    for s, t in tasks.items():
        if t.kind != first.kind or [h.column for h in t.heads] != [
                h.column for h in first.heads]:
            raise FacebalanceError(
                f"compare: {s!r} was evaluated for another task than {strategies[0]!r}; "
                "rerun evaluate for every strategy")
    return first


def _signed(value: float) -> str:
    """``+0.012``; an undefined difference as ``n/a``, never ``nan``."""
    return f"{value:+.3f}" if np.isfinite(value) else "n/a"


def _interval(rows: pd.DataFrame, metric: str) -> str:
    """A table cell ``diff [lo, hi]`` of one metric (``rows`` indexed by metric)."""
    return (f"{_signed(rows.at[metric, 'diff'])} [{_signed(rows.at[metric, 'lo'])}, "
            f"{_signed(rows.at[metric, 'hi'])}]")


def paired_markdown(frame: pd.DataFrame) -> str:
    """One markdown table per reference: ``diff [lo, hi]`` per metric, and a legend."""
    parts = []
    for ref, rows in frame.groupby("reference", sort=False):
        metrics = list(dict.fromkeys(rows["metric"]))
        lines = [f"Paired differences against `{ref}` (same test resamples):", "",
                 "| strategy | " + " | ".join(f"Δ{label(m)}" for m in metrics) + " |",
                 "|" + "---|" * (len(metrics) + 1)]
        for name, r in rows.groupby("strategy", sort=False):
            r = r.set_index("metric")
            lines.append(f"| {name} | " + " | ".join(_interval(r, m) for m in metrics) + " |")
        parts.append("\n".join(lines))
    legend = ("Δ = strategy − reference on the full test set (seed means) [95% interval of a "
              "two-level bootstrap: test images resampled alike for both strategies, "
              "training seeds drawn with replacement]; an interval that excludes 0 is a "
              "difference beyond test-set and seed noise.")
    return "\n\n".join(parts) + "\n\n" + legend + "\n"


def paired_json(frame: pd.DataFrame) -> dict:
    """``{"<strategy>-vs-<reference>": {metric: {"diff", "ci95", "p_better"}}}``."""
    out: dict = {}
    for r in frame.itertuples():
        out.setdefault(f"{r.strategy}-vs-{r.reference}", {})[r.metric] = {
            "diff": r.diff, "ci95": {"lo": r.lo, "hi": r.hi}, "p_better": r.p_better}
    return out


def guard_verdicts(diffs: pd.DataFrame, quality: str, fairness: str,
                   tolerance: float = 0.01) -> pd.DataFrame:
    """Which strategies are worse than the reference on validation, and why.

    A strategy is flagged when, beyond noise (the whole 95% paired interval on the harmful
    side), its ``fairness`` metric is worse than the reference's at all, or its ``quality``
    metric is worse by more than ``tolerance`` of the reference's value (0.01 of an AP of
    0.95 is about one AP point).

    Parameters
    ----------
    diffs
        :func:`paired_differences` rows on the val split against one reference.
    quality, fairness
        The metric names judged (e.g. ``ap`` and ``deo``).
    tolerance
        Allowed relative loss of ``quality``.

    Returns
    -------
    pandas.DataFrame
        One row per strategy: ``strategy``, ``flagged`` and ``reasons`` (a string).
    """
    rows = []
    for name, r in diffs.groupby("strategy", sort=False):
        r = r.set_index("metric")
        reasons = []
        if fairness in r.index:
            worse_fair = (r.at[fairness, "lo"] > 0 if lower_is_better(fairness)
                          else r.at[fairness, "hi"] < 0)
            if worse_fair:
                reasons.append(f"{label(fairness)} worse")
        if quality in r.index:
            allowed = tolerance * abs(r.at[quality, "reference_value"])
            worse_q = (r.at[quality, "lo"] > allowed if lower_is_better(quality)
                       else r.at[quality, "hi"] < -allowed)
            if worse_q:
                reasons.append(f"{label(quality)} more than {tolerance:.0%} worse")
        rows.append({"strategy": name, "flagged": bool(reasons),
                     "reasons": ", ".join(reasons)})
    return pd.DataFrame(rows, columns=["strategy", "flagged", "reasons"])


def guard_markdown(diffs: pd.DataFrame, verdicts: pd.DataFrame, reference: str,
                   tolerance: float) -> str:
    """The validation guard section of ``compare.md``."""
    metrics = list(dict.fromkeys(diffs["metric"]))
    lines = [f"Validation guard (val split, paired against `{reference}`):", "",
             "| strategy | " + " | ".join(f"Δ{label(m)} (val)" for m in metrics)
             + " | guard |", "|" + "---|" * (len(metrics) + 2)]
    verdict = verdicts.set_index("strategy")
    for name, r in diffs.groupby("strategy", sort=False):
        r = r.set_index("metric")
        flag = (f"**worse than {reference}: {verdict.at[name, 'reasons']}**"
                if verdict.at[name, "flagged"] else "ok")
        lines.append(f"| {name} | " + " | ".join(_interval(r, m) for m in metrics)
                     + f" | {flag} |")
    legend = (f"A strategy is flagged when on validation, beyond noise, its fairness metric "
              f"is worse than `{reference}`'s or its quality metric is more than "
              f"{tolerance:.0%} worse (compare.guard_tolerance): do not trust its test "
              "numbers over the reference's without looking at why.")
    return "\n".join(lines) + "\n\n" + legend + "\n"


def guard_json(diffs: pd.DataFrame, verdicts: pd.DataFrame) -> dict:
    """``{strategy: {"flagged", "reasons", metric: {"diff", "ci95"}}}`` for paired.json."""
    out: dict = {}
    for v in verdicts.itertuples():
        out[v.strategy] = {"flagged": bool(v.flagged), "reasons": v.reasons}
    for r in diffs.itertuples():
        out[r.strategy][r.metric] = {"diff": r.diff, "ci95": {"lo": r.lo, "hi": r.hi}}
    return out
