"""compare: every evaluated strategy side by side (markdown, CSV and a bar chart)."""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.shards import atomic_write_bytes
from facebalance.metrics.compare import plot_comparison
from facebalance.results import compare_strategies
from facebalance.runtime import run_app, write_json

app = typer.Typer(add_completion=False)


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
    comparison = compare_strategies(p, reports_dir, scores_dir)
    png = plot_comparison(comparison.frame)  # everything computed before any output is replaced
    write_json(paired, comparison.paired)
    atomic_write_bytes(table, comparison.markdown.encode())
    atomic_write_bytes(csv, comparison.frame.to_csv(index=False).encode())
    atomic_write_bytes(figure, png)
    print(comparison.markdown)


if __name__ == "__main__":
    run_app(app)
