"""train_gan: train the DCGAN on the real train split (or adopt a pretrained generator)."""

from pathlib import Path
from typing import Annotated

import pandas as pd
import torch
import typer

import _checkout  # noqa: F401  (this checkout's lib/, not the installed one)
from facebalance.balance.strategies import gan_stream
from facebalance.config import as_dict, from_params, load_params
from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import atomic_write_bytes, shard_refs
from facebalance.distributed import start
from facebalance.errors import FacebalanceError
from facebalance.figures import save_rows
from facebalance.models.gan import (
    GanConfig,
    GanTrainConfig,
    generate_uint8,
    load_generator,
    prior_latents,
    save_generator,
    train_gan,
)
from facebalance.precision import precision_record, resolve_precision
from facebalance.runtime import derive_seed, run_app, setup, write_csv, write_json

app = typer.Typer(add_completion=False)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="prepared shards (train/)")],
    model: Annotated[Path, typer.Option(help="generator checkpoint to write")],
    samples: Annotated[Path, typer.Option(help="PNG grid of generated samples")],
    history: Annotated[Path, typer.Option(help="loss curve CSV")],
    metrics: Annotated[Path, typer.Option(help="training summary JSON")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Train (or adopt) the generator, then draw a sample grid."""
    p = load_params(params)
    g = p.gan
    # Training runs data-parallel with base.nproc > 1 (under torchrun); adopting does not.
    ranks = start(p.base.nproc if not g.checkpoint else 1, setup(p.base), p.base.threads)
    device = ranks.device
    precision = resolve_precision(p.base.precision, device)
    # Empty for the default fp32; else what ran (and that auto chose it).
    record = precision_record(p.base.precision, precision)
    curve: list[dict] = []
    if g.checkpoint:
        gen = load_generator(g.checkpoint, device, latent_dim=g.latent_dim)
        if gen.cfg.image_size != p.base.image_size:
            raise FacebalanceError(
                f"gan.checkpoint {g.checkpoint} makes {gen.cfg.image_size}px images but "
                f"base.image_size is {p.base.image_size}")
        summary = {"source": "checkpoint", "checkpoint": g.checkpoint}
    else:
        refs, balance = gan_stream(lambda cols: shard_refs(data / "train", cols), g.balance,
                                   p.task.kind, p.dataset.target, p.dataset.protected,
                                   derive_seed(p.base.seed, 4, 1))
        cfg = from_params(GanConfig, g, image_size=p.base.image_size)
        train = from_params(GanTrainConfig, g, seed=derive_seed(p.base.seed, 4),
                            precision=precision)
        gen, curve = train_gan(ShardDataset(refs, {}), cfg, train, device)
        summary = {"source": "trained", "balance": balance, "steps": g.steps,
                   "seconds": curve[-1]["seconds"],
                   **{k: curve[-1][k] for k in ("d_loss", "g_loss", "d_real", "d_fake")},
                   **record}
    if not ranks.main:  # rank 0 writes
        return
    z = torch.randn(64, gen.cfg.latent_dim, generator=torch.Generator().manual_seed(0))
    # An adopted mapping-network checkpoint loads as its w view: map the draws first.
    grid = generate_uint8(gen, prior_latents(gen, z.to(device)))
    # Outputs last: a failure above leaves the previous ones as they were.
    if g.checkpoint:
        atomic_write_bytes(model, Path(g.checkpoint).read_bytes())
    else:
        save_generator(model, gen, {"params": as_dict(g), **record})
    save_rows(list(grid.reshape(8, 8, *grid.shape[1:])), samples, p.base.image_size, view=128)
    write_csv(history, pd.DataFrame(curve, columns=["step", "d_loss", "g_loss", "d_real",
                                                    "d_fake", "seconds"]))
    write_json(metrics, summary)


if __name__ == "__main__":
    run_app(app)
