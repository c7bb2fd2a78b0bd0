"""evaluate: fairness and accuracy metrics of a strategy's models on the test split."""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.shards import atomic_write_bytes, write_table_atomic
from facebalance.metrics.report import headline_metrics
from facebalance.models.evaluate import evaluation_gallery, strategy_report
from facebalance.runtime import run_app, setup, write_json

app = typer.Typer(add_completion=False)


@app.command()
def main(
    strategy: Annotated[str, typer.Option(help="balancing strategy")],
    data: Annotated[Path, typer.Option(help="prepared shards (train/, val/, test/)")],
    models: Annotated[Path, typer.Option(help="directory of seed<N>.pt checkpoints")],
    metrics: Annotated[Path, typer.Option(help="headline metrics JSON (DVC metrics)")],
    report: Annotated[Path, typer.Option(help="full report JSON: intervals, seeds, groups")],
    scores: Annotated[Path, typer.Option(help="per-image test scores (Parquet) to write")],
    gallery: Annotated[Path | None, typer.Option(
        help="PNG of each group's most confident test mistakes (first seed)")] = None,
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Score val/test with every seed's model; write the report and its headline."""
    p = load_params(params)
    device = setup(p.base)
    full, table = strategy_report(p, strategy, data, models, device)
    png = (evaluation_gallery(data, full, table, p.train_target.seeds[0])
           if gallery is not None else None)  # computed before any output is replaced
    write_table_atomic(table, scores)
    write_json(report, full)
    write_json(metrics, headline_metrics(full))
    if png is not None:
        atomic_write_bytes(gallery, png)


if __name__ == "__main__":
    run_app(app)
