"""compare: every evaluated strategy side by side (markdown, CSV and a bar chart)."""

import logging
from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.choices import GUARD_METRICS
from facebalance.config import load_params
from facebalance.data.shards import atomic_write_bytes
from facebalance.metrics.compare import comparison_frame, plot_comparison, to_markdown
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
from facebalance.results import load_reports, read_score_tables
from facebalance.runtime import run_app, write_json

app = typer.Typer(add_completion=False)
log = logging.getLogger("facebalance.compare")


@app.command()
def main(
    reports_dir: Annotated[Path, typer.Option(help="directory of <strategy>.json reports")],
    table: Annotated[Path, typer.Option(help="markdown table to write")],
    csv: Annotated[Path, typer.Option(help="long-format CSV to write")],
    figure: Annotated[Path, typer.Option(help="PNG bar chart to write")],
    scores_dir: Annotated[Path, typer.Option(help="directory of <strategy>.parquet scores")],
    paired: Annotated[Path, typer.Option(help="paired-difference metrics JSON to write")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Compare the strategies listed in params."""
    p = load_params(params)
    reports = load_reports({s: reports_dir / f"{s}.json" for s in p.strategies})
    metrics = p.compare.metrics or default_metrics(reports[p.strategies[0]])
    frame = comparison_frame(reports, metrics)
    markdown = to_markdown(frame)
    tables = read_score_tables(scores_dir, p.strategies)  # each file read once
    diffs = compare_paired(tables, reports, p.strategies, p.compare.references, metrics,
                           n_bootstrap=p.evaluate.bootstrap, seed=p.base.seed)
    if len(diffs):
        markdown += "\n" + paired_markdown(diffs)
    # Validation guard: every strategy against the baseline on val, where a user would look
    # before trusting a strategy (test stays untouched for the final numbers).
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
    png = plot_comparison(frame)  # everything computed before the first output is replaced
    write_json(paired, {**(paired_json(diffs) if len(diffs) else {}),
                        **({"val_guard": guard} if guard else {})})
    atomic_write_bytes(table, markdown.encode())
    atomic_write_bytes(csv, frame.to_csv(index=False).encode())
    atomic_write_bytes(figure, png)
    print(markdown)


if __name__ == "__main__":
    run_app(app)
