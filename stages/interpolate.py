"""interpolate: latent SMOTE and its pixel-space control for every cell below the mean size."""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.shards import atomic_directory
from facebalance.figures import save_rows
from facebalance.latent.interpolate import interpolate_cells
from facebalance.latent.invert import train_positions
from facebalance.latent.sampling import read_latents
from facebalance.models.gan import load_generator
from facebalance.runtime import derive_seed, run_app, setup, write_json
from facebalance.task import read_task, task_labels

app = typer.Typer(add_completion=False)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (train/)")],
    latents: Annotated[Path, typer.Option(help="inverted latents (the invert stage)")],
    generator: Annotated[Path, typer.Option(help="generator checkpoint")],
    out: Annotated[Path, typer.Option(
        help="directory to write: plan.parquet, latent/ and pixel/ image shards")],
    metrics: Annotated[Path, typer.Option(help="cell sizes before and after, JSON")],
    figure: Annotated[Path, typer.Option(help="PNG: a, b, latent mix, pixel mix")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Plan the interpolations, generate the latent mixes and write the pixel mixes."""
    p = load_params(params)
    device = setup(p.base)
    train, task = read_task(p, data / "train")
    frame, z = read_latents(latents)
    pos = train_positions(frame, train["id"], latents)
    gen = load_generator(generator, device, latent_dim=p.gan.latent_dim)
    with atomic_directory(out) as tmp:  # plan and both image sets appear together
        report, rows = interpolate_cells(
            gen, train, task_labels(task, train), z[pos], task, tmp,
            seed=derive_seed(p.base.seed, 13), contribution=p.interpolate.contribution,
            batch_size=p.interpolate.batch_size, device=device)
    write_json(metrics, report)
    save_rows(rows, figure, p.base.image_size)


if __name__ == "__main__":
    run_app(app)
