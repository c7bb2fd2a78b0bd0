"""Complements of inverted real faces (the z/z' paper's extension to real images).

Each chosen real training face's latent ``z`` (the invert stage) is complemented like a
sampled one, so its synthetic partner ``G(z')`` is the same face with the protected
attribute mirrored, labelled with the real face's own target label (no classifier label).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import shard_refs, write_table_atomic
from facebalance.latent.boundaries import Boundary
from facebalance.latent.complement import complement_latents, flip_and_keep
from facebalance.latent.sampling import generate_shards, latents_table
from facebalance.models.gan import generate_uint8
from facebalance.models.train import predict_proba


def choose_real(n_train: int, n_budget: int, seed: int) -> np.ndarray:
    """Sorted rows of the real faces to complement: ``n_budget`` drawn without replacement
    (0: every face)."""
    n = n_budget or n_train
    return np.sort(np.random.default_rng(seed).choice(n_train, size=min(n, n_train),
                                                      replace=False))


def complement_real_faces(gen: nn.Module, classifiers: dict[str, nn.Module],
                          real: pd.DataFrame, z: np.ndarray, target: Boundary,
                          protected: Boundary, out: Path, *, label: str, group: str,
                          seed: int, mode: str, shell: str, max_step: float, batch_size: int,
                          device: torch.device,
                          target_by_group: tuple[Boundary, Boundary] | None = None,
                          show: int = 8) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Complement real faces' latents, generate and score the partners, write them.

    Parameters
    ----------
    gen
        Generator.
    classifiers
        ``{"target": model, "protected": model}`` (the ``train_attr`` ones).
    real
        The chosen real faces: image references, ``id`` and the ``label`` and ``group``
        columns.
    z
        Their inverted latents, row for row.
    target, protected, target_by_group
        Latent boundaries (as the complement stage).
    out
        Folder to write ``images/`` and ``partners.parquet`` into.
    label, group
        Columns of ``real`` holding the target and the protected group (0/1).
    seed
        Recorded in the latents table.
    mode, shell, max_step
        The ``complement`` params.
    batch_size
        Images generated and scored at once.
    device
        Where the networks run.
    show
        Faces in the figure's rows.

    Returns
    -------
    report, rows
        Flip and keep rates (overall and by the real face's group) for the metrics JSON,
        and the figure's rows: real faces, ``G(z)``, ``G(z')``.
    """
    zp = complement_latents(z, target, protected, mode=mode, shell=shell, max_step=max_step,
                            target_by_group=target_by_group).astype(np.float32)
    ids = [f"creal-{i:07d}" for i in range(len(real))]
    generate_shards(gen, zp, ids, out / "images", device=device, batch_size=batch_size,
                    columns=pd.DataFrame({"real_id": real["id"]}))
    # Scored as stored (PNG round trip), as training will see them.
    stored = ShardDataset(shard_refs(out / "images", ["id"]), {})
    target_s, protected_s = predict_proba([classifiers["target"], classifiers["protected"]],
                                          stored, device, batch_size)
    y, g = real[label].to_numpy(), real[group].to_numpy()
    flipped, kept = flip_and_keep(y, g, target_s, protected_s)
    write_table_atomic(latents_table(ids, zp, seed, {
        "real_id": real["id"].to_numpy(), "label": y.astype(np.int8),
        "group": (protected_s >= 0.5).astype(np.int8), "real_group": g.astype(np.int8),
        "target_score": target_s, "protected_score": protected_s,
        "flip_ok": flipped & kept}, name="z_prime"), out / "partners.parquet")
    pick = np.arange(min(show, len(real)))
    originals, _ = ShardDataset(real.iloc[pick], {}).__getitems__(pick.tolist())
    rows = [originals.numpy(), generate_uint8(gen, torch.from_numpy(z[pick]).to(device)),
            generate_uint8(gen, torch.from_numpy(zp[pick]).to(device))]
    some = len(real) > 0
    report = {
        "partners": len(real),
        "protected_flip_rate": float(flipped.mean()) if some else None,
        "target_keep_rate": float(kept.mean()) if some else None,
        "flip_and_keep_rate": float((flipped & kept).mean()) if some else None,
        "by_real_group": {f"{group}={v}": {"n": int((g == v).sum()),
                                           "protected_flip_rate": float(flipped[g == v].mean()),
                                           "target_keep_rate": float(kept[g == v].mean())}
                          for v in np.unique(g)}}
    return report, rows
