"""Latent stages: vectorized complements vs a per-row loop, and sample throughput vs the
generator's raw forward pass (same process).

    python benchmarks/bench_latent.py [--n 50000] [--generator models/gan/generator.pt]

Without a trained generator a freshly initialised DCGAN of the default size is used (the
forward cost does not depend on the weights).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from facebalance.latent.boundaries import Boundary
from facebalance.latent.complement import complement_latents
from facebalance.latent.sampling import generate_shards, sample_latents
from facebalance.models.gan import GanConfig, Generator, generate_uint8, load_generator


def complement_loop(z: np.ndarray, target: Boundary, protected: Boundary) -> np.ndarray:
    """The paper's formula one latent at a time (the baseline)."""
    cos = float(protected.w @ target.w)
    perp = protected.w - cos * target.w
    perp /= np.linalg.norm(perp)
    sin = np.sqrt(1 - cos**2)
    out = np.empty_like(z)
    for i in range(len(z)):
        dist = float(z[i] @ protected.w) + protected.b
        out[i] = z[i] - (2 * dist / sin) * perp
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--generator", type=Path, default=Path("models/gan/generator.pt"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    d = 128
    wt, wg = rng.normal(size=d), rng.normal(size=d)
    target = Boundary(wt / np.linalg.norm(wt), 0.1)
    protected = Boundary(wg / np.linalg.norm(wg), -0.2)
    z = sample_latents(args.n, d, seed=0)

    t0 = time.perf_counter()
    ref = complement_loop(z, target, protected)
    t1 = time.perf_counter()
    fast = complement_latents(z, target, protected)
    t2 = time.perf_counter()
    assert np.allclose(ref, fast, atol=1e-4)
    print(f"complement {args.n} latents: loop {t1 - t0:.3f} s, vectorized {t2 - t1:.4f} s, "
          f"ratio {(t1 - t0) / (t2 - t1):.0f}x")

    if args.generator.is_file():
        gen = load_generator(args.generator)
    else:
        gen = Generator(GanConfig()).eval()
    n = min(args.n, 20000)
    zz = z[:n]
    t0 = time.perf_counter()
    for s in range(0, n, 1024):
        generate_uint8(gen, torch.from_numpy(zz[s:s + 1024]))
    raw = n / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_shards(gen, zz, [f"g{i}" for i in range(n)], Path(tmp) / "imgs",
                        device=torch.device("cpu"), batch_size=1024, progress=False)
        full = n / (time.perf_counter() - t0)
    print(f"sample {n} images: raw forward {raw:.0f} img/s, sample stage (generate + PNG + "
          f"Parquet) {full:.0f} img/s, ratio {full / raw:.2f}")


if __name__ == "__main__":
    main()
