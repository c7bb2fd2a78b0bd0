"""Verification pairs from images with identities: genuine and impostor, balanced by group.

Within each split (identities never cross splits: synthfaces and the loaders name them per
split, and :func:`identity_pairs` refuses an identity seen in two splits), every group
gets the same number of genuine pairs (two distinct images of one identity of the group;
no pair twice while the group has enough distinct ones)
and of impostor pairs (images of two distinct identities of the group: the demographically
matched impostors NIST FRVT measures false matches on). ``cross_share`` adds impostor pairs
across groups, with group ``-1``: they count in the overall rates, not in a group's.

The verify stage's pairs (:func:`load_pairs`) are a prepared pairs file (LFW) when there is
one, else drawn here; their groups come from the shards or a CSV (:func:`attach_groups`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from facebalance.data.shards import read_columns, read_parquet
from facebalance.errors import FacebalanceError

log = logging.getLogger(__name__)

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


def pair_group(rows: pd.DataFrame, pairs: pd.DataFrame, column: str) -> np.ndarray:
    """The ``column`` group of each pair: the value both faces share, ``-1`` when they
    differ (such pairs count in the overall rates, not in a group's)."""
    value = rows.set_index("id")[column]
    a = value.reindex(pairs["id_a"]).to_numpy()
    b = value.reindex(pairs["id_b"]).to_numpy()
    return np.where(a == b, a, -1).astype(np.int64)


def synth_pairs(rows: pd.DataFrame, groups: Sequence[str], n_per_group: int, seed: int,
                cross_share: float) -> pd.DataFrame:
    """Genuine and impostor pairs of every split, balanced by ``groups[0]`` (one group when
    ``groups`` is empty); train pairs only from rows with ``head_fit`` set (identities the
    embedder did not train on)."""
    use = rows[(rows["split"] != "train") | rows["head_fit"]].copy()
    use["group"] = use[groups[0]].to_numpy(np.int64) if groups else 0
    return identity_pairs(use[["id", "identity", "group", "split"]], n_per_group, seed,
                          cross_share=cross_share)


def attach_groups(rows: pd.DataFrame, data: str | Path, groups: Sequence[str],
                  group_file: str = "") -> pd.DataFrame:
    """``rows`` with the ``groups`` columns, from the prepared shards or, for real data,
    a CSV mapping ``identity`` to group columns (``verify.group_file``).

    Text groups (``Black``, ``White``...) become numbers 0..K-1 in sorted order. Columns
    the images lack (the synthfaces defaults on a real dataset) are left out with a
    warning; :func:`present_groups` lists the ones kept.
    """
    if rows["id"].duplicated().any():
        raise FacebalanceError(
            f"verify: image id {rows.loc[rows['id'].duplicated(), 'id'].iloc[0]!r} occurs "
            "twice in the embeddings; rerun prepare and embed")
    out = rows.copy()
    if group_file:
        path = Path(group_file)
        try:
            mapping = pd.read_csv(path, dtype={"identity": str})
        except (OSError, ValueError) as err:
            raise FacebalanceError(f"verify.group_file {path}: cannot read it ({err})") from None
        if "identity" not in mapping.columns:
            raise FacebalanceError(
                f"verify.group_file {path}: no 'identity' column; it has {list(mapping)}")
        cols = [g for g in groups if g in mapping.columns]
        if mapping["identity"].duplicated().any():
            first = mapping.loc[mapping["identity"].duplicated(), "identity"].iloc[0]
            raise FacebalanceError(f"verify.group_file {path}: identity {first!r} is listed "
                                   "twice")
        out = out.merge(mapping[["identity", *cols]], on="identity", how="left")
    labels = []
    for split in out["split"].unique():
        frame = read_columns(Path(data) / str(split))
        keep = ["id", *[g for g in groups if g in frame.columns and g not in out.columns]]
        labels.append(frame[keep])
    if labels:
        extra = pd.concat(labels, ignore_index=True).drop_duplicates("id")
        if len(extra.columns) > 1:
            out = out.merge(extra, on="id", how="left")
    if len(out) != len(rows):  # a merge that added rows would misalign the embeddings
        raise FacebalanceError("verify: group columns do not map one to one onto the images")
    missing = [g for g in groups if g not in out.columns]
    if missing and group_file:  # the user named a file for them
        raise FacebalanceError(
            f"verify.groups lists {missing}, which neither the prepared images nor "
            f"verify.group_file hold; set verify.groups to existing columns (or [])")
    if missing:  # the synthfaces defaults on a real dataset: rates for the others only
        log.warning("verify: no column %s in the prepared images; no per-group rates for "
                    "them (verify.groups, verify.group_file)", missing)
    for g in (g for g in groups if g in out.columns):
        col = out[g]
        if col.isna().any():
            first = out.loc[col.isna(), "identity"].iloc[0]
            raise FacebalanceError(
                f"verify: identity {first!r} has no {g!r} group "
                + (f"in {group_file}" if group_file else "in the prepared images"))
        if not pd.api.types.is_integer_dtype(col):
            out[g] = pd.factorize(col.astype(str), sort=True)[0]
    return out


def present_groups(rows: pd.DataFrame, groups: Sequence[str]) -> list[str]:
    """The ``groups`` columns that :func:`attach_groups` found."""
    return [g for g in groups if g in rows.columns]


def load_pairs(data: str | Path, rows: pd.DataFrame, groups: Sequence[str],
               n_per_group: int, seed: int, cross_share: float) -> tuple[pd.DataFrame, str]:
    """The prepared ``pairs.parquet`` (LFW) when there is one, else pairs drawn from the
    identities; and which of the two it is."""
    path = Path(data) / "pairs.parquet"
    if path.is_file():
        return usable_pairs(read_parquet(path, ["id_a", "id_b", "same", "split"]), rows), (
            "pairs file")
    return synth_pairs(rows, groups, n_per_group, seed, cross_share), "identities"


def usable_pairs(pairs: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The pairs of a pairs file whose two images sit in the pair's split, and, for train
    pairs, are ``head_fit`` (not trained on by the embedder): a head fitted on pairs of
    faces the embedder has learned reads new faces wrongly. The others are dropped and
    logged."""
    info = rows.set_index("id")
    keep = np.ones(len(pairs), dtype=bool)
    for col in ("id_a", "id_b"):
        split = info["split"].reindex(pairs[col]).to_numpy()
        fit = info["head_fit"].reindex(pairs[col]).fillna(False).to_numpy(bool)
        keep &= split == pairs["split"].to_numpy()
        keep &= (pairs["split"].to_numpy() != "train") | fit
    if not keep.all():
        log.warning("verify: %d of %d pairs of the pairs file dropped (an image in another "
                    "split, or a train pair of faces the embedder trained on)",
                    int((~keep).sum()), len(pairs))
    return pairs[keep].reset_index(drop=True)
