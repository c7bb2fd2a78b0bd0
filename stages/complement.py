"""complement: build z/z' pairs, generate and score G(z'), report flip rates, draw pairs."""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.shards import atomic_directory, atomic_write_bytes
from facebalance.figures import rows_png
from facebalance.latent.pairs import build_pair_set, pair_figure_rows
from facebalance.models.classifier import load_attribute_classifiers
from facebalance.models.gan import load_generator
from facebalance.runtime import run_app, setup, write_json

app = typer.Typer(add_completion=False)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (train/: its size sets the "
                                             "budget, its labels the rarest cell)")],
    generator: Annotated[Path, typer.Option(help="generator checkpoint")],
    attr_models: Annotated[Path, typer.Option(help="directory with target.pt, protected.pt")],
    boundaries: Annotated[Path, typer.Option(help="boundaries JSON")],
    latents: Annotated[Path, typer.Option(help="sampled latents (the pair pool)")],
    scores: Annotated[Path, typer.Option(help="scores of the sampled images")],
    out: Annotated[Path, typer.Option(help="pair set directory to write")],
    metrics: Annotated[Path, typer.Option(help="pair metrics JSON")],
    figure: Annotated[Path, typer.Option(help="PNG of z / z' pairs side by side")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Complement latents and write the pair set."""
    p = load_params(params)
    device = setup(p.base)
    gen = load_generator(generator, device, latent_dim=p.gan.latent_dim)
    models = load_attribute_classifiers(attr_models, device)
    with atomic_directory(out) as tmp:  # the pair set appears whole or not at all
        report = build_pair_set(p, gen, models, boundaries, latents, scores, data / "train",
                                tmp, device)
        # Drawn before any output is replaced.
        png = rows_png(pair_figure_rows(gen, tmp / "pairs.parquet", device), p.base.image_size)
    write_json(metrics, report)
    atomic_write_bytes(figure, png)


if __name__ == "__main__":
    run_app(app)
