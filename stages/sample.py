"""sample: draw sample.n latents from base.seed and generate their images as shards."""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.config import load_params
from facebalance.latent.sampling import (
    generate_shards,
    latents_table,
    sample_prior,
    write_latents,
)
from facebalance.models.gan import load_generator
from facebalance.runtime import derive_seed, run_app, setup

app = typer.Typer(add_completion=False)


@app.command()
def main(
    generator: Annotated[Path, typer.Option(help="generator checkpoint")],
    latents: Annotated[Path, typer.Option(help="latents Parquet to write")],
    images: Annotated[Path, typer.Option(help="image shard directory to write")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Sample latents and stream G(z) to shards."""
    p = load_params(params)
    device = setup(p.base)
    gen = load_generator(generator, device, latent_dim=p.gan.latent_dim)
    seed = derive_seed(p.base.seed, 5)
    z = sample_prior(gen, p.sample.n, seed)
    ids = [f"gen-{i:07d}" for i in range(len(z))]
    # The heavy generation first: a failure in it leaves both outputs as they were.
    generate_shards(gen, z, ids, images, device=device, batch_size=p.sample.batch_size)
    write_latents(latents, latents_table(ids, z, seed))


if __name__ == "__main__":
    run_app(app)
