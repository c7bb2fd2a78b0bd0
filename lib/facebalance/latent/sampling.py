"""Latent tables and streaming generation of image shards from a generator.

Latents contract: Parquet with ``id``, ``z`` (``fixed_size_list<float32>[dim]``), ``seed``
and optional score/label columns. Generation runs in batches and streams PNG shards to
disk; PNG encoding of one batch overlaps the generator's forward pass on the next.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn
from tqdm import tqdm

from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import (
    ShardWriter,
    encode_png_batch,
    read_arrow,
    shard_refs,
    write_table_atomic,
)
from facebalance.errors import FacebalanceError
from facebalance.models.gan import generate_uint8, prior_latents_numpy
from facebalance.models.train import predict_proba

log = logging.getLogger(__name__)


def sample_prior(gen: nn.Module, n: int, seed: int) -> np.ndarray:
    """``n`` seeded prior draws in the generator's latent space: :func:`sample_latents` of
    its size, mapped to w when it has a mapping network."""
    return prior_latents_numpy(gen, sample_latents(n, gen.cfg.latent_dim, seed))


def sample_latents(n: int, dim: int, seed: int) -> np.ndarray:
    """``(n, dim)`` float32 draws from N(0, I), deterministic in ``seed``."""
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


def latents_table(ids: list[str] | np.ndarray, z: np.ndarray, seed: int,
                  columns: dict[str, np.ndarray] | None = None, name: str = "z") -> pa.Table:
    """Arrow table with ``id``, ``z`` as ``fixed_size_list<float32>[dim]``, ``seed``, extras."""
    z = np.ascontiguousarray(z, dtype=np.float32)
    flat = pa.array(z.ravel(), type=pa.float32())
    arrays = {"id": pa.array(list(ids), type=pa.string()),
              name: pa.FixedSizeListArray.from_arrays(flat, z.shape[1]),
              "seed": pa.array(np.full(len(z), seed, dtype=np.int64))}
    for k, v in (columns or {}).items():
        arrays[k] = pa.array(np.asarray(v))
    return pa.table(arrays)


def write_latents(path: str | Path, table: pa.Table) -> None:
    """Write a latent table atomically."""
    write_table_atomic(table, path, row_group_size=10000)


def read_latents(path: str | Path, name: str = "z") -> tuple[pd.DataFrame, np.ndarray]:
    """The non-latent columns as a DataFrame and the latents as an ``(n, dim)`` array."""
    frame, arrays = read_latent_arrays(path, (name,))
    return frame, arrays[name]


def read_latent_arrays(path: str | Path, names: Sequence[str]
                       ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One read of a latents file: the other columns, and each named latent column as an
    ``(n, dim)`` float32 array."""
    path = Path(path)
    if not path.is_file():
        raise FacebalanceError(f"latents {path} do not exist; run the stage that writes them")
    table = read_arrow(path)
    arrays = {}
    for name in names:
        if name not in table.column_names:
            raise FacebalanceError(f"latents {path} have no column {name!r}")
        col = table.column(name).combine_chunks()
        if not pa.types.is_fixed_size_list(col.type):
            raise FacebalanceError(
                f"latents {path}: column {name!r} must be fixed_size_list<float32>")
        z = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
        arrays[name] = z.astype(np.float32, copy=False)
    return table.drop_columns(list(names)).to_pandas(), arrays


def _batches(z: np.ndarray, batch: int) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, len(z), batch):
        yield start, z[start:start + batch]


def generate_shards(gen: nn.Module, z: np.ndarray, ids: list[str], out: str | Path, *,
                    device: torch.device, batch_size: int = 1024,
                    columns: pd.DataFrame | None = None, rows_per_file: int = 10000,
                    row_group_size: int = 1000, source: str = "generated",
                    progress: bool = True) -> int:
    """Generate ``G(z)`` for every latent and write image shards (atomically as a whole).

    Parameters
    ----------
    gen
        Generator mapping ``(B, d)`` latents to ``[-1, 1]`` images.
    z, ids
        Latents and their ids (one image per row, same order).
    out
        Shard directory to write.
    device
        Where the generator runs.
    batch_size
        Latents per forward pass.
    columns
        Extra per-row columns to store (same length as ``z``).
    rows_per_file, row_group_size
        Shard layout.
    source
        Value of the ``source`` column.
    progress
        Show a tqdm bar.

    Returns
    -------
    int
        Number of images written.
    """
    if len(ids) != len(z):
        raise FacebalanceError(f"generate: {len(ids)} ids for {len(z)} latents")
    ids = list(ids)
    bar = tqdm(total=len(z), desc=f"generate {Path(out).name}", unit="img",
               disable=not progress, mininterval=2.0)
    with ShardWriter(out, rows_per_file, row_group_size) as writer, \
            ThreadPoolExecutor(max_workers=1) as pool:
        pending = None

        def encode(start: int, images: np.ndarray) -> pd.DataFrame:
            frame = pd.DataFrame({"id": ids[start:start + len(images)],
                                  "image": encode_png_batch(images)})
            frame["source"] = source
            frame["weight"] = np.float32(1.0)
            if columns is not None:
                extra = columns.iloc[start:start + len(images)].reset_index(drop=True)
                frame = pd.concat([frame, extra], axis=1)
            return frame

        for start, zb in _batches(z, batch_size):
            images = generate_uint8(gen, torch.from_numpy(np.ascontiguousarray(zb)).to(device))
            if pending is not None:  # write the previous batch while this one was generated
                writer.write(pending.result())
            pending = pool.submit(encode, start, images)
            bar.update(len(zb))
        if pending is not None:
            writer.write(pending.result())
    bar.close()
    return len(z)


def score_shards_by_name(models: dict[str, nn.Module], path: str | Path,
                         device: torch.device, batch_size: int = 1024) -> pd.DataFrame:
    """Scores table (``id`` + one float32 column per model) of a shard directory.

    Images are streamed in file order (never all decoded at once) and each batch is
    decoded once for all models, so any number of generated images is scored in bounded
    memory.
    """
    refs = shard_refs(path, ["id"])
    dataset = ShardDataset(refs, {}, cache_mb=0, group_cache=4)
    scores = predict_proba(list(models.values()), dataset, device, batch_size)
    return pd.DataFrame({"id": refs["id"].to_numpy(), **dict(zip(models, scores, strict=True))})
