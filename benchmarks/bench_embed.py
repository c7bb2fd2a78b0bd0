"""Embedding throughput of each embedder on this machine: batched vs one image at a time.

    python benchmarks/bench_embed.py [--n 512] [--batch 256] [--size 32]

Models: the small_resnet embedder ``embed.weights: train`` trains (width 32, random weights:
the cost does not depend on them), facenet-pytorch's InceptionResnetV1 (faces resized to
160 px, random weights) and, when the ``[dlib]`` extra is installed, dlib's descriptor with
5-point alignment. All embed the same synthfaces images in one process; the batched
embeddings must equal the one-at-a-time ones.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from facebalance.data import synthfaces
from facebalance.models.classifier import SmallResNet
from facebalance.models.dlib_embedder import DlibEmbedder
from facebalance.models.embedder import NetEmbedder, TorchEmbedder, _inception


def _rate(embedder: object, x: torch.Tensor, batch: int, n_single: int
          ) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    batched = np.concatenate([embedder.embed(x[s:s + batch]) for s in range(0, len(x), batch)])
    batched_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = np.concatenate([embedder.embed(x[i:i + 1]) for i in range(n_single)])
    single_s = time.perf_counter() - t0
    diff = float(np.abs(batched[:n_single] - single).max())
    return len(x) / batched_s, n_single / single_s, diff


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    table = synthfaces.sample_attributes(synthfaces.SplitSpec(n=args.n, balanced=True), 0, "b")
    x = torch.from_numpy(synthfaces.render(table, args.size, 1))
    cpu = torch.device("cpu")
    models = {
        "small_resnet (train)": (TorchEmbedder(NetEmbedder(SmallResNet(32, 1).features, None),
                                               128, cpu), args.n, 64),
        "InceptionResnetV1 160px": (TorchEmbedder(NetEmbedder(_inception(), 160), 512, cpu),
                                    min(args.n, 128), 16),
    }
    try:
        models["dlib (landmarks)"] = (DlibEmbedder("landmarks"), min(args.n, 128), 32)
    except Exception as err:  # the [dlib] extra is optional
        print(f"dlib: skipped ({err})")
    print(f"{args.n} synthfaces at {args.size} px, batches of {args.batch}, 2 threads")
    for name, (embedder, n, n_single) in models.items():
        batched, single, diff = _rate(embedder, x[:n], args.batch, n_single)
        print(f"{name:26s} batched {batched:8.1f} img/s, one at a time {single:7.1f} img/s, "
              f"ratio {batched / single:5.1f}x, largest difference {diff:.1e}")


if __name__ == "__main__":
    main()
