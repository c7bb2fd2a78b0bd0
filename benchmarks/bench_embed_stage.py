"""The ``embed`` stage with dlib: the stage as it was (every prepared image, one process)
against the stage now (only the images the pairs file uses, one dlib process per core).

    python benchmarks/bench_embed_stage.py [--n 600] [--used 0.58]

The data: ``--n`` synthfaces shards at 64 px and a pairs file that uses a ``--used`` share
of them (LFW's View-2 pairs use 7,701 of its 13,233 images: 0.58). Both runs embed in
the same process, one after the other; the vectors of the images both embed must agree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from facebalance.config import DatasetParams
from facebalance.data.datasets import ShardDataset
from facebalance.data.embeddings import embedding_rows, pair_image_rows
from facebalance.data.prepare import write_synthfaces
from facebalance.models.dlib_embedder import DlibEmbedder, cpu_workers
from facebalance.models.embedder import embed_dataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--used", type=float, default=0.58)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "prepared"
        n_split = args.n // 3
        write_synthfaces(DatasetParams(n_train=n_split, n_val=n_split, n_test=n_split),
                         out, seed=0, image_size=64, progress=False)
        rows = embedding_rows(out, need_identity=False)
        ids = rows["id"].to_numpy()
        rng = np.random.default_rng(0)
        used = rng.choice(ids, size=int(len(ids) * args.used), replace=False)
        pairs = pd.DataFrame({"id_a": used[::2], "id_b": np.roll(used, 1)[::2]})

        t0 = time.perf_counter()
        before = embed_dataset(DlibEmbedder("landmarks"), ShardDataset(rows, {}), 64,
                               progress=False)
        before_s = time.perf_counter() - t0

        workers = cpu_workers()
        t0 = time.perf_counter()
        subset = pair_image_rows(rows, pairs)
        after = embed_dataset(DlibEmbedder("landmarks"), ShardDataset(subset, {}), 64,
                              workers=workers, progress=False)
        after_s = time.perf_counter() - t0

    position = {i: k for k, i in enumerate(rows["id"])}
    same = np.abs(after - before[[position[i] for i in subset["id"]]]).max()
    print(f"{len(rows)} images, pairs use {len(subset)}; {workers} dlib processes")
    print(f"before: all images, 1 process   {before_s:7.1f} s  "
          f"({len(rows) / before_s:5.1f} img/s)")
    print(f"after:  pair images, {workers} processes {after_s:7.1f} s  "
          f"({len(subset) / after_s:5.1f} img/s)")
    print(f"stage time ratio before / after: {before_s / after_s:.2f}x "
          f"(largest vector difference {same:.1e})")


if __name__ == "__main__":
    main()
