"""Reading ``evaluate``'s outputs for ``compare``: the reports and the score tables.

``metrics/`` holds array functions only; the files they are computed from are read here,
each one once, with errors that name the file and the stage that writes it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from facebalance.data.shards import read_parquet
from facebalance.errors import FacebalanceError


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
