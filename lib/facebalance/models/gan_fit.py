"""The generator of the pipeline: trained on the real training split, or adopted.

``gan.checkpoint`` adopts a pretrained generator (any format :func:`load_generator` reads);
otherwise the DCGAN trains on the training split's stream (:func:`gan_stream`: as it is, or
every target x protected cell equally often).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facebalance.balance.strategies import gan_stream
from facebalance.config import Params, as_dict, from_params
from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import atomic_write_bytes, shard_refs
from facebalance.errors import FacebalanceError
from facebalance.models.gan import (
    GanConfig,
    GanTrainConfig,
    generate_uint8,
    load_generator,
    prior_latents,
    save_generator,
    train_gan,
)
from facebalance.runtime import derive_seed

HISTORY_COLUMNS = ["step", "d_loss", "g_loss", "d_real", "d_fake", "seconds"]


@dataclass
class FittedGenerator:
    """A generator, its training curve (empty when adopted), the stage's summary and, when
    adopted, the bytes of the generator file."""

    gen: nn.Module
    curve: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    adopted: bytes | None = None


def fit_generator(p: Params, train_dir: str | Path, device: torch.device,
                  precision: str = "fp32", record: dict[str, Any] | None = None
                  ) -> FittedGenerator:
    """Adopt ``gan.checkpoint`` or train the DCGAN on ``train_dir`` (``gan`` params).

    Parameters
    ----------
    p
        The params (``gan``, ``base``, ``task``, ``dataset``).
    train_dir
        The prepared training split's shards.
    device, precision
        Where and in what precision the training runs (``base.precision`` resolved).
    record
        What the summary records of the precision (empty for fp32).
    """
    g = p.gan
    if g.checkpoint:
        gen = load_generator(g.checkpoint, device, latent_dim=g.latent_dim)
        if gen.cfg.image_size != p.base.image_size:
            raise FacebalanceError(
                f"gan.checkpoint {g.checkpoint} makes {gen.cfg.image_size}px images but "
                f"base.image_size is {p.base.image_size}")
        summary = {"source": "checkpoint", "checkpoint": g.checkpoint}
        # The generator file must load on its own: an ONNX model's external data (weights
        # in a file beside it) is packed into the bytes it ran from.
        portable = getattr(gen, "portable", None)
        data, packed = portable if portable else (Path(g.checkpoint).read_bytes(), False)
        if packed:
            summary["external_data"] = "packed"
        return FittedGenerator(gen, [], summary, adopted=data)
    refs, balance = gan_stream(lambda cols: shard_refs(train_dir, cols), g.balance,
                               p.task.kind, p.dataset.target, p.dataset.protected,
                               derive_seed(p.base.seed, 4, 1))
    cfg = from_params(GanConfig, g, image_size=p.base.image_size)
    train = from_params(GanTrainConfig, g, seed=derive_seed(p.base.seed, 4),
                        precision=precision)
    gen, curve = train_gan(ShardDataset(refs, {}), cfg, train, device)
    summary = {"source": "trained", "balance": balance, "steps": g.steps,
               "seconds": curve[-1]["seconds"],
               **{k: curve[-1][k] for k in ("d_loss", "g_loss", "d_real", "d_fake")},
               **(record or {})}
    return FittedGenerator(gen, curve, summary)


def sample_grid(gen: nn.Module, device: torch.device, side: int = 8) -> list[np.ndarray]:
    """``side`` rows of ``side`` faces from seed-0 latents (the stage's sample figure); an
    adopted mapping-network generator maps its draws first."""
    z = torch.randn(side * side, gen.cfg.latent_dim, generator=torch.Generator().manual_seed(0))
    grid = generate_uint8(gen, prior_latents(gen, z.to(device)))
    return list(grid.reshape(side, side, *grid.shape[1:]))


def write_generator(path: str | Path, fitted: FittedGenerator, p: Params,
                    record: dict[str, Any] | None = None) -> None:
    """The generator file: an adopted checkpoint byte for byte (an ONNX one with its
    external data packed in), a trained one with its ``gan`` params (and ``record``) as
    meta."""
    if fitted.adopted is not None:
        atomic_write_bytes(path, fitted.adopted)
    else:
        save_generator(path, fitted.gen, {"params": as_dict(p.gan), **(record or {})})
