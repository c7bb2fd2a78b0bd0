"""One training step in fp32 and with bf16 autocast (``base.precision``), same process.

    python benchmarks/bench_precision.py

The default small_resnet at 32x32, batch 128, channels_last as ``models/train.py`` trains
it, on 1 CPU thread. The step is the training loop's: forward under
:func:`facebalance.precision.autocast`, the loss in float32, backward, AdamW. The two
precisions alternate in rounds (so a neighbour's load hits both alike); each prints the
median step time over the rounds, then the ratio. bf16 is fast only where the CPU has
AMX (``amx_bf16``); elsewhere it is emulated and slower.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from facebalance.models.classifier import SmallResNet
from facebalance.precision import autocast, cpu_has_amx

BATCH, SIZE, ROUNDS, STEPS = 128, 32, 7, 5


def trainer(precision: str):
    """A function running ``STEPS`` training steps in ``precision``; returns ms per step."""
    torch.manual_seed(0)
    net = SmallResNet(16).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), 0.003, weight_decay=0.0005)
    x = torch.randn(BATCH, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(BATCH) < 0.5).float()
    cpu = torch.device("cpu")

    def run() -> float:
        start = time.perf_counter()
        for _ in range(STEPS):
            with autocast(precision, cpu):
                logits = net(x)
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float()[:, 0], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (time.perf_counter() - start) * 1000 / STEPS

    run()  # warm-up: oneDNN picks and caches its kernels
    return run


def main() -> None:
    torch.set_num_threads(1)
    runs = {p: trainer(p) for p in ("fp32", "bf16")}
    times: dict[str, list[float]] = {p: [] for p in runs}
    for _ in range(ROUNDS):
        for p, run in runs.items():
            times[p].append(run())
    med = {p: statistics.median(t) for p, t in times.items()}
    print(f"small_resnet, batch {BATCH}, {SIZE} px, channels_last, 1 thread, "
          f"amx_bf16: {cpu_has_amx()}, torch {torch.__version__}")
    for p, ms in med.items():
        print(f"{p}: {ms:6.1f} ms/step (median of {ROUNDS} x {STEPS} steps; "
              f"range {min(times[p]):.1f}-{max(times[p]):.1f})")
    print(f"fp32 / bf16: {med['fp32'] / med['bf16']:.2f}x")


if __name__ == "__main__":
    main()
