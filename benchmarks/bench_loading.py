"""One epoch of training batches: per-item DataLoader baseline vs ShardDataset (same process).

    python benchmarks/bench_loading.py [--data data/prepared/train] [--batch 128]

The baseline is the textbook map-style Dataset that opens the row's shard, reads its
row group and decodes one PNG per ``__getitem__`` (collated by the DataLoader). facebalance
streams with a row-group cache and batch fetches, or preloads decoded images once.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset

from facebalance.data.datasets import ShardDataset, make_loader
from facebalance.data.shards import decode_image, shard_files, shard_refs


class NaiveDataset(Dataset):
    def __init__(self, path: Path, refs) -> None:
        self.files = shard_files(path)
        self.refs = refs[["_file", "_row"]].to_numpy()

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int):
        f, r = self.refs[i]
        pf = pq.ParquetFile(self.files[f])
        md = pf.metadata
        start = 0
        for g in range(md.num_row_groups):
            n = md.row_group(g).num_rows
            if r < start + n:
                blob = pf.read_row_group(g, columns=["image"]).column(0)[r - start].as_py()
                return torch.from_numpy(np.array(decode_image(blob)))
            start += n
        raise IndexError(i)


def epoch(loader) -> tuple[float, int]:
    t, n = time.perf_counter(), 0
    for batch in loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        n += len(x)
    return time.perf_counter() - t, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("data/prepared/train"))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--naive-rows", type=int, default=3000,
                    help="rows timed for the slow baseline (its rate is extrapolated)")
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} missing: run `dvc repro prepare` first")
    refs = shard_refs(args.data, ["id"])
    n = len(refs)
    torch.set_num_threads(2)
    sub = refs.sample(args.naive_rows, random_state=0)
    naive = DataLoader(NaiveDataset(args.data, sub), batch_size=args.batch, shuffle=True)
    t_naive, k = epoch(naive)
    rate_naive = k / t_naive
    stream_ds = ShardDataset(refs, {}, cache_mb=0)
    t_stream, _ = epoch(make_loader(stream_ds, args.batch, shuffle=True)[0])
    t0 = time.perf_counter()
    pre_ds = ShardDataset(refs, {})
    t_load = time.perf_counter() - t0
    t_pre, _ = epoch(make_loader(pre_ds, args.batch, shuffle=True)[0])
    print(f"{n} images of {pre_ds.image_shape}, batch {args.batch}")
    print(f"baseline per-item DataLoader: {rate_naive:10.0f} img/s (timed on {k} rows)")
    print(f"streamed (row-group cache):   {n / t_stream:10.0f} img/s  "
          f"ratio {n / t_stream / rate_naive:6.1f}x")
    print(f"preloaded (decode once {t_load:.1f} s): {n / t_pre:8.0f} img/s  "
          f"ratio {n / t_pre / rate_naive:6.1f}x per epoch after loading")
    print(f"peak decoded cache: {pre_ds.images.nbytes / 2**20:.0f} MiB")
    assert np.array_equal(stream_ds.__getitems__([5])[0].numpy(), pre_ds.__getitems__([5])[0]
                          .numpy())


if __name__ == "__main__":
    main()
