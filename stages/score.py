"""score: label generated images with the target and protected attribute classifiers."""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.shards import write_table_atomic
from facebalance.latent.sampling import score_shards_by_name
from facebalance.models.classifier import load_attribute_classifiers
from facebalance.runtime import run_app, setup

app = typer.Typer(add_completion=False)


@app.command()
def main(
    images: Annotated[Path, typer.Option(help="generated image shards")],
    attr_models: Annotated[Path, typer.Option(help="directory with target.pt, protected.pt")],
    out: Annotated[Path, typer.Option(help="scores Parquet to write")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Write id, target and protected scores (probabilities) of every generated image."""
    p = load_params(params)
    device = setup(p.base)
    models = load_attribute_classifiers(attr_models, device)
    scores = score_shards_by_name(models, images, device, p.sample.batch_size)
    write_table_atomic(scores, out)


if __name__ == "__main__":
    run_app(app)
