"""prepare: write the train/val/test image shards of the dataset named in params."""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.prepare import prepare_from_params
from facebalance.runtime import run_app, setup, write_json

app = typer.Typer(add_completion=False)


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="directory for train/, val/, test/ shards")],
    summary: Annotated[Path, typer.Option(help="JSON with per-split cell counts")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Render or convert the dataset into Parquet image shards."""
    p = load_params(params)
    device = setup(p.base)
    result = prepare_from_params(p, out, device=str(device))
    write_json(summary, result)


if __name__ == "__main__":
    run_app(app)
