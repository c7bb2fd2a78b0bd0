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
    mix: str = "none"  # none | mixup | cutmix
    mix_alpha: float = 0.4  # Beta(alpha, alpha) of the mixing share
    attention_max: float = 4.0  # val_attention: largest cell loss multiplier


MIX_MODES = ("none", "mixup", "cutmix")


def draw_mix(rng: np.random.Generator, mode: str, alpha: float, n: int, height: int,
             width: int) -> tuple[float, np.ndarray, tuple[int, int, int, int] | None]:
    """One batch's mixing draw: share ``lam`` ~ Beta(alpha, alpha), partner permutation and,
    for cutmix, the pasted box ``(y0, y1, x0, x1)`` covering about ``1 - lam`` of the image."""
    lam = float(rng.beta(alpha, alpha))
    perm = rng.permutation(n)
    if mode != "cutmix":
        return lam, perm, None
    cut = math.sqrt(1.0 - lam)
    bh, bw = round(height * cut), round(width * cut)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    y0, y1 = max(cy - bh // 2, 0), min(cy + bh - bh // 2, height)
    x0, x1 = max(cx - bw // 2, 0), min(cx + bw - bw // 2, width)
    return lam, perm, (y0, y1, x0, x1)


def mix_batch(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, lam: float,
              perm: np.ndarray, box: tuple[int, int, int, int] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup (``box`` None) or cutmix of a batch with its permutation ``perm``.

    Mixup blends images, labels and loss weights by ``lam``. Cutmix pastes the partner's
    ``box`` into each image and mixes labels and weights by the area actually kept.
    """
    p = torch.as_tensor(perm, device=x.device)
    if box is None:
        share = lam
        x = lam * x + (1.0 - lam) * x[p]
    else:
        y0, y1, x0, x1 = box
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[p][:, :, y0:y1, x0:x1]
        share = 1.0 - (y1 - y0) * (x1 - x0) / (x.shape[2] * x.shape[3])
    return x, share * y + (1.0 - share) * y[p], share * w + (1.0 - share) * w[p]


def cell_weights(accuracy: np.ndarray, max_weight: float) -> np.ndarray:
    """Loss multipliers of cells from their validation accuracy: error rate over the mean
    error rate, clipped to ``[1 / max_weight, max_weight]`` (equal errors: all 1)."""
    err = 1.0 - np.asarray(accuracy, dtype=np.float64)
    if err.mean() <= 0:
        return np.ones_like(err)
    return np.clip(err / err.mean(), 1.0 / max_weight, max_weight)


@dataclass
class ValAttention:
    """Validation set whose per-cell accuracy sets the loss weight of each training cell.

    ``dataset`` carries ``label`` and ``cell`` arrays; cells are numbered as in the training
    set's ``cell`` array (e.g. ``label * n_groups + group``).
    """

    dataset: ShardDataset
    n_cells: int

    def weights(self, model: nn.Module, device: torch.device, max_weight: float
                ) -> np.ndarray:
        """Per-cell multipliers from the model's validation accuracy at threshold 0.5."""
        (scores,) = predict_proba([model], self.dataset, device)
        correct = (scores >= 0.5) == (self.dataset.arrays["label"] >= 0.5)
        cells = self.dataset.arrays["cell"]
        n = np.bincount(cells, minlength=self.n_cells)
        hits = np.bincount(cells, weights=correct, minlength=self.n_cells)
        # A cell absent from validation cannot be judged: treat it as accurate.
        acc = np.divide(hits, n, out=np.ones(self.n_cells), where=n > 0)
        return cell_weights(acc, max_weight)


#: Narrowest convolution run in channels_last. oneDNN in torch 2.14.1 on AVX2 CPUs (AMD
#: EPYC, measured) corrupts memory ("double free or corruption", or a hang) when training
#: a channels_last net with 4-channel convolutions; 8 and wider are fine.
CHANNELS_LAST_MIN_WIDTH = 8


def memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last (~30% faster convolutions on CPU, benchmarks/bench_train.py) unless the
    model has a convolution narrower than :data:`CHANNELS_LAST_MIN_WIDTH` outputs."""
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    if widths and min(widths) < CHANNELS_LAST_MIN_WIDTH:
        return torch.contiguous_format
    return torch.channels_last


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
                     weight_key: str | None = "weight",
                     attention: ValAttention | None = None) -> list[dict[str, float]]:
    """Train a binary classifier with per-sample weighted BCE.

    ``cfg.mix`` mixes each batch (mixup or cutmix, after the flips and shifts). With
    ``attention``, from the second epoch on each sample's loss weight is multiplied by its
    cell's weight from the validation accuracy after the previous epoch (``dataset`` then
    needs a ``cell`` array).

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
    if cfg.mix not in MIX_MODES:
        raise FacebalanceError(f"training: mix = {cfg.mix!r}; valid: {', '.join(MIX_MODES)}")
    fmt = memory_format(model)
    model.to(device, memory_format=fmt).train()
    loader, sampler = make_loader(dataset, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                  num_workers=cfg.num_workers,
                                  num_samples=cfg.samples_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * len(sampler)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps))
    gen = torch.Generator().manual_seed(cfg.seed)
    # Separate stream: mixing draws leave the flips/shifts of the other strategies unchanged.
    mix_rng = np.random.default_rng([cfg.seed, 1])
    cell_w: np.ndarray | None = None
    history = []
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        if attention is not None and epoch > 0:
            cell_w = attention.weights(model, device, cfg.attention_max)
            model.train()
        start, total, weight_sum = time.perf_counter(), 0.0, 0.0
        for x, rows in loader:
            x = to_float(x).to(device, non_blocking=True)
            if cfg.augment:
                x = augment_batch(x, gen)
            y = torch.as_tensor(rows[label_key], dtype=torch.float32, device=device)
            w = (torch.as_tensor(rows[weight_key], dtype=torch.float32, device=device)
                 if weight_key else torch.ones_like(y))
            if cell_w is not None:
                w = w * torch.as_tensor(cell_w[rows["cell"]], dtype=torch.float32,
                                        device=device)
            if cfg.mix != "none":
                x, y, w = mix_batch(x, y, w, *draw_mix(mix_rng, cfg.mix, cfg.mix_alpha,
                                                       len(y), x.shape[2], x.shape[3]))
            x = x.contiguous(memory_format=fmt)
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
        if cell_w is not None:
            row.update({f"cell{c}_weight": float(v) for c, v in enumerate(cell_w)})
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
    fmts = [memory_format(m) for m in models]
    for m, fmt in zip(models, fmts, strict=True):
        m.to(device, memory_format=fmt).eval()
    loader, _ = make_loader(dataset, batch_size, shuffle=False)
    out = [np.empty(len(dataset), dtype=np.float32) for _ in models]
    for x, rows in loader:
        x = to_float(x).to(device)
        for m, fmt, scores in zip(models, fmts, out, strict=True):
            logits = m(x.contiguous(memory_format=fmt)).squeeze(1)
            scores[rows["index"]] = torch.sigmoid(logits).float().cpu().numpy()
    return out
