"""Torch datasets over image shards.

A training or evaluation set is a table of *references* — ``path`` (shard directory),
``_file`` and ``_row`` — plus per-row arrays (labels, groups, weights). :class:`ShardDataset`
serves batches by reference: when the distinct images fit in ``cache_mb`` they are decoded
once into one uint8 array (fast epochs on CPU); otherwise each worker decodes on demand and
keeps the compressed bytes of a few row groups, and :class:`BlockShuffleSampler` shuffles
row groups rather than rows so those caches hit. Either way a batch is fetched with one
``__getitems__`` call, so the per-item Python overhead of a DataLoader is avoided.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from facebalance.data.shards import (
    IMAGE_COLUMN,
    decode_image,
    open_parquet,
    parquet_errors,
    shard_files,
)

# Re-exported only for stage scripts of earlier commits (before stages/_checkout.py, a
# queued DVC experiment ran its snapshot's scripts against the workspace's lib).
from facebalance.data.shards import shard_refs as shard_refs
from facebalance.processes import leave_signals_to_parent

log = logging.getLogger(__name__)

REF_COLUMNS = ("path", "_file", "_row")


def _row_group_starts(files: list[Path]) -> list[np.ndarray]:
    starts = []
    for f in files:
        md = open_parquet(f).metadata
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        starts.append(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
    return starts


class ShardDataset(Dataset):
    """Images addressed by shard references, with per-row arrays alongside.

    Parameters
    ----------
    refs
        DataFrame with ``path`` (shard directory), ``_file`` (file index within it) and
        ``_row`` (row within that file), as returned by
        :func:`facebalance.data.shards.read_columns` plus a ``path`` column.
    arrays
        Per-row numpy arrays returned with each batch (e.g. ``label``, ``weight``).
    cache_mb
        Decode all distinct images up front when they take at most this many MiB.
    group_cache
        Row groups of compressed bytes each worker keeps when streaming.
    """

    def __init__(self, refs: pd.DataFrame, arrays: Mapping[str, np.ndarray],
                 cache_mb: float = 2048, group_cache: int = 32) -> None:
        missing = [c for c in REF_COLUMNS if c not in refs.columns]
        if missing:
            raise ValueError(f"refs lack columns {missing}")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        for k, v in self.arrays.items():
            if len(v) != len(refs):
                raise ValueError(f"array {k!r} has {len(v)} rows, refs have {len(refs)}")
        self.paths = sorted(refs["path"].astype(str).unique())
        path_idx = refs["path"].astype(str).map({p: i for i, p in enumerate(self.paths)})
        self.files = [shard_files(p) for p in self.paths]
        self.path_idx = path_idx.to_numpy(np.int64)
        self.file_idx = refs["_file"].to_numpy(np.int64)
        self.row_idx = refs["_row"].to_numpy(np.int64)
        self._starts = [_row_group_starts(fs) for fs in self.files]
        self.group_idx = np.empty(len(refs), dtype=np.int64)
        for (p, f), rows in refs.groupby([self.path_idx, self.file_idx]).indices.items():
            self.group_idx[rows] = np.searchsorted(self._starts[p][f], self.row_idx[rows],
                                                   side="right") - 1
        self._groups: OrderedDict[tuple[int, int, int], list] = OrderedDict()
        self._group_cache = group_cache
        self.image_shape = self._decode_one(0).shape if len(refs) else (0, 0, 3)
        self.images: np.ndarray | None = None
        self._slot: np.ndarray | None = None
        need_mb = self._unique_count() * int(np.prod(self.image_shape)) / 2**20
        if need_mb <= cache_mb:
            self._preload()
        elif cache_mb > 0:
            log.info("streaming images: %.0f MiB decoded would exceed cache_mb=%s",
                     need_mb, cache_mb)

    def __len__(self) -> int:
        return len(self.row_idx)

    def block_keys(self) -> np.ndarray:
        """An integer per row naming its row group (for block shuffling)."""
        return (self.path_idx * 1_000_003 + self.file_idx) * 100_003 + self.group_idx

    def _unique_count(self) -> int:
        return len(np.unique(self._key()))

    def _key(self) -> np.ndarray:
        return (self.path_idx * 1_000_003 + self.file_idx) * 10_000_000_019 + self.row_idx

    def _group_bytes(self, p: int, f: int, g: int) -> tuple[list, list]:
        key = (p, f, g)
        hit = self._groups.get(key)
        if hit is not None:
            self._groups.move_to_end(key)
            return hit
        path = self.files[p][f]
        with parquet_errors(path):
            table = open_parquet(path).read_row_group(g, columns=["id", IMAGE_COLUMN])
        value = (table.column("id").to_pylist(), table.column(IMAGE_COLUMN).to_pylist())
        self._groups[key] = value
        if len(self._groups) > self._group_cache:
            self._groups.popitem(last=False)
        return value

    def _decode_one(self, i: int) -> np.ndarray:
        p, f, g = self.path_idx[i], self.file_idx[i], self.group_idx[i]
        ids, blobs = self._group_bytes(p, f, g)
        offset = self.row_idx[i] - self._starts[p][f][g]
        return decode_image(blobs[offset], ids[offset], self.files[p][f])

    def _preload(self) -> None:
        """Decode every distinct image once, reading each row group once."""
        keys = self._key()
        uniq, first, slot = np.unique(keys, return_index=True, return_inverse=True)
        images = np.empty((len(uniq), *self.image_shape), dtype=np.uint8)
        order = np.lexsort((self.row_idx[first], self.file_idx[first], self.path_idx[first]))
        for j in order:  # sorted by file and row, so the group cache hits
            images[j] = self._decode_one(int(first[j]))
        self._groups.clear()
        self.images, self._slot = images, slot.astype(np.int64)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        idx = np.asarray(indices, dtype=np.int64)
        if self.images is not None:
            x = self.images[self._slot[idx]]
        else:
            x = np.stack([self._decode_one(int(i)) for i in idx])
        rows = {k: v[idx] for k, v in self.arrays.items()}
        rows["index"] = idx
        return torch.from_numpy(x), rows


class BlockShuffleSampler(Sampler[list[int]]):
    """Batches of shuffled indices that visit row groups in a shuffled order.

    Row groups are permuted, taken ``window`` at a time, and rows are shuffled within each
    window, so a streaming dataset decodes from at most ``window`` row groups at once.
    With ``window=0`` the whole set is shuffled (right when images are preloaded).
    With ``num_samples`` below the dataset size, each epoch takes the first
    ``num_samples`` of its (different) shuffled order: a fixed budget per epoch.
    Data-parallel (``world`` > 1): every rank draws the same global batches and takes rows
    ``rank, rank + world, ...`` of each, so together the ranks see what one process would.
    """

    def __init__(self, block_keys: np.ndarray, batch_size: int, seed: int, shuffle: bool = True,
                 window: int = 8, num_samples: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        self.block_keys = np.asarray(block_keys)
        self.num_samples = num_samples if 0 < num_samples < len(block_keys) else len(block_keys)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.window = window
        self.epoch = 0
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int) -> None:
        """Use a different, reproducible order for each epoch."""
        self.epoch = epoch

    def order(self) -> np.ndarray:
        """The full index order of the current epoch."""
        n = len(self.block_keys)
        if not self.shuffle:
            return np.arange(n)
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.window <= 0:
            return rng.permutation(n)
        _, block = np.unique(self.block_keys, return_inverse=True)
        blocks = rng.permutation(block.max() + 1)
        rank = np.empty_like(blocks)
        rank[blocks] = np.arange(len(blocks))
        window_of_row = rank[block] // self.window
        return np.lexsort((rng.random(n), window_of_row))

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()[: self.num_samples]
        for s, n in zip(range(0, len(order), self.batch_size), self.global_sizes(),
                        strict=False):
            yield order[s: s + n][self.rank::self.world].tolist()

    def global_sizes(self) -> list[int]:
        """Rows of each global batch of an epoch (all ranks together), in order. A last
        batch with fewer rows than ranks is left out (a rank would get none)."""
        sizes = [min(self.batch_size, self.num_samples - s)
                 for s in range(0, self.num_samples, self.batch_size)]
        return sizes if sizes[-1:] >= [self.world] else sizes[:-1]

    def __len__(self) -> int:
        return len(self.global_sizes())


def _passthrough(batch: object) -> object:
    return batch


def _worker_signals(_worker_id: int) -> None:
    leave_signals_to_parent()


def make_loader(dataset: ShardDataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                num_workers: int = 0, num_samples: int = 0, rank: int = 0, world: int = 1
                ) -> tuple[DataLoader, BlockShuffleSampler]:
    """A DataLoader yielding ``(uint8 NHWC images, dict of arrays)`` batches.

    ``num_samples`` > 0 caps the rows drawn per epoch (see :class:`BlockShuffleSampler`);
    ``rank`` of ``world`` takes its slice of each global batch of ``batch_size`` rows.
    Returns the loader and its sampler (call ``sampler.set_epoch`` each epoch).
    """
    window = 0 if dataset.images is not None else 8
    sampler = BlockShuffleSampler(dataset.block_keys(), batch_size, seed, shuffle, window,
                                  num_samples, rank, world)
    workers = 0 if dataset.images is not None else num_workers
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=_passthrough,
                        num_workers=workers, persistent_workers=workers > 0,
                        worker_init_fn=_worker_signals if workers else None)
    return loader, sampler


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC batch -> float NCHW in [-1, 1] (what every model here takes)."""
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
