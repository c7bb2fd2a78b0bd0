"""Classifier training throughput: memory layouts and batch sizes (same process).

    python benchmarks/bench_train.py

Prints training images/s of the default small_resnet at 32x32 for NCHW vs channels_last
and batch 128 vs 256, as ratios over the NCHW batch-128 baseline.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from facebalance.models.classifier import SmallResNet


def rate(batch: int, channels_last: bool, steps: int = 10) -> float:
    torch.manual_seed(0)
    net = SmallResNet(16)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.rand(batch)
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y).backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    base = rate(128, False)
    print(f"NCHW, batch 128 (baseline): {base:7.0f} img/s")
    for batch, cl in ((128, True), (256, False), (256, True)):
        r = rate(batch, cl)
        name = "channels_last" if cl else "NCHW"
        print(f"{name}, batch {batch}: {r:7.0f} img/s  ratio {r / base:.2f}x")


if __name__ == "__main__":
    main()
