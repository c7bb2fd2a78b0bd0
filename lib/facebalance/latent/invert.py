"""GAN inversion: the latent of a real image under a trained generator.

For an image ``x`` the inverted latent minimizes the pixel reconstruction error with a
small penalty that keeps it on the prior's shell (a draw of N(0, I_d) has norm ~ sqrt(d)):

    z* = argmin_z  mean((G(z) - x)^2) + prior_weight * (|z| / sqrt(d) - 1)^2

Methods (``INVERT_METHODS``): ``encoder`` (one forward pass of an encoder trained on
``(G(z), z)``; :mod:`facebalance.models.encoder`), ``optimize`` (Adam on ``z`` from a
random start) and ``both`` (Adam from the encoder's latent). The optimisation runs on a
whole batch at once: the loss is the *sum* of per-image losses and the generator is in
eval mode (batch-norm statistics frozen), so every image's gradient and Adam state are
its own and a batch gives the same latents as one image at a time, many times faster.

Errors are the mean squared pixel error on the [-1, 1] scale; a random latent's error is
the floor every inversion must beat.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from facebalance.choices import INVERT_METHODS
from facebalance.data.datasets import ShardDataset, to_float
from facebalance.errors import FacebalanceError
from facebalance.models.gan import prior_latents_numpy, whiten

log = logging.getLogger(__name__)

#: The errors :func:`invert_dataset` reports per image (random latent first).
ERROR_COLUMNS = ("error_random", "error_encoder", "error")


@dataclass(frozen=True)
class InvertConfig:
    """How latents are found (see the module docstring)."""

    method: str = "both"
    steps: int = 30
    lr: float = 0.05
    prior_weight: float = 0.01
    batch_size: int = 512


def prior_penalty(z: torch.Tensor) -> torch.Tensor:
    """``(|z| / sqrt(d) - 1)^2`` per latent: 0 on the shell where N(0, I) draws lie."""
    return (z.norm(dim=1) / math.sqrt(z.shape[1]) - 1.0) ** 2


@torch.no_grad()
def reconstruction_error(gen: nn.Module, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error of ``G(z)`` against ``x`` (both [-1, 1]), per image."""
    return (gen(z) - x).pow(2).mean(dim=(1, 2, 3))


def optimize_latents(gen: nn.Module, x: torch.Tensor, z0: torch.Tensor, *, steps: int,
                     lr: float, prior_weight: float) -> torch.Tensor:
    """Refine latents ``z0`` of images ``x`` by ``steps`` Adam steps (see module docstring).

    Parameters
    ----------
    gen
        Generator in eval mode (its parameters are not changed).
    x
        Images ``(B, 3, S, S)`` in [-1, 1].
    z0
        Starting latents ``(B, d)``.
    steps, lr, prior_weight
        Adam steps, learning rate and the weight of :func:`prior_penalty`.

    Returns
    -------
    torch.Tensor
        The refined latents (detached).
    """
    if gen.training:
        raise FacebalanceError("optimize_latents needs the generator in eval mode")
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    grads = [p.requires_grad for p in gen.parameters()]
    for p in gen.parameters():  # no gradient into the generator: faster, and it stays put
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            per_image = (gen(z) - x).pow(2).mean(dim=(1, 2, 3))
            if prior_weight > 0:  # on the N(0, I) scale (w standardized)
                per_image = per_image + prior_weight * prior_penalty(whiten(gen, z))
            opt.zero_grad(set_to_none=True)
            per_image.sum().backward()
            opt.step()
    finally:
        for p, g in zip(gen.parameters(), grads, strict=True):
            p.requires_grad_(g)
    return z.detach()


def invert_batch(gen: nn.Module, encoder: nn.Module | None, x: torch.Tensor,
                 z_random: torch.Tensor, cfg: InvertConfig) -> dict[str, torch.Tensor]:
    """Latents and errors of one batch of images.

    Returns
    -------
    dict
        ``z`` (the inverted latents), ``error``, ``error_random`` (of ``z_random``) and,
        when an encoder is used, ``error_encoder`` (of its latent before optimisation).
    """
    out = {"error_random": reconstruction_error(gen, z_random, x)}
    if cfg.method in ("encoder", "both"):
        if encoder is None:
            raise FacebalanceError(f"invert.method {cfg.method!r} needs an encoder")
        with torch.no_grad():
            z = encoder(x)
        out["error_encoder"] = reconstruction_error(gen, z, x)
    else:
        z = z_random
    if cfg.method in ("optimize", "both") and cfg.steps > 0:
        z = optimize_latents(gen, x, z, steps=cfg.steps, lr=cfg.lr,
                             prior_weight=cfg.prior_weight)
    out["z"] = z
    out["error"] = reconstruction_error(gen, z, x)
    return out


def invert_dataset(gen: nn.Module, encoder: nn.Module | None, dataset: ShardDataset,
                   cfg: InvertConfig, device: torch.device, seed: int, *,
                   progress: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    """Invert every image of a dataset, in order, batch by batch.

    Parameters
    ----------
    gen, encoder
        Generator and encoder (eval mode); ``encoder`` may be None for ``optimize``.
    dataset
        The images (streamed or preloaded; served in index order).
    cfg
        Method, steps, learning rate, prior weight, batch size.
    device
        Where the generator runs.
    seed
        Seeds the random latents (baseline error and the ``optimize`` start).

    Returns
    -------
    z, errors
        ``(n, d)`` float32 latents and a frame with :data:`ERROR_COLUMNS` (``error_encoder``
        is NaN without an encoder).
    """
    if cfg.method not in INVERT_METHODS:
        raise FacebalanceError(
            f"unknown invert method {cfg.method!r}; valid: {', '.join(INVERT_METHODS)}")
    n, d = len(dataset), gen.cfg.latent_dim
    z_all = np.empty((n, d), dtype=np.float32)
    errors = {c: np.full(n, np.nan, dtype=np.float32) for c in ERROR_COLUMNS}
    # Drawn up front, so each image's random latent does not depend on the batch size.
    z_random_all = torch.from_numpy(prior_latents_numpy(
        gen, np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)))
    bar = tqdm(total=n, desc="invert", unit="img", disable=not progress, mininterval=2.0)
    for start in range(0, n, cfg.batch_size):
        idx = list(range(start, min(n, start + cfg.batch_size)))
        images, _ = dataset.__getitems__(idx)
        x = to_float(images).to(device)
        z_random = z_random_all[idx].to(device)
        out = invert_batch(gen, encoder, x, z_random, cfg)
        z_all[idx] = out["z"].cpu().numpy()
        for c in ERROR_COLUMNS:
            if c in out:
                errors[c][idx] = out[c].cpu().numpy()
        bar.update(len(idx))
    bar.close()
    return z_all, pd.DataFrame(errors)


def train_positions(frame: pd.DataFrame, ids: pd.Series, path: str | Path) -> np.ndarray:
    """Row of each training image ``ids`` in an inverted-latents table (its ``split ==
    "train"`` rows), so latents line up with the prepared training rows.

    Raises
    ------
    FacebalanceError
        Naming ``path``, when an id is missing or repeated among the train latents.
    """
    rows = np.flatnonzero(frame["split"].to_numpy() == "train")
    index = pd.Index(frame["id"].to_numpy()[rows])
    if not index.is_unique:
        dup = index[index.duplicated()][0]
        raise FacebalanceError(f"{path}: training image {dup!r} has two latents; rerun the "
                               "invert stage")
    pos = index.get_indexer(ids)
    if (pos < 0).any():
        missing = ids.iloc[int(np.argmax(pos < 0))]
        raise FacebalanceError(f"{path} has no latent for training image {missing!r}; rerun "
                               "the invert stage on this data")
    return rows[pos]


def error_summary(frame: pd.DataFrame, group_names: dict[int, str]) -> dict[str, object]:
    """Mean reconstruction errors per split, overall and per group, and their ratios.

    Parameters
    ----------
    frame
        One row per inverted image: ``split``, ``group`` and :data:`ERROR_COLUMNS`.
    group_names
        Readable name of each group value.

    Returns
    -------
    dict
        ``{split: {"n", "error_random", "error_encoder", "error", "error_ratio"
        (error / error_random), "by_group": {name: {...}}, "worst_group_ratio"}}``.
        A group whose ratio is much worse than the others' is inverted worse, which is a
        bias of its own.
    """
    def stats(rows: pd.DataFrame) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {"n": len(rows)}
        for c in ERROR_COLUMNS:
            v = rows[c].to_numpy(np.float64)
            out[c] = None if np.isnan(v).all() else float(np.nanmean(v))
        out["error_ratio"] = (out["error"] / out["error_random"]
                              if out["error_random"] else None)
        return out

    summary: dict[str, object] = {}
    for split, rows in frame.groupby("split", sort=True):
        entry = stats(rows)
        by_group = {group_names.get(int(g), str(g)): stats(r)
                    for g, r in rows.groupby("group", sort=True)}
        entry["by_group"] = by_group
        ratios = [s["error_ratio"] for s in by_group.values() if s["error_ratio"] is not None]
        entry["worst_group_ratio"] = max(ratios) if ratios else None
        summary[str(split)] = entry
    return summary
