"""complement_real: z' of inverted real training images (the z/z' paper's extension).

Each chosen real face's partner ``G(z')`` is the same face with the protected attribute
mirrored, labelled with the real face's own target label
(:mod:`facebalance.latent.real_pairs`).
"""

from pathlib import Path
from typing import Annotated

import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.balance.strategies import budget_pairs
from facebalance.config import load_params
from facebalance.data.shards import atomic_directory, shard_refs
from facebalance.figures import save_rows
from facebalance.latent.boundaries import read_boundaries, read_group_boundaries
from facebalance.latent.invert import train_positions
from facebalance.latent.real_pairs import choose_real, complement_real_faces
from facebalance.latent.sampling import read_latents
from facebalance.models.classifier import load_attribute_classifiers
from facebalance.models.gan import load_generator
from facebalance.runtime import derive_seed, run_app, setup, write_json

app = typer.Typer(add_completion=False)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (train/)")],
    latents: Annotated[Path, typer.Option(help="inverted latents (the invert stage)")],
    generator: Annotated[Path, typer.Option(help="generator checkpoint")],
    attr_models: Annotated[Path, typer.Option(help="directory with target.pt, protected.pt")],
    boundaries: Annotated[Path, typer.Option(help="boundaries JSON")],
    out: Annotated[Path, typer.Option(help="directory to write: partners.parquet, images/")],
    metrics: Annotated[Path, typer.Option(help="flip and keep rates JSON")],
    figure: Annotated[Path, typer.Option(help="PNG: real, G(z), G(z') rows")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Complement the latents of real training images and generate their partners."""
    p = load_params(params)
    device = setup(p.base)
    c, a = p.complement, p.augment
    t, g = p.dataset.target, p.dataset.protected
    train = shard_refs(data / "train", ["id", t, g])
    frame, z_all = read_latents(latents)
    pos = train_positions(frame, train["id"], latents)
    # One partner per chosen real image: the synthetic_share budget in images (a pair of
    # the sampled version is two images; here the real face is the other half).
    seed = derive_seed(p.base.seed, 17)
    chosen = choose_real(len(train), 2 * budget_pairs(len(train), a.synthetic_share,
                                                      a.synthetic_weight), seed)
    target_b, protected_b = read_boundaries(boundaries)
    by_group = read_group_boundaries(boundaries) if p.boundaries.domain_dependent else None
    gen = load_generator(generator, device, latent_dim=p.gan.latent_dim)
    models = load_attribute_classifiers(attr_models, device)
    with atomic_directory(out) as tmp:  # partners and their table appear together
        report, rows = complement_real_faces(
            gen, models, train.iloc[chosen].reset_index(drop=True), z_all[pos[chosen]],
            target_b, protected_b, tmp, label=t, group=g, seed=seed, mode=c.mode,
            shell=c.shell, max_step=c.max_step, batch_size=c.batch_size, device=device,
            target_by_group=by_group)
    write_json(metrics, {"n_real": len(train), **report})
    save_rows(rows, figure, p.base.image_size)


if __name__ == "__main__":
    run_app(app)
