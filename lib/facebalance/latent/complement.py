"""z/z' complements (Ramaswamy, Kim, Russakovsky, CVPR 2021), vectorized over all latents.

For target boundary ``t`` and protected boundary ``g`` (unit normals ``w_t``, ``w_g``):

    g_perp_t = normalize(w_g - (w_g . w_t) w_t),   cos(theta) = w_g . w_t
    z' = z - (2 (w_g . z + b_g) / sin(theta)) g_perp_t

``z'`` keeps the target score (the step is orthogonal to ``w_t``) and mirrors the protected
score (``w_g . z' + b_g = -(w_g . z + b_g)``). Ablations of the paper: ``perp``
(``z - 2 d w_g``, which also moves the target score) and ``on_hyperplane`` (half the
step: protected score 0). Beyond the paper, ``shell`` keeps ``z'`` in distribution:
``rescale`` gives ``z'`` the norm of ``z`` (latents of a Gaussian prior live on a thin
shell), ``cap`` limits the step length to ``max_step``.

*Domain-dependent hyperplanes* (the paper's extension, gan-debiasing ``linear_dom_dep.py``):
one target boundary per protected group, ``t_0`` and ``t_1``. For ``z`` on side ``g`` of
the protected boundary, ``z'`` is the closest point to ``z`` with

    w_g . z' + b_g = -(w_g . z + b_g)                 (protected mirrored)
    w_{t_g'} . z' + b_{t_g'} = w_{t_g} . z + b_{t_g}   (the target score z has in its own
                                                        group, now read by the other's)

i.e. ``z' = z + W (W^T W)^{-1} r`` with ``W = [w_g, w_{t_g'}]`` and ``r`` the constraint
residuals at ``z`` (the minimum-norm step; the paper iterates towards the same point).
With ``t_0 = t_1 = t`` this is the paper formula above.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from facebalance.choices import COMPLEMENT_MODES, COMPLEMENT_SHELLS
from facebalance.errors import FacebalanceError
from facebalance.latent.boundaries import Boundary

MODES = COMPLEMENT_MODES
SHELLS = COMPLEMENT_SHELLS


def complement_direction(target: Boundary, protected: Boundary) -> tuple[np.ndarray, float]:
    """``g_perp_t`` (unit) and ``sin(theta)`` between the two normals."""
    cos = float(protected.w @ target.w)
    perp = protected.w - cos * target.w
    norm = np.linalg.norm(perp)
    if norm < 1e-6:
        raise FacebalanceError(
            "complement: the target and protected boundaries are parallel; no direction "
            "changes the protected attribute while keeping the target")
    return perp / norm, float(np.sqrt(max(0.0, 1.0 - cos**2)))


def domain_dependent_step(z: np.ndarray, protected: Boundary,
                          target_by_group: tuple[Boundary, Boundary],
                          half: bool = False) -> np.ndarray:
    """The step ``z' - z`` of the domain-dependent complement of every row (module
    docstring); ``half``: land on the protected hyperplane instead of its mirror."""
    z64 = np.asarray(z, dtype=np.float64)
    dist = protected.distance(z64)
    side = dist > 0
    step = np.zeros_like(z64)
    for g in (0, 1):
        rows = np.flatnonzero(side == bool(g))
        if not len(rows):
            continue
        own, other = target_by_group[g], target_by_group[1 - g]
        w = np.stack([protected.w, other.w], axis=1)  # (d, 2)
        gram = w.T @ w
        if abs(np.linalg.det(gram)) < 1e-10:
            raise FacebalanceError(
                f"complement: the protected boundary and the target boundary of group "
                f"{1 - g} are parallel; no step flips one and keeps the other")
        zr = z64[rows]
        want = np.stack([(0.0 if half else -1.0) * dist[rows], own.distance(zr)], axis=1)
        have = np.stack([dist[rows], other.distance(zr)], axis=1)
        step[rows] = (want - have) @ np.linalg.inv(gram).T @ w.T
    return step


def complement_latents(z: np.ndarray, target: Boundary, protected: Boundary,
                       mode: str = "paper", shell: str = "none",
                       max_step: float = 4.0,
                       target_by_group: tuple[Boundary, Boundary] | None = None
                       ) -> np.ndarray:
    """Complementary latents of every row of ``z`` in one vectorized expression.

    Parameters
    ----------
    z
        Latents ``(n, d)``.
    target, protected
        Normalized boundaries.
    mode
        ``paper``, ``perp`` or ``on_hyperplane`` (see the module docstring).
    shell
        ``none``, ``rescale`` (``|z'| = |z|``) or ``cap`` (step length at most
        ``max_step``).
    max_step
        Longest step for ``shell="cap"``.
    target_by_group
        Domain-dependent target boundaries ``(t_0, t_1)``; ``paper`` and ``on_hyperplane``
        then keep the target score across the two (``perp`` ignores the target anyway).

    Returns
    -------
    numpy.ndarray
        ``z'``, same shape and dtype as ``z``.
    """
    if mode not in MODES:
        raise FacebalanceError(f"complement: unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if shell not in SHELLS:
        raise FacebalanceError(f"complement: unknown shell {shell!r}; valid: {', '.join(SHELLS)}")
    z = np.asarray(z)
    dtype = z.dtype if z.dtype in (np.float32, np.float64) else np.float64
    z = z.astype(dtype, copy=False)
    # Distances in float64 (cheap: one matrix-vector product); the (n, d) update stays in
    # the latents' dtype so float32 latents need no float64 copy.
    if target_by_group is not None and mode != "perp":
        step = domain_dependent_step(z, protected, target_by_group,
                                     half=mode == "on_hyperplane")
        if shell == "cap":  # shorten the step to max_step, keeping its direction
            length = np.linalg.norm(step, axis=1, keepdims=True)
            step *= np.minimum(1.0, max_step / np.maximum(length, 1e-12))
        out = (z + step).astype(dtype)
        return _same_norm(z, out) if shell == "rescale" else out
    dist = (z @ protected.w.astype(dtype)).astype(np.float64) + protected.b  # (n,)
    if mode == "perp":
        direction, scale = protected.w, 2.0 * dist
    else:
        direction, sin = complement_direction(target, protected)
        scale = (2.0 if mode == "paper" else 1.0) * dist / sin
    if shell == "cap":
        scale = np.clip(scale, -max_step, max_step)
    # z - outer(scale, direction) with one (n, d) allocation instead of two: the second
    # array's page faults cost as much as the arithmetic.
    out = np.empty_like(z)
    np.multiply(scale.astype(dtype)[:, None], direction.astype(dtype)[None, :], out=out)
    np.subtract(z, out, out=out)
    return _same_norm(z, out) if shell == "rescale" else out


def flip_and_keep(label: np.ndarray, group: np.ndarray, target_scores: np.ndarray,
                  protected_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Did a complement do its job, as the attribute classifiers see its image?

    ``flipped``: the protected classifier puts ``G(z')`` on the other side of 0.5 than
    ``group`` (the source's group); ``kept``: the target classifier keeps ``label`` (the
    source's target). The source is ``G(z)`` for sampled pairs (its labels are its own
    scores thresholded) and the real face for complements of inverted real images.

    Returns
    -------
    flipped, kept
        Boolean arrays, one entry per pair.
    """
    flipped = (np.asarray(protected_scores) >= 0.5) != np.asarray(group).astype(bool)
    kept = (np.asarray(target_scores) >= 0.5) == np.asarray(label).astype(bool)
    return flipped, kept


def _same_norm(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` rescaled in place so each row has the norm of the same row of ``z``
    (``shell: rescale``: prior latents live on a thin shell)."""
    ratio = np.linalg.norm(z, axis=1) / np.maximum(np.linalg.norm(out, axis=1), 1e-12)
    out *= ratio[:, None].astype(out.dtype)
    return out


def draw_latents(n: int, dim: int, target: Boundary, protected: Boundary, *, seed: int,
                 cell: tuple[int, int] | None = None, min_distance: float = 0.0,
                 chunk: int = 200_000, max_draws: int = 50_000_000,
                 to_latent: Callable[[np.ndarray], np.ndarray] | None = None,
                 target_by_group: tuple[Boundary, Boundary] | None = None) -> np.ndarray:
    """Rejection-sample prior latents by where the boundaries put them.

    ``cell=(t, g)`` keeps latents with ``target.predict == t`` and ``protected.predict == g``
    (ask for the cell *opposite* in the protected attribute to the one the complements
    should land in); ``min_distance`` keeps latents at least that far from the protected
    boundary, whose complements flip clearly instead of staying ambiguous. ``to_latent``
    maps the N(0, I) draws to the generator's latents first (w of a mapping network);
    ``target_by_group`` reads a latent's target side off its own group's boundary.

    Returns
    -------
    numpy.ndarray
        ``(n, dim)`` float32 draws from N(0, I) meeting the conditions.

    Raises
    ------
    FacebalanceError
        When fewer than ``n`` are found within ``max_draws`` draws.
    """
    rng = np.random.default_rng(seed)
    found, total, drawn = [], 0, 0
    while total < n:
        if drawn >= max_draws:
            raise FacebalanceError(
                f"complement: only {total} of {n} latents meet cell={cell}, "
                f"min_distance={min_distance} after {drawn} draws")
        z = rng.standard_normal((chunk, dim), dtype=np.float32)
        if to_latent is not None:  # w = mapping(z) for a mapping-network generator
            z = to_latent(z)
        drawn += chunk
        keep = np.abs(protected.distance(z)) >= min_distance
        if cell is not None:
            g = protected.predict(z)
            if target_by_group is None:
                t = target.predict(z)
            else:  # the target side by the latent's own group's boundary
                t = np.where(g == 1, target_by_group[1].predict(z),
                             target_by_group[0].predict(z))
            keep &= (t == cell[0]) & (g == cell[1])
        found.append(z[keep])
        total += int(keep.sum())
    return np.concatenate(found)[:n]
