"""The guided strategy's images: faces walked into each under-represented group.

Directions, walks and quotas are :mod:`facebalance.latent.directions`; this module runs the
whole step of the ``guide`` stage: fit the directions on fresh samples, walk new latents
until every group reaches its quota, store the images, label them with the target
classifier and check their group as stored (PNG round trip), as training will see them.
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
from facebalance.latent.directions import group_directions, guide_to_quotas, image_groups
from facebalance.latent.sampling import generate_shards, latents_table, sample_prior
from facebalance.models.gan import generate_uint8, prior_latents
from facebalance.models.train import predict_outputs
from facebalance.task import classifier_task


def group_quotas(counts: np.ndarray, to: str) -> tuple[int, dict[int, int]]:
    """The size every group is filled to (``to``: ``max`` or ``mean`` of the real group
    counts, rounded up) and the new images each smaller group needs."""
    size = int(np.ceil(counts.mean())) if to == "mean" else int(counts.max())
    return size, {g: size - int(n) for g, n in enumerate(counts) if n < size}


def guided_faces(gen: nn.Module, classifiers: dict[str, nn.Module], counts: np.ndarray,
                 names: list[str], out: Path, *, to: str, n_fit: int, c: float, step: float,
                 max_steps: int, walk_batch_size: int, batch_size: int,
                 seeds: tuple[int, int, int], device: torch.device, show: int = 8
                 ) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Generate the faces that fill every group up to the quota; write ``images/`` and
    ``guided.parquet`` into ``out``.

    Parameters
    ----------
    gen
        Generator.
    classifiers
        ``{"target": binary model, "protected": K-group model}`` (``train_attr``).
    counts
        Real training images per group (``K`` entries).
    names
        Readable group names, for the report.
    out
        Folder to write into.
    to, n_fit, c, step, max_steps
        The ``guided`` params (fill to, direction fit, walk).
    walk_batch_size, batch_size
        Latents walked at a time (``guided.batch_size``); images generated and scored at a
        time (``sample.batch_size``).
    seeds
        Seeds of the fit draws, the direction fit and the walks.
    device
        Where the networks run.
    show
        Faces per group in the figure.

    Returns
    -------
    report, rows
        The metrics JSON (directions, quotas, per-group hit and agreement rates) and the
        figure's rows, one per guided group.
    """
    k = len(counts)
    size, quotas = group_quotas(counts, to)
    classify = image_groups(gen, classifiers["protected"], batch_size)
    z_fit = sample_prior(gen, n_fit, seeds[0])
    groups_fit = classify(torch.from_numpy(z_fit).to(device)).cpu().numpy()
    directions, fit_acc = group_directions(z_fit, groups_fit, k, c=c, seed=seeds[1])
    z, grp, steps, walks = guide_to_quotas(
        directions, quotas, classify, step=step, max_steps=max_steps,
        batch_size=walk_batch_size, seed=seeds[2], device=device,
        to_latent=lambda z: prior_latents(gen, z))
    ids = [f"guided-{i:07d}" for i in range(len(z))]
    generate_shards(gen, z, ids, out / "images", device=device, batch_size=batch_size,
                    columns=pd.DataFrame({"group": grp, "steps": steps}))
    # Label and check the images as stored (PNG round trip), as training will see them.
    stored = ShardDataset(shard_refs(out / "images", ["id"]), {}) if len(z) else None
    target = (predict_outputs([classifiers["target"]], stored, device)[0][:, 0]
              if stored else np.zeros(0, np.float32))
    prot = (predict_outputs([classifiers["protected"]], stored, device, classifier_task(k))[0]
            if stored else np.zeros((0, 1), np.float32))
    agrees = (prot.argmax(1) if k > 2 else (prot[:, 0] >= 0.5).astype(np.int64)) == grp
    write_table_atomic(latents_table(ids, z, seeds[2], {
        "label": (target >= 0.5).astype(np.int8), "group": grp, "steps": steps,
        "target_score": target.astype(np.float32), "agrees": agrees}), out / "guided.parquet")
    rows = [generate_uint8(gen, torch.from_numpy(z[grp == q][:show]).to(device))
            for q in sorted(quotas) if (grp == q).any()]
    fit_share = np.bincount(groups_fit, minlength=k) / max(len(groups_fit), 1)
    report = {
        "directions": {"n_fit": n_fit, "fit_accuracy": fit_acc,
                       "generated_group_share": dict(zip(names, fit_share.tolist(),
                                                         strict=True))},
        "group_size": size, "real_counts": dict(zip(names, counts.tolist(), strict=True)),
        "groups": {names[q]: {**r, "agreement": float(agrees[grp == q].mean())
                              if (grp == q).any() else None,
                              "target_positive_share": float((target[grp == q] >= 0.5).mean())
                              if (grp == q).any() else None}
                   for q, r in walks.items()},
        "new_images": len(z)}
    return report, rows
