"""Latent SMOTE ("Fighting Ageism in datasets") and its pixel-space control.

Every cell (:func:`facebalance.task.cell_ids`: the age bins of a regression task, the
(label x group) cells of a classification task) smaller than the mean cell size gets new
members until it reaches the mean: draw two distinct members ``a`` and ``b`` of the cell
and a contribution ``alpha ~ U[lo, hi]`` (paper: [0.1, 0.9]), and inject ``b`` into ``a``:

    z_new = (1 - alpha) * z_a + alpha * z_b           (latent_smote: then G(z_new))
    x_new = (1 - alpha) * x_a + alpha * x_b           (pixel_smote: the same a, b, alpha)

The new member's label is the cell's label (classification) or the age interpolated with
the same contribution (regression); a convex combination of two ages of one bin stays in
that bin, so the new member keeps its cell. pixel_smote uses the same plan, so the two
differ only in where the mixing happens: it tells whether the GAN matters.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import ShardWriter, encode_png_batch
from facebalance.task import TaskSpec, label_keys

log = logging.getLogger(__name__)

#: Default contribution range of the paper.
CONTRIBUTION = (0.1, 0.9)


def smote_plan(cells: np.ndarray, seed: int, lo: float = CONTRIBUTION[0],
               hi: float = CONTRIBUTION[1]) -> tuple[pd.DataFrame, dict[str, object]]:
    """Which pairs to interpolate, and with which contribution, to fill the small cells.

    Parameters
    ----------
    cells
        The cell of each real training row (integers).
    seed
        Seeds the draws.
    lo, hi
        The contribution range.

    Returns
    -------
    plan, report
        ``plan``: one row per new sample with ``a``, ``b`` (row positions in ``cells``,
        distinct, same cell), ``alpha`` and ``cell``, cell by cell in increasing order.
        ``report``: the target size (the mean of the present cells' sizes, rounded up), and
        per cell its size before and after; cells with a single member cannot be
        interpolated and are listed in ``skipped``.
    """
    cells = np.asarray(cells, dtype=np.int64)
    present, sizes = np.unique(cells, return_counts=True)
    target = int(np.ceil(sizes.mean())) if len(sizes) else 0
    rng = np.random.default_rng(seed)
    order = np.argsort(cells, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    parts, skipped = [], []
    for k, (cell, size) in enumerate(zip(present, sizes, strict=True)):
        need = target - int(size)
        if need <= 0:
            continue
        if size < 2:
            skipped.append(int(cell))
            continue
        members = order[starts[k]:starts[k + 1]]
        pos_a = rng.integers(0, size, need)
        pos_b = (pos_a + rng.integers(1, size, need)) % size  # any member but a
        parts.append(pd.DataFrame({"a": members[pos_a], "b": members[pos_b],
                                   "alpha": rng.uniform(lo, hi, need),
                                   "cell": np.full(need, cell)}))
    if skipped:
        log.warning("interpolate: cells %s have a single member and stay as they are",
                    skipped)
    plan = (pd.concat(parts, ignore_index=True) if parts
            else pd.DataFrame({"a": np.empty(0, np.int64), "b": np.empty(0, np.int64),
                               "alpha": np.empty(0), "cell": np.empty(0, np.int64)}))
    added = plan["cell"].value_counts()
    report = {"target_size": target, "new_samples": len(plan), "skipped_cells": skipped,
              "cells": {str(int(c)): {"before": int(s), "after": int(s + added.get(c, 0))}
                        for c, s in zip(present, sizes, strict=True)}}
    return plan, report


def mix(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor,
        alpha: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``(1 - alpha) * a + alpha * b`` row by row (``alpha`` has one value per row)."""
    shape = (-1,) + (1,) * (a.ndim - 1)
    alpha = alpha.reshape(shape)
    return (1 - alpha) * a + alpha * b


def mix_pixels(xa: np.ndarray, xb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The pixel-space control: uint8 images ``(n, H, W, 3)`` mixed, rounded to uint8."""
    out = mix(xa.astype(np.float32), xb.astype(np.float32), alpha.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def mix_labels(kind: str, label_a: np.ndarray, label_b: np.ndarray,
               alpha: np.ndarray) -> np.ndarray:
    """The label of a new sample: regression interpolates the value with ``alpha``;
    classification takes the label of the member with the larger contribution (the primary
    label is the cell's, so both members share it; further multitask labels may differ)."""
    if kind == "regression":
        return mix(np.asarray(label_a, np.float64), np.asarray(label_b, np.float64),
                   np.asarray(alpha, np.float64)).astype(np.float32)
    return np.where(np.asarray(alpha) > 0.5, label_b, label_a)


def smote_labels(task: TaskSpec, labels: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """Labels (``label``, ``label1``...) and ``group`` of the planned samples.

    Parameters
    ----------
    task
        The task spec (regression interpolates the primary target and re-bins it).
    labels
        The real rows' ``label``... and ``group`` (:func:`facebalance.task.task_labels`),
        in the order ``plan`` positions refer to.
    plan
        :func:`smote_plan` rows.
    """
    a, b = plan["a"].to_numpy(), plan["b"].to_numpy()
    alpha = plan["alpha"].to_numpy()
    out = {}
    for key in label_keys(task):
        values = labels[key].to_numpy()
        kind = "regression" if task.kind == "regression" and key == "label" else "class"
        out[key] = mix_labels(kind, values[a], values[b], alpha)
    if task.kind == "regression":
        out["group"] = np.digitize(out["label"].astype(np.float64),
                                   task.age_bins).astype(np.int64)
    else:
        out["group"] = labels["group"].to_numpy()[a]
    return pd.DataFrame(out)


def write_pixel_mixes(dataset: ShardDataset, plan: pd.DataFrame, ids: list[str],
                      columns: pd.DataFrame, out: str | Path, *, batch_size: int = 1024,
                      rows_per_file: int = 10000, row_group_size: int = 1000) -> int:
    """Write the pixel_smote images of ``plan`` as shards (atomically as a whole).

    Parameters
    ----------
    dataset
        The real training images, addressed by the plan's ``a`` / ``b`` positions.
    plan
        :func:`smote_plan` rows.
    ids, columns
        Id and extra columns (labels...) of each new image, in plan order.
    out
        Shard directory to write.

    Returns
    -------
    int
        Images written.
    """
    with ShardWriter(out, rows_per_file, row_group_size) as writer:
        for start in range(0, len(plan), batch_size):
            part = plan.iloc[start:start + batch_size]
            xa, _ = dataset.__getitems__(part["a"].tolist())
            xb, _ = dataset.__getitems__(part["b"].tolist())
            images = mix_pixels(xa.numpy(), xb.numpy(), part["alpha"].to_numpy())
            frame = pd.DataFrame({"id": ids[start:start + len(part)],
                                  "image": encode_png_batch(images)})
            frame["source"] = "interpolated"
            frame["weight"] = np.float32(1.0)
            extra = columns.iloc[start:start + len(part)].reset_index(drop=True)
            writer.write(pd.concat([frame, extra], axis=1))
    return len(plan)


def interpolate_cells(gen: torch.nn.Module, train: pd.DataFrame, labels: pd.DataFrame,
                      z: np.ndarray, task: TaskSpec, out: Path, *, seed: int,
                      contribution: tuple[float, float], batch_size: int,
                      device: torch.device, show: int = 8
                      ) -> tuple[dict[str, object], list[np.ndarray]]:
    """The ``interpolate`` stage: plan latent SMOTE for every small cell, generate the
    latent mixes and write the pixel mixes (the control) with one shared plan.

    Parameters
    ----------
    gen
        Generator.
    train
        Real training rows: image references and ``id``.
    labels
        Their task labels (:func:`facebalance.task.task_labels`).
    z
        Their inverted latents, row for row.
    task
        The task (cells and label mixing).
    out
        Folder to write ``plan.parquet``, ``latent/`` and ``pixel/`` into.
    seed
        Seed of the plan.
    contribution
        ``interpolate.contribution``: the range of the mixing weight.
    batch_size
        Images generated and written at once.
    device
        Where the generator runs.
    show
        Interpolations in the figure.

    Returns
    -------
    report, rows
        Cell sizes before and after (named cells), skipped cells and the mixing weights'
        range; the figure's rows: a, b, latent mix, pixel mix.
    """
    from facebalance.data.shards import write_table_atomic
    from facebalance.latent.sampling import generate_shards
    from facebalance.models.gan import generate_uint8
    from facebalance.task import cell_ids

    cells = cell_ids(task, labels["label"].to_numpy(), labels["group"].to_numpy())
    lo, hi = contribution
    plan, report = smote_plan(cells, seed, lo, hi)
    new = smote_labels(task, labels, plan)
    ids = [f"interp-{i:07d}" for i in range(len(plan))]
    a, b, alpha = plan["a"].to_numpy(), plan["b"].to_numpy(), plan["alpha"].to_numpy()
    columns = pd.concat([pd.DataFrame({"a_id": train["id"].to_numpy()[a],
                                       "b_id": train["id"].to_numpy()[b],
                                       "alpha": alpha.astype(np.float32)}), new], axis=1)
    z_new = mix(z[a], z[b], alpha.astype(np.float32)).astype(np.float32)
    images = ShardDataset(train[["path", "_file", "_row"]], {})
    generate_shards(gen, z_new, ids, out / "latent", device=device, batch_size=batch_size,
                    columns=columns, source="interpolated")
    write_pixel_mixes(images, plan, ids, columns, out / "pixel", batch_size=batch_size)
    write_table_atomic(columns.assign(id=ids), out / "plan.parquet")
    pick = np.arange(min(show, len(plan)))
    rows = []
    if len(pick):
        xa, _ = images.__getitems__(a[pick].tolist())
        xb, _ = images.__getitems__(b[pick].tolist())
        rows = [xa.numpy(), xb.numpy(), generate_uint8(gen, torch.from_numpy(z_new[pick])
                                                       .to(device)),
                mix_pixels(xa.numpy(), xb.numpy(), alpha[pick])]
    names = task.cell_names()
    report["cells"] = {names.get(int(c), c): v for c, v in report["cells"].items()}
    report["skipped_cells"] = [names.get(int(c), str(c)) for c in report["skipped_cells"]]
    report["alpha"] = {"min": float(alpha.min()) if len(alpha) else None,
                       "max": float(alpha.max()) if len(alpha) else None,
                       "mean": float(alpha.mean()) if len(alpha) else None}
    return report, rows
