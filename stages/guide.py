"""guide: guided group directions; walk fresh latents into each under-represented group
(:mod:`facebalance.latent.guided`)."""

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.data.shards import atomic_directory
from facebalance.figures import save_rows
from facebalance.latent.guided import guided_faces
from facebalance.models.classifier import load_attribute_classifiers
from facebalance.models.gan import load_generator
from facebalance.runtime import derive_seed, run_app, setup, write_json
from facebalance.task import group_ids, read_task

app = typer.Typer(add_completion=False)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (train/: the group sizes)")],
    generator: Annotated[Path, typer.Option(help="generator checkpoint")],
    attr_models: Annotated[Path, typer.Option(
        help="directory with target.pt (labels the images) and protected.pt (the groups)")],
    out: Annotated[Path, typer.Option(help="directory to write: guided.parquet, images/")],
    metrics: Annotated[Path, typer.Option(help="per-group hit rates JSON")],
    figure: Annotated[Path, typer.Option(help="PNG: guided samples, one row per group")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Fit one latent direction per group and generate until the groups balance."""
    p = load_params(params)
    device = setup(p.base)
    g = p.guided
    gen = load_generator(generator, device, latent_dim=p.gan.latent_dim)
    train, task = read_task(p, data / "train")
    counts = np.bincount(group_ids(task, train), minlength=task.n_groups)
    models = load_attribute_classifiers(attr_models, device, protected_groups=task.n_groups)
    with atomic_directory(out) as tmp:  # images and their table appear together
        report, rows = guided_faces(
            gen, models, counts, task.group_names(), tmp, to=g.to, n_fit=g.n_fit, c=g.c,
            step=g.step, max_steps=g.max_steps, walk_batch_size=g.batch_size,
            batch_size=p.sample.batch_size, device=device,
            seeds=(derive_seed(p.base.seed, 14), derive_seed(p.base.seed, 15),
                   derive_seed(p.base.seed, 16)))
    write_json(metrics, report)
    save_rows(rows, figure, p.base.image_size)


if __name__ == "__main__":
    run_app(app)
