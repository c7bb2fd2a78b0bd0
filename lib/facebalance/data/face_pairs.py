"""Verification pairs from images with identities: genuine and impostor, balanced by group.

Within each split (identities never cross splits: synthfaces and the loaders name them per
split, and :func:`identity_pairs` refuses an identity seen in two splits), every group
gets the same number of genuine pairs (two distinct images of one identity of the group;
no pair twice while the group has enough distinct ones)
and of impostor pairs (images of two distinct identities of the group: the demographically
matched impostors NIST FRVT measures false matches on). ``cross_share`` adds impostor pairs
across groups, with group ``-1``: they count in the overall rates, not in a group's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from facebalance.errors import FacebalanceError

PAIR_COLUMNS = ("id_a", "id_b", "same", "group", "split")


def _distinct_genuine(rng: np.random.Generator, order: np.ndarray, starts: np.ndarray,
                      counts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` genuine pairs (row positions) of identities with ``counts`` >= 2 images at
    ``order[starts:starts + counts]``: every unordered image pair is enumerated, and ``n``
    of them are drawn without replacement when there are that many."""
    parts_a, parts_b = [], []
    for c in np.unique(counts):
        p, q = np.triu_indices(int(c), 1)
        base = starts[counts == c][:, None]
        parts_a.append((base + p).ravel())
        parts_b.append((base + q).ravel())
    all_a, all_b = np.concatenate(parts_a), np.concatenate(parts_b)
    pick = rng.choice(len(all_a), n, replace=len(all_a) < n)
    return order[all_a[pick]], order[all_b[pick]]


def identity_pairs(rows: pd.DataFrame, n_per_group: int, seed: int, *,
                   cross_share: float = 0.0) -> pd.DataFrame:
    """Seeded genuine and impostor pairs of each split.

    Parameters
    ----------
    rows
        One row per image: ``id``, ``identity``, ``group`` (int) and ``split``.
    n_per_group
        Genuine pairs per group and split; as many impostor pairs.
    seed
        Seeds every draw.
    cross_share
        Cross-group impostor pairs per split, as a share of that split's within-group
        impostor pairs.

    Returns
    -------
    pandas.DataFrame
        :data:`PAIR_COLUMNS`; ``same`` is 1 for genuine pairs.

    Raises
    ------
    FacebalanceError
        When an identity occurs in two splits or in two groups, or a group has no identity
        with two images (no genuine pair) or fewer than two identities (no impostor pair).
    """
    missing = [c for c in ("id", "identity", "group", "split") if c not in rows.columns]
    if missing:
        raise FacebalanceError(f"pairs: the images lack columns {missing}")
    spans = rows.groupby("identity")[["split", "group"]].nunique()
    for col in ("split", "group"):
        bad = spans.index[spans[col] > 1]
        if len(bad):
            raise FacebalanceError(
                f"pairs: identity {bad[0]!r} occurs in more than one {col}; pairs need each "
                f"identity in one {col}")
    rng = np.random.default_rng(seed)
    parts = []
    for split, in_split in rows.groupby("split", sort=True):
        impostors_all = []
        for group, members in in_split.groupby("group", sort=True):
            ids = members["id"].to_numpy()
            ident = pd.factorize(members["identity"])[0]
            order = np.argsort(ident, kind="stable")
            counts = np.bincount(ident)
            starts = np.r_[0, np.cumsum(counts)[:-1]]
            multi = np.flatnonzero(counts >= 2)
            if not len(multi) or len(counts) < 2:
                raise FacebalanceError(
                    f"pairs: group {group} of split {split!r} has {len(counts)} identities, "
                    f"{len(multi)} with two images; it needs both at least "
                    "(genuine and impostor pairs)")
            # Genuine: two distinct images of one identity; distinct pairs while the group
            # has enough of them, drawn with replacement only when it has fewer.
            a, b = _distinct_genuine(rng, order, starts[multi], counts[multi], n_per_group)
            parts.append(pd.DataFrame({"id_a": ids[a], "id_b": ids[b], "same": 1,
                                       "group": int(group), "split": split}))
            # Impostor: two distinct identities of the group, one image of each.
            i1 = rng.integers(0, len(counts), n_per_group)
            i2 = (i1 + rng.integers(1, len(counts), n_per_group)) % len(counts)
            a = order[starts[i1] + rng.integers(0, counts[i1])]
            b = order[starts[i2] + rng.integers(0, counts[i2])]
            parts.append(pd.DataFrame({"id_a": ids[a], "id_b": ids[b], "same": 0,
                                       "group": int(group), "split": split}))
            impostors_all.append(members)
        n_cross = round(cross_share * n_per_group * len(impostors_all))
        if n_cross and len(impostors_all) > 1:
            pool = pd.concat(impostors_all, ignore_index=True)
            g = pool["group"].to_numpy()
            a = rng.integers(0, len(pool), 4 * n_cross)
            b = rng.integers(0, len(pool), 4 * n_cross)
            ok = np.flatnonzero(g[a] != g[b])[:n_cross]
            parts.append(pd.DataFrame({"id_a": pool["id"].to_numpy()[a[ok]],
                                       "id_b": pool["id"].to_numpy()[b[ok]], "same": 0,
                                       "group": -1, "split": split}))
    out = pd.concat(parts, ignore_index=True)
    out["same"] = out["same"].astype(np.int8)
    return out[list(PAIR_COLUMNS)]
