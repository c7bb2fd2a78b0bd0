"""Embedding files and the rows they cover: which prepared images a verification embeds,
the identities held out of a trained embedder, and the embeddings Parquet
(``id, split, identity, head_fit, embedding``) the embed stage writes and verify reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from facebalance.data.shards import read_arrow, read_columns, write_table_atomic
from facebalance.errors import FacebalanceError

SPLITS = ("train", "val", "test")


def embedding_rows(data: str | Path, need_identity: bool) -> pd.DataFrame:
    """Shard references of every image of the prepared splits, with ``split`` and
    ``identity`` (empty strings where a dataset has none and none is needed)."""
    parts = []
    for split in SPLITS:
        if not (Path(data) / split).exists():
            continue
        refs = read_columns(Path(data) / split)
        refs["path"] = str(Path(data) / split)
        parts.append(refs.assign(split=split))
    if not parts:
        raise FacebalanceError(f"embed: {data} holds no train/val/test shards; run prepare")
    rows = pd.concat(parts, ignore_index=True)
    if "identity" not in rows.columns:
        if need_identity:
            raise FacebalanceError(
                f"embed: the images of {data} have no identity column; embed.weights: train "
                "learns from identities (use pretrained weights or embed.model: dlib)")
        rows["identity"] = ""
    rows["identity"] = rows["identity"].astype(str)
    return rows[["id", "split", "identity", "path", "_file", "_row"]]


def pairs_possible(rows: pd.DataFrame) -> str:
    """Why no identity pairs can be drawn from ``rows`` ("" when they can): every split
    needs two identities and one identity with two images (a genuine and an impostor
    pair)."""
    if (rows["identity"] == "").all():
        return "the prepared images have no identity column"
    for split in SPLITS:
        counts = rows.loc[rows["split"] == split, "identity"].value_counts()
        if len(counts) < 2 or counts.max() < 2:
            return (f"the {split} split has {len(counts)} identities, "
                    f"{int((counts >= 2).sum())} with two images")
    return ""


def holdout_identities(rows: pd.DataFrame, share: float, seed: int) -> np.ndarray:
    """True for the rows of a seeded ``share`` of the training identities (kept out of the
    embedder's training for the head's pairs) and for every val/test row."""
    train = rows["split"].to_numpy() == "train"
    ids = np.sort(rows.loc[train, "identity"].unique())
    rng = np.random.default_rng(seed)
    held = set(ids[rng.permutation(len(ids))[: round(share * len(ids))]])
    return ~train | rows["identity"].isin(held).to_numpy()


def embeddings_table(rows: pd.DataFrame, vectors: np.ndarray) -> pa.Table:
    """``id``, ``split``, ``identity``, ``head_fit`` and ``embedding``
    (``fixed_size_list<float32>[d]``)."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.table({
        "id": pa.array(rows["id"].astype(str).tolist(), pa.string()),
        "split": pa.array(rows["split"].tolist(), pa.string()),
        "identity": pa.array(rows["identity"].tolist(), pa.string()),
        "head_fit": pa.array(rows["head_fit"].to_numpy(bool)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel(), pa.float32()),
                                                       v.shape[1])})


def write_embeddings(path: str | Path, table: pa.Table) -> None:
    """Write an embeddings table atomically."""
    write_table_atomic(table, path, row_group_size=10000)


def read_embeddings(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The other columns of an embeddings file and the ``(n, d)`` float32 embeddings."""
    path = Path(path)
    if not path.is_file():
        raise FacebalanceError(f"embeddings {path} do not exist; run the embed stage")
    table = read_arrow(path)
    if "embedding" not in table.column_names or not pa.types.is_fixed_size_list(
            table.schema.field("embedding").type):
        raise FacebalanceError(
            f"embeddings {path}: expected a column 'embedding' of fixed_size_list<float32>")
    col = table.column("embedding").combine_chunks()
    vectors = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col),
                                                                   col.type.list_size)
    return table.drop_columns(["embedding"]).to_pandas(), vectors.astype(np.float32)


def pair_image_rows(rows: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """The rows a pairs file uses (``id_a`` / ``id_b``): all a pretrained embedder needs
    to embed when the pairs decide what is verified (LFW's pairs use 7,701 of its 13,233
    images)."""
    used = pd.unique(pd.concat([pairs["id_a"], pairs["id_b"]], ignore_index=True))
    return rows[rows["id"].isin(used)].reset_index(drop=True)


def skip_reason(data: str | Path, rows: pd.DataFrame) -> str:
    """Why there is nothing to verify (no pairs file and no repeated identities), or ``""``.

    An attribute-only dataset (a folder + CSV without identities) must not fail ``dvc
    repro`` of the attribute pipeline: embed and verify then write outputs that say so.
    """
    why = "" if (Path(data) / "pairs.parquet").is_file() else pairs_possible(rows)
    return f"{why} and there is no pairs file: no verification pairs" if why else ""
