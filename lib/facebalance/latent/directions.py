"""Guided group directions (Balanced Face Dataset, arXiv 2308.03495).

A group classifier labels generated images; a multinomial logistic regression on their
latents gives each group ``g`` a logit ``w_g . z + b_g``. The direction of group ``g`` is

    d_g = (w_g - mean_k w_k) / |w_g - mean_k w_k|

the unit vector along which ``g``'s logit rises fastest against the average of the others
(for two groups, plus and minus the one boundary normal). To make a face of an
under-represented group, a fresh latent walks along ``d_g`` in steps of ``step`` until the
group classifier's most likely group of ``G(z)`` is ``g``, for at most ``max_steps`` steps;
a latent that never gets there is dropped, and the share that do is the hit rate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from facebalance.errors import FacebalanceError

log = logging.getLogger(__name__)


def group_directions(z: np.ndarray, groups: np.ndarray, n_groups: int, *, c: float = 1.0,
                     seed: int = 0) -> tuple[np.ndarray, float]:
    """Unit directions ``(n_groups, d)`` of each group in latent space, and the fit's accuracy.

    Parameters
    ----------
    z
        ``(n, d)`` latents.
    groups
        The group the classifier gives each ``G(z)`` (``0..n_groups-1``).
    n_groups
        Number of groups.
    c, seed
        Inverse regularization strength and seed of the logistic regression.

    Returns
    -------
    directions, accuracy
        A group that never occurs among the labelled latents has a row of NaN (no
        direction; :func:`guide_to_quotas` refuses to walk into it).

    Raises
    ------
    FacebalanceError
        When fewer than two groups occur.
    """
    groups = np.asarray(groups, dtype=np.int64)
    present = np.unique(groups)
    if len(present) < 2:
        raise FacebalanceError(
            f"guided: the group classifier gives every generated image group {present.tolist()}"
            "; with one group there is no direction (raise guided.n_fit, or train the GAN "
            "longer)")
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    model.fit(z, groups)
    w = model.coef_.astype(np.float64)
    if len(present) == 2:  # sklearn keeps one row for two classes: the logit of the second
        w = np.stack([-w[0], w[0]])
    w = w - w.mean(axis=0, keepdims=True)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    out = np.full((n_groups, z.shape[1]), np.nan)  # groups never made: no direction
    out[present] = w
    return out.astype(np.float32), float(model.score(z, groups))


def walk_to_group(z0: torch.Tensor, direction: torch.Tensor, group: int,
                  classify: Callable[[torch.Tensor], torch.Tensor], *, step: float,
                  max_steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move every latent along ``direction`` until ``classify`` gives ``group``.

    Parameters
    ----------
    z0
        ``(n, d)`` starting latents.
    direction
        ``(d,)`` unit direction of ``group``.
    group
        The group to reach.
    classify
        Maps latents ``(m, d)`` to the classifier's group of their images ``(m,)``.
    step, max_steps
        Step length and the most steps taken.

    Returns
    -------
    z, steps, hit
        Final latents, the steps each took, and whether it reached the group (latents that
        start in the group take 0 steps).
    """
    if step <= 0 or max_steps < 0:
        raise FacebalanceError("guided: step must be > 0 and max_steps >= 0")
    z = z0.clone()
    steps = torch.zeros(len(z), dtype=torch.int64)
    hit = torch.zeros(len(z), dtype=torch.bool)
    todo = torch.arange(len(z))
    for t in range(max_steps + 1):
        if not len(todo):
            break
        reached = classify(z[todo]).cpu() == group
        hit[todo[reached]] = True
        steps[todo[reached]] = t
        todo = todo[~reached]
        if t < max_steps and len(todo):
            z[todo] += step * direction.to(z.device)
    steps[~hit] = max_steps
    return z, steps, hit


def image_groups(gen: torch.nn.Module, classifier: torch.nn.Module,
                 batch_size: int = 1024) -> Callable[[torch.Tensor], torch.Tensor]:
    """``classify`` for :func:`walk_to_group`: the group classifier's most likely group of
    ``G(z)`` (a K-logit classifier, or one logit for two groups)."""
    @torch.no_grad()
    def classify(z: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, len(z), batch_size):
            logits = classifier(gen(z[s:s + batch_size]).clamp(-1, 1))
            out.append(logits.argmax(1) if logits.shape[1] > 1 else (logits[:, 0] >= 0)
                       .long())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)
    return classify


def guide_to_quotas(directions: np.ndarray, quotas: dict[int, int],
                    classify: Callable[[torch.Tensor], torch.Tensor], *, step: float,
                    max_steps: int, batch_size: int, seed: int, device: torch.device,
                    max_draws: int = 20,
                    to_latent: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, dict[str, float]]]:
    """Fresh latents walked into each group until it has its quota of hits.

    Parameters
    ----------
    directions
        ``(K, d)`` from :func:`group_directions`.
    quotas
        New images each group needs.
    classify
        Latents to groups (:func:`image_groups`).
    step, max_steps
        The walk (:func:`walk_to_group`).
    batch_size
        Fresh latents drawn at a time.
    seed, device
        Seeds the draws; where latents live.
    max_draws
        Give up on a group after drawing this many times its quota (a group the generator
        cannot reach); the report says how many it got.
    to_latent
        Maps the N(0, I) draws to the generator's latents (w of a mapping network).

    Returns
    -------
    z, groups, steps, report
        The hits' latents, their group and steps, and per group ``needed``, ``made``,
        ``drawn``, ``hit_rate`` and ``mean_step_length`` (steps x step of the hits).
    """
    gen_rng = torch.Generator().manual_seed(seed)
    d = directions.shape[1]
    zs, gs, ss, report = [], [], [], {}
    for g, need in sorted(quotas.items()):
        if not np.isfinite(directions[g]).all():
            raise FacebalanceError(
                f"guided: group {g} needs {need} images but the group classifier gives it "
                "to no generated image, so it has no direction (raise guided.n_fit, or "
                "train the GAN longer)")
        made, drawn, hit_steps = 0, 0, []
        direction = torch.from_numpy(directions[g])
        while made < need and drawn < max_draws * need:
            z0 = torch.randn(batch_size, d, generator=gen_rng).to(device)
            if to_latent is not None:  # w = mapping(z) for a mapping-network generator
                z0 = to_latent(z0)
            z, steps, hit = walk_to_group(z0, direction, g, classify, step=step,
                                          max_steps=max_steps)
            drawn += batch_size
            take = torch.nonzero(hit).flatten()[:need - made]
            zs.append(z[take].cpu().numpy())
            ss.append(steps[take].numpy())
            gs.append(np.full(len(take), g, dtype=np.int64))
            hit_steps.append(steps[hit].numpy())
            made += len(take)
        all_steps = np.concatenate(hit_steps) if hit_steps else np.zeros(0)
        report[g] = {"needed": int(need), "made": int(made), "drawn": int(drawn),
                     "hit_rate": float(len(all_steps) / drawn) if drawn else None,
                     "mean_step_length": float(all_steps.mean() * step) if len(all_steps)
                     else None}
        if made < need:
            log.warning("guided: group %d got %d of %d images after %d draws", g, made, need,
                        drawn)
    if not zs:
        return (np.zeros((0, d), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64),
                report)
    return (np.concatenate(zs).astype(np.float32), np.concatenate(gs), np.concatenate(ss),
            report)
