"""complement: build z/z' pairs, generate and score G(z'), report flip rates, draw pairs."""

import logging
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.balance.strategies import auto_n_pairs, budget_pairs
from facebalance.config import from_params, load_params
from facebalance.data.shards import atomic_directory, shard_refs
from facebalance.figures import save_rows
from facebalance.latent.boundaries import read_boundaries, read_group_boundaries
from facebalance.latent.pairs import PairSpec, make_pairs, rarest_cell, read_pool
from facebalance.latent.sampling import read_latent_arrays
from facebalance.models.classifier import load_attribute_classifiers
from facebalance.models.gan import generate_uint8, load_generator
from facebalance.runtime import derive_seed, run_app, setup, write_json

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
    c = p.complement
    gen = load_generator(generator, device, latent_dim=p.gan.latent_dim)
    models = load_attribute_classifiers(attr_models, device)
    target, protected = read_boundaries(boundaries)
    by_group = read_group_boundaries(boundaries) if p.boundaries.domain_dependent else None
    n_real = len(shard_refs(data / "train", ["id"]))
    a = p.augment
    n_pairs = c.n_pairs or auto_n_pairs(n_real, a.synthetic_share, a.synthetic_weight)
    need = budget_pairs(n_real, a.synthetic_share, a.synthetic_weight)
    if c.n_pairs and c.n_pairs < need:
        logging.getLogger("complement").warning(
            "complement.n_pairs = %d is below the %d pairs augment.synthetic_share = %g of "
            "%d real images needs; the GAN strategies will train on less (0: auto)",
            c.n_pairs, need, a.synthetic_share, n_real)
    spec = from_params(PairSpec, c, n_pairs=n_pairs, seed=derive_seed(p.base.seed, 7))
    pool = rare = None
    if c.selection == "all" and c.min_distance == 0:
        pool = read_pool(latents, scores, p.boundaries.n_fit + p.boundaries.n_val)
    elif c.selection == "targeted":
        t, g = p.dataset.target, p.dataset.protected
        train = shard_refs(data / "train", [t, g])
        rare = rarest_cell(train[t].to_numpy(), train[g].to_numpy())
    with atomic_directory(out) as tmp:  # the pair set appears whole or not at all
        report = make_pairs(gen, models, target, protected, spec, tmp, device=device,
                            pool=pool, rare_cell=rare, target_by_group=by_group)
        # Figure: 16 pairs, G(z) above G(z'), drawn before any output is replaced.
        _, pair_z = read_latent_arrays(tmp / "pairs.parquet", ("z", "z_prime"))
        z, zp = pair_z["z"], pair_z["z_prime"]
        pick = np.random.default_rng(0).choice(len(z), size=min(16, len(z)), replace=False)
        rows = [generate_uint8(gen, torch.from_numpy(z[pick]).to(device)),
                generate_uint8(gen, torch.from_numpy(zp[pick]).to(device))]
    report["rare_cell"] = list(rare) if rare else None
    write_json(metrics, report)
    save_rows(rows, figure, p.base.image_size)


if __name__ == "__main__":
    run_app(app)
