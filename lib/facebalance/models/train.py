"""One readable training loop for the classifiers, and batched prediction."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from facebalance.data.datasets import ShardDataset, make_loader, to_float
from facebalance.errors import FacebalanceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run."""

    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.003
    weight_decay: float = 0.0005
    augment: bool = True
    seed: int = 0
    num_workers: int = 0
    samples_per_epoch: int = 0  # 0: one pass over the dataset


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FacebalanceError(f"params: base.device = {name!r} but CUDA is not available")
    return device


def set_threads(threads: int) -> None:
    """Set torch's CPU threads (0 keeps the default)."""
    if threads > 0:
        torch.set_num_threads(threads)


def augment_batch(x: torch.Tensor, gen: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random horizontal flips and per-image shifts of up to ``shift`` pixels (vectorized)."""
    b, c, h, w = x.shape
    flip = torch.rand(b, generator=gen, device="cpu").to(x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if shift <= 0:
        return x
    xp = nn.functional.pad(x, (shift,) * 4, mode="replicate")
    oy, ox = torch.randint(0, 2 * shift + 1, (2, b), generator=gen, device="cpu").to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    xp = xp.gather(2, rows.expand(b, c, h, w + 2 * shift))
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return xp.gather(3, cols.expand(b, c, h, w))


def warmup_cosine(total_steps: int, warmup: float = 0.1):
    """LR multiplier: linear warm-up over ``warmup`` of the steps, then cosine decay to 0."""
    ramp = max(1, int(warmup * total_steps))

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        progress = (step - ramp) / max(1, total_steps - ramp)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def train_classifier(model: nn.Module, dataset: ShardDataset, cfg: TrainConfig,
                     device: torch.device, *, label_key: str = "label",
                     weight_key: str | None = "weight") -> list[dict[str, float]]:
    """Train a binary classifier with per-sample weighted BCE.

    Parameters
    ----------
    model
        Network with one output logit.
    dataset
        Training images with a ``label_key`` array (0/1) and optionally ``weight_key``.
    cfg
        Optimisation settings; ``cfg.seed`` fixes initialisation-independent randomness
        (data order, augmentation). Seed torch before building the model for the rest.
    device
        Where to train.

    Returns
    -------
    list of dict
        One row per epoch: ``epoch``, ``loss`` (weighted mean), ``seconds``.

    Raises
    ------
    FacebalanceError
        When the loss becomes NaN or infinite.
    """
    # channels_last: ~30% faster convolutions on CPU (measured, benchmarks/bench_train.py).
    model.to(device, memory_format=torch.channels_last).train()
    loader, sampler = make_loader(dataset, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                  num_workers=cfg.num_workers,
                                  num_samples=cfg.samples_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * len(sampler)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps))
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        start, total, weight_sum = time.perf_counter(), 0.0, 0.0
        for x, rows in loader:
            x = to_float(x).to(device, non_blocking=True)
            if cfg.augment:
                x = augment_batch(x, gen)
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.as_tensor(rows[label_key], dtype=torch.float32, device=device)
            w = (torch.as_tensor(rows[weight_key], dtype=torch.float32, device=device)
                 if weight_key else torch.ones_like(y))
            logits = model(x).squeeze(1)
            loss = (nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
                    * w).mean()
            if not math.isfinite(loss.item()):
                raise FacebalanceError(
                    f"training diverged: loss is {loss.item()} in epoch {epoch + 1}; "
                    "lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(y)
            weight_sum += len(y)
        row = {"epoch": epoch + 1, "loss": total / max(weight_sum, 1),
               "seconds": time.perf_counter() - start}
        history.append(row)
        log.info("epoch %d/%d loss %.4f (%.1f s)", epoch + 1, cfg.epochs, row["loss"],
                 row["seconds"])
    return history


@torch.no_grad()
def predict_proba(models: Sequence[nn.Module], dataset: ShardDataset, device: torch.device,
                  batch_size: int = 512) -> list[np.ndarray]:
    """Sigmoid scores of each model for every row of ``dataset``, in order.

    Each batch is decoded once and shared by all models.
    """
    for m in models:
        m.to(device, memory_format=torch.channels_last).eval()
    loader, _ = make_loader(dataset, batch_size, shuffle=False)
    out = [np.empty(len(dataset), dtype=np.float32) for _ in models]
    for x, rows in loader:
        x = to_float(x).to(device).contiguous(memory_format=torch.channels_last)
        for m, scores in zip(models, out, strict=True):
            scores[rows["index"]] = torch.sigmoid(m(x).squeeze(1)).float().cpu().numpy()
    return out
