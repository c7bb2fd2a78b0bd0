"""Build the z/z' pair set: pick source latents, complement them, generate and score.

Outputs of :func:`make_pairs` (the ``complement`` stage):

- ``<out>/images/``: image shards of ``G(z')``; ``<out>/images_z/`` those of ``G(z)`` when
  the sources are newly drawn (``targeted`` or ``min_distance > 0``); ids
  ``pair-NNNNNNN-zp`` / ``pair-NNNNNNN-z``.
- ``<out>/pairs.parquet``: one row per pair: ``id``, ``z``, ``z_prime`` (latents),
  ``id_z``/``id_zp`` (image ids), both images' target and protected scores, the latent
  distances, ``label`` (target label of ``G(z)``, given to both images), ``flipped``
  (protected prediction differs), ``kept`` (target prediction equal), ``flip_ok``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn

from facebalance.balance.strategies import auto_n_pairs, budget_pairs
from facebalance.config import Params, from_params
from facebalance.data.shards import read_parquet, shard_refs, write_table_atomic
from facebalance.errors import FacebalanceError
from facebalance.latent.boundaries import Boundary, read_boundaries, read_group_boundaries
from facebalance.latent.complement import complement_latents, draw_latents, flip_and_keep
from facebalance.latent.sampling import (
    generate_shards,
    latents_table,
    read_latent_arrays,
    read_latents,
    score_shards_by_name,
)
from facebalance.models.gan import generate_uint8, prior_latents_numpy
from facebalance.runtime import derive_seed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairSpec:
    """How to build pairs (the ``complement`` params; defaults are theirs).

    ``n_pairs`` 0 is the params' "auto": resolve it with
    :func:`facebalance.balance.strategies.auto_n_pairs` before :func:`make_pairs`.
    """

    mode: str = "paper"
    shell: str = "none"
    max_step: float = 4.0
    selection: str = "all"
    min_distance: float = 2.5
    n_pairs: int = 0
    batch_size: int = 1024
    seed: int = 0


def rarest_cell(labels: np.ndarray, groups: np.ndarray) -> tuple[int, int]:
    """(target, protected) values of the smallest cell of the real training data."""
    counts = {(t, g): int(np.sum((labels == t) & (groups == g))) for t in (0, 1) for g in (0, 1)}
    return min(counts, key=counts.get)


def make_pairs(gen: nn.Module, classifiers: dict[str, nn.Module], target: Boundary,
               protected: Boundary, spec: PairSpec, out: Path, *, device: torch.device,
               pool: tuple[pd.DataFrame, np.ndarray, pd.DataFrame] | None = None,
               rare_cell: tuple[int, int] | None = None, progress: bool = True,
               target_by_group: tuple[Boundary, Boundary] | None = None) -> dict[str, Any]:
    """Complement source latents, generate and score the images, write the pair set.

    Parameters
    ----------
    gen
        Generator.
    classifiers
        ``{"target": model, "protected": model}`` scoring images (the ``train_attr`` ones).
    target, protected
        Latent boundaries.
    spec
        Mode, shell, selection and size.
    out
        Output directory.
    device
        Where the generator and classifiers run.
    pool
        For ``selection="all"`` with ``min_distance=0`` (the paper): the pool latents'
        table, latents and scores (ids, ``z``, ``target``/``protected`` score columns) from
        ``sample``/``score``; pairs use the first ``n_pairs``. Otherwise sources are drawn
        from the prior by rejection (:func:`~facebalance.latent.complement.draw_latents`)
        and their images generated here.
    rare_cell
        For ``selection="targeted"``: the (target, protected) cell that is rarest in the
        real data; sources are drawn from the prior in (target, 1 - protected) so that
        their complements land in it.
    progress
        Show progress bars.
    target_by_group
        Domain-dependent target boundaries (``boundaries.domain_dependent``): the
        complement keeps the target score across them.

    Returns
    -------
    dict
        Pair metrics for ``metrics/complement.json``.
    """
    n = spec.n_pairs
    if n <= 0:
        raise FacebalanceError(
            f"complement: PairSpec.n_pairs = {n}; 0 is the params' auto, resolved from the "
            "real training set: n_pairs=auto_n_pairs(n_real, synthetic_share, "
            "synthetic_weight) (facebalance.balance.strategies)")
    if spec.selection == "all" and spec.min_distance <= 0:  # the paper: the sampled pool
        if pool is None:
            raise FacebalanceError("complement: selection 'all' needs the sampled latent pool")
        table, z_all, scores = pool
        if len(z_all) < n:
            raise FacebalanceError(
                f"complement: {n} pairs asked but the pool has {len(z_all)} latents")
        z = z_all[:n]
        id_z = table["id"].to_numpy()[:n]
        src_scores = scores.set_index("id").loc[id_z, ["target", "protected"]].reset_index()
    elif spec.selection in ("all", "targeted"):
        cell = None
        if spec.selection == "targeted":
            if rare_cell is None:
                raise FacebalanceError("complement: selection 'targeted' needs the rarest cell")
            cell = (rare_cell[0], 1 - rare_cell[1])
        z = draw_latents(n, len(target.w), target, protected, seed=spec.seed, cell=cell,
                         min_distance=spec.min_distance,
                         to_latent=lambda draws: prior_latents_numpy(gen, draws),
                         target_by_group=target_by_group)
        id_z = np.array([f"pair-{i:07d}-z" for i in range(n)])
        generate_shards(gen, z, list(id_z), out / "images_z", device=device,
                        batch_size=spec.batch_size, progress=progress)
        src_scores = score_shards_by_name(classifiers, out / "images_z", device)
    else:
        raise FacebalanceError(f"complement: unknown selection {spec.selection!r}")

    z_prime = complement_latents(z, target, protected, spec.mode, spec.shell, spec.max_step,
                                 target_by_group)
    id_zp = np.array([f"pair-{i:07d}-zp" for i in range(n)])
    generate_shards(gen, z_prime, list(id_zp), out / "images", device=device,
                    batch_size=spec.batch_size, progress=progress)
    comp_scores = score_shards_by_name(classifiers, out / "images", device)

    t_z = src_scores["target"].to_numpy() >= 0.5
    g_z = src_scores["protected"].to_numpy() >= 0.5
    g_zp = comp_scores["protected"].to_numpy() >= 0.5
    flipped, kept = flip_and_keep(t_z, g_z, comp_scores["target"].to_numpy(),
                                  comp_scores["protected"].to_numpy())
    columns = {
        "id_z": id_z, "id_zp": id_zp,
        "target_z": src_scores["target"].to_numpy(np.float32),
        "protected_z": src_scores["protected"].to_numpy(np.float32),
        "target_zp": comp_scores["target"].to_numpy(np.float32),
        "protected_zp": comp_scores["protected"].to_numpy(np.float32),
        "dist_protected_z": protected.distance(z).astype(np.float32),
        "dist_protected_zp": protected.distance(z_prime).astype(np.float32),
        "dist_target_z": target.distance(z).astype(np.float32),
        "dist_target_zp": target.distance(z_prime).astype(np.float32),
        "label": t_z.astype(np.int8), "flipped": flipped, "kept": kept,
        "flip_ok": flipped & kept,
    }
    table = latents_table([f"pair-{i:07d}" for i in range(n)], z, spec.seed, columns)
    zp = np.ascontiguousarray(z_prime, dtype=np.float32)
    table = table.append_column("z_prime", pa.FixedSizeListArray.from_arrays(
        pa.array(zp.ravel()), zp.shape[1]))
    write_table_atomic(table, out / "pairs.parquet", row_group_size=10000)
    norm_z, norm_zp = np.linalg.norm(z, axis=1), np.linalg.norm(z_prime, axis=1)
    return {
        "n_pairs": int(n), "mode": spec.mode, "shell": spec.shell, "selection": spec.selection,
        "min_distance": spec.min_distance,
        "flip_rate": float(flipped.mean()), "keep_rate": float(kept.mean()),
        "flip_and_keep": float((flipped & kept).mean()),
        "latent_flip_rate": float(np.mean(protected.predict(z) != protected.predict(z_prime))),
        "latent_keep_rate": latent_keep_rate(z, z_prime, target, protected, target_by_group),
        "domain_dependent": target_by_group is not None,
        "norm_z_mean": float(norm_z.mean()), "norm_zprime_mean": float(norm_zp.mean()),
        "target_positive_rate": float(t_z.mean()),
        "cells_after": {f"target={t},protected={g}": int(np.sum((t_z == t) & (g_zp == g)))
                        for t in (0, 1) for g in (0, 1)},
    }


def latent_keep_rate(z: np.ndarray, z_prime: np.ndarray, target: Boundary,
                     protected: Boundary,
                     target_by_group: tuple[Boundary, Boundary] | None = None) -> float:
    """Share of pairs whose latent target side is kept: by the shared target boundary, or
    with domain-dependent ones, ``z`` by its own group's boundary and ``z'`` by the other
    group's (the one the complement keeps the score on; ``z'`` may sit on the protected
    hyperplane itself, so its own side would say nothing)."""
    if target_by_group is None:
        return float(np.mean(target.predict(z) == target.predict(z_prime)))
    g = protected.predict(z) == 1
    t0, t1 = target_by_group
    own = np.where(g, t1.predict(z), t0.predict(z))
    other = np.where(g, t0.predict(z_prime), t1.predict(z_prime))
    return float(np.mean(own == other))


def read_pool(latents: Path, scores: Path, skip: int) -> tuple[pd.DataFrame, np.ndarray,
                                                               pd.DataFrame]:
    """The sampled latents after the first ``skip`` (used to fit/validate boundaries)."""
    table, z = read_latents(latents)
    score_frame = read_parquet(scores)
    return table.iloc[skip:].reset_index(drop=True), z[skip:], score_frame


def complement_spec(p: Params, n_real: int) -> PairSpec:
    """The ``complement`` params as a :class:`PairSpec`, ``n_pairs: 0`` resolved to the
    augment budget of ``n_real`` real training images (a smaller explicit ``n_pairs`` is
    kept, with a warning: the GAN strategies then train on less than their share)."""
    c, a = p.complement, p.augment
    need = budget_pairs(n_real, a.synthetic_share, a.synthetic_weight)
    if c.n_pairs and c.n_pairs < need:
        log.warning("complement.n_pairs = %d is below the %d pairs augment.synthetic_share = "
                    "%g of %d real images needs; the GAN strategies will train on less (0: "
                    "auto)", c.n_pairs, need, a.synthetic_share, n_real)
    n_pairs = c.n_pairs or auto_n_pairs(n_real, a.synthetic_share, a.synthetic_weight)
    return from_params(PairSpec, c, n_pairs=n_pairs, seed=derive_seed(p.base.seed, 7))


def build_pair_set(p: Params, gen: nn.Module, classifiers: dict[str, nn.Module],
                   boundaries: str | Path, latents: Path, scores: Path, train_dir: str | Path,
                   out: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The ``complement`` stage's pair set in ``out`` (:func:`make_pairs` with the params'
    sources: the sampled pool past the boundaries' fit/val rows for ``selection: all``
    without a minimum distance, the rarest real cell for ``targeted``); its report.

    ``train_dir`` (the real training split) sets the budget and, for ``targeted``, the
    rarest cell.
    """
    c = p.complement
    target, protected = read_boundaries(boundaries)
    by_group = read_group_boundaries(boundaries) if p.boundaries.domain_dependent else None
    spec = complement_spec(p, len(shard_refs(train_dir, ["id"])))
    pool = rare = None
    if c.selection == "all" and c.min_distance == 0:
        pool = read_pool(latents, scores, p.boundaries.n_fit + p.boundaries.n_val)
    elif c.selection == "targeted":
        t, g = p.dataset.target, p.dataset.protected
        train = shard_refs(train_dir, [t, g])
        rare = rarest_cell(train[t].to_numpy(), train[g].to_numpy())
    report = make_pairs(gen, classifiers, target, protected, spec, out, device=device,
                        pool=pool, rare_cell=rare, target_by_group=by_group)
    return {**report, "rare_cell": list(rare) if rare else None}


def pair_figure_rows(gen: nn.Module, pairs: str | Path, device: torch.device | str = "cpu",
                     n: int = 16) -> list[np.ndarray]:
    """``G(z)`` above ``G(z')`` for ``n`` seed-0 picks of a pairs file (the stage's figure)."""
    _, pair_z = read_latent_arrays(pairs, ("z", "z_prime"))
    z, zp = pair_z["z"], pair_z["z_prime"]
    pick = np.random.default_rng(0).choice(len(z), size=min(n, len(z)), replace=False)
    return [generate_uint8(gen, torch.from_numpy(z[pick]).to(device)),
            generate_uint8(gen, torch.from_numpy(zp[pick]).to(device))]
