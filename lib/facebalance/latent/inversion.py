"""The ``invert`` stage's step: latents of real faces, and how well they reconstruct.

The methods (encoder, optimisation, both) are :mod:`facebalance.latent.invert`; this module
trains the encoder the method needs, inverts the training images (all) and a seeded subset
of the test images, and summarizes the reconstruction errors per split and group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn

from facebalance.config import InvertParams, as_dict, from_params
from facebalance.data.datasets import ShardDataset, to_float
from facebalance.errors import FacebalanceError
from facebalance.latent.invert import InvertConfig, error_summary, invert_dataset
from facebalance.latent.sampling import latents_table
from facebalance.models.encoder import EncoderConfig, EncoderTrainConfig, train_encoder
from facebalance.models.gan import ERR_NO_GRADIENTS, generate_uint8


@dataclass
class Inversion:
    """What the invert stage writes.

    Attributes
    ----------
    encoder
        The trained encoder (None with ``invert.method: optimize``).
    table
        The latents table: ``id``, ``z``, ``split``, ``group`` and the errors.
    summary
        The metrics JSON.
    rows
        The figure's rows: images, (encoder reconstructions,) final reconstructions.
    """

    encoder: nn.Module | None
    table: pa.Table
    summary: dict[str, Any]
    rows: list[np.ndarray]


def test_subset(test: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` test rows drawn with ``seed``, in file order (streams well); all when ``n`` is
    0 or at least the split's size."""
    if 0 < n < len(test):
        keep = np.random.default_rng(seed).choice(len(test), n, replace=False)
        return test.iloc[np.sort(keep)]
    return test


def invert_real_faces(gen: nn.Module, rows: pd.DataFrame, params: InvertParams, *,
                      group_names: dict[int, str], encoder_seed: int, seed: int,
                      device: torch.device, precision: str = "fp32",
                      record: dict[str, str] | None = None, show: int = 8) -> Inversion:
    """Train the encoder (unless ``optimize``), invert every row, summarize the errors.

    Parameters
    ----------
    gen
        Generator.
    rows
        Image references with ``id``, ``split`` (``train`` / ``test``) and ``group``.
    params
        The ``invert`` params.
    group_names
        Readable name of each group, for the summary.
    encoder_seed, seed
        Seeds of the encoder's training and of the inversion.
    device, precision
        Where and in which precision the encoder trains.
    record
        What ran, when not fp32 (:func:`facebalance.precision.precision_record`).
    show
        Images in the figure.

    Raises
    ------
    FacebalanceError
        Latent optimisation (``optimize`` / ``both`` with steps) through a generator without
        gradients (ONNX), before any work.
    """
    v = params
    if v.method != "encoder" and v.steps > 0 and not getattr(gen, "differentiable", True):
        raise FacebalanceError(ERR_NO_GRADIENTS.format(path=getattr(gen, "path", "the generator")))
    record = record or {}
    enc, summary = None, {}
    if v.method != "optimize":
        cfg = from_params(EncoderConfig, v, prefix="encoder_", image_size=gen.cfg.image_size,
                          latent_dim=gen.cfg.latent_dim)
        enc, curve = train_encoder(gen, cfg, from_params(
            EncoderTrainConfig, v, prefix="encoder_", seed=encoder_seed,
            precision=precision), device)
        summary["encoder"] = {"steps": v.encoder_steps, "latent_mse": curve[-1]["latent_mse"],
                              "seconds": curve[-1]["seconds"], **record}
    dataset = ShardDataset(rows, {})
    t0 = time.perf_counter()
    z, errors = invert_dataset(gen, enc, dataset, from_params(InvertConfig, v), device, seed)
    seconds = time.perf_counter() - t0
    frame = pd.concat([rows[["split", "group"]], errors], axis=1)
    summary = {"method": v.method, "steps": v.steps, **summary,
               "seconds": seconds, "images_per_second": len(rows) / max(seconds, 1e-9),
               **error_summary(frame, group_names), "params": as_dict(v)}
    # Figure: test images (or train when no test), then each reconstruction below.
    pick = np.flatnonzero(rows["split"].to_numpy() == "test")[:show]
    if not len(pick):
        pick = np.arange(min(show, len(rows)))
    images, _ = dataset.__getitems__(pick.tolist())
    figure = [images.numpy(), generate_uint8(gen, torch.from_numpy(z[pick]).to(device))]
    if enc is not None and v.method == "both":
        with torch.no_grad():
            figure.insert(1, generate_uint8(gen, enc(to_float(images).to(device))))
    table = latents_table(rows["id"].to_numpy(), z, seed, {
        "split": rows["split"].to_numpy(), "group": rows["group"].to_numpy(np.int64),
        **{c: errors[c].to_numpy() for c in errors.columns}})
    return Inversion(enc, table, summary, figure)
