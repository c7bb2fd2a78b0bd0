"""GAN inversion throughput: batched latent optimisation vs one image at a time (same process).

    python benchmarks/bench_invert.py [--n 256] [--steps 30] [--batch 256]
                                      [--generator models/gan/generator.pt]

Both runs optimise the same images from the same starting latents with the same settings,
and the batched latents must equal the one-at-a-time ones (the loss is a sum of per-image
losses with the generator in eval mode). Without a trained generator a freshly initialised
DCGAN of the default size is used (the cost does not depend on the weights).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from facebalance.latent.invert import optimize_latents
from facebalance.models.gan import GanConfig, Generator, load_generator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--generator", type=Path, default=Path("models/gan/generator.pt"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if args.generator.is_file():
        gen = load_generator(args.generator)
    else:
        gen = Generator(GanConfig()).eval()
    d = gen.cfg.latent_dim
    x = gen(torch.randn(args.n, d)).detach()  # targets: images the generator can make
    z0 = torch.randn(args.n, d)
    kw = {"steps": args.steps, "lr": 0.05, "prior_weight": 0.01}

    t0 = time.perf_counter()
    batched = torch.cat([optimize_latents(gen, x[s:s + args.batch], z0[s:s + args.batch], **kw)
                         for s in range(0, args.n, args.batch)])
    batched_s = time.perf_counter() - t0
    n_single = min(args.n, 32)  # one at a time is slow: time a subset, report per image
    t0 = time.perf_counter()
    single = torch.cat([optimize_latents(gen, x[i:i + 1], z0[i:i + 1], **kw)
                        for i in range(n_single)])
    single_s = time.perf_counter() - t0
    diff = (batched[:n_single] - single).abs().max().item()

    batched_rate, single_rate = args.n / batched_s, n_single / single_s
    print(f"{args.n} images x {args.steps} Adam steps, 32 px, latent {d}, 2 threads")
    print(f"batched ({args.batch} per pass): {batched_rate:8.1f} images/s "
          f"({batched_rate * args.steps:,.0f} image-steps/s)")
    print(f"one at a time:           {single_rate:8.1f} images/s (on {n_single} images)")
    print(f"ratio batched / one at a time: {batched_rate / single_rate:.1f}x; "
          f"largest latent difference {diff:.2e}")


if __name__ == "__main__":
    main()
