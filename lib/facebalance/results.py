"""``compare``: evaluate's reports and score tables read (each once), then every strategy
side by side (:func:`compare_strategies`).

``metrics/`` holds array functions only; the files they are computed from are read here,
each one once, with errors that name the file and the stage that writes it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from facebalance.choices import GUARD_METRICS
from facebalance.config import Params
from facebalance.data.shards import read_parquet
from facebalance.errors import FacebalanceError
from facebalance.metrics.compare import comparison_frame, to_markdown
from facebalance.metrics.paired import (
    compare_paired,
    guard_json,
    guard_markdown,
    guard_verdicts,
    paired_json,
    paired_markdown,
    report_task,
)
from facebalance.metrics.report import default_metrics

log = logging.getLogger("facebalance.compare")


def load_reports(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Read each strategy's report JSON (``metrics/reports/<s>.json``), naming a missing or
    malformed file."""
    reports = {}
    for name, path in paths.items():
        try:
            reports[name] = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise FacebalanceError(
                f"compare: {path} is missing; is {name!r} in params 'strategies' and "
                "evaluated?") from None
        except json.JSONDecodeError as err:
            raise FacebalanceError(f"compare: {path} is not valid JSON: {err}") from None
    return reports


def read_score_tables(scores_dir: str | Path, strategies: Sequence[str]
                      ) -> dict[str, pd.DataFrame]:
    """Each strategy's scores table (``data/scores/<s>.parquet``: val and test rows)."""
    tables = {}
    for s in strategies:
        path = Path(scores_dir) / f"{s}.parquet"
        if not path.is_file():
            raise FacebalanceError(f"compare: {path} is missing; run evaluate@{s}")
        tables[s] = read_parquet(path)
    return tables


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` writes: the long-format metrics, the markdown (table, paired
    differences, validation guard) and the paired-difference JSON."""

    frame: pd.DataFrame
    markdown: str
    paired: dict[str, Any]


def compare_strategies(p: Params, reports_dir: str | Path, scores_dir: str | Path
                       ) -> Comparison:
    """Every strategy of ``p.strategies`` side by side, with paired differences against
    ``compare.references`` on test and the validation guard (each strategy against the
    baseline on val, where a user would look before trusting it; test stays untouched for
    the final numbers). A strategy the guard flags is logged."""
    reports = load_reports({s: Path(reports_dir) / f"{s}.json" for s in p.strategies})
    metrics = p.compare.metrics or default_metrics(reports[p.strategies[0]])
    frame = comparison_frame(reports, metrics)
    markdown = to_markdown(frame)
    tables = read_score_tables(scores_dir, p.strategies)  # each file read once
    diffs = compare_paired(tables, reports, p.strategies, p.compare.references, metrics,
                           n_bootstrap=p.evaluate.bootstrap, seed=p.base.seed)
    if len(diffs):
        markdown += "\n" + paired_markdown(diffs)
    guard: dict = {}
    if "baseline" in p.strategies and len(p.strategies) > 1:
        pair = GUARD_METRICS[report_task(reports, p.strategies).kind]
        val = compare_paired(tables, reports, p.strategies, ["baseline"], pair,
                             n_bootstrap=p.evaluate.bootstrap, seed=p.base.seed, split="val")
        verdicts = guard_verdicts(val, *pair, tolerance=p.compare.guard_tolerance)
        markdown += "\n" + guard_markdown(val, verdicts, "baseline", p.compare.guard_tolerance)
        guard = guard_json(val, verdicts)
        for r in verdicts[verdicts["flagged"]].itertuples():
            log.warning("compare: %s is worse than baseline on validation (%s)", r.strategy,
                        r.reasons)
    return Comparison(frame, markdown, {**(paired_json(diffs) if len(diffs) else {}),
                                        **({"val_guard": guard} if guard else {})})
