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

from facebalance.balance.attention import attention_weights
from facebalance.data.datasets import ShardDataset, make_loader, to_float
from facebalance.distributed import world
from facebalance.errors import FacebalanceError
from facebalance.precision import (
    autocast,
    backward_step,
    grad_scaler,
    resolve_precision,
    to_device,
)
from facebalance.task import BINARY_TASK, TaskSpec, label_keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run (defaults: the ``train_target`` params';
    ``train_attr`` and the embedder pass their own)."""

    epochs: int = 3
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
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto (see facebalance.precision)


#: Batch losses are read back to the host this many at a time (and at each epoch's end):
#: one sync instead of one per batch, which would stall a GPU's queue every step.
LOSS_SYNC_STEPS = 50


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


def mix_batch(x: torch.Tensor, y: torch.Tensor | list[torch.Tensor], w: torch.Tensor,
              lam: float, perm: np.ndarray, box: tuple[int, int, int, int] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor], torch.Tensor]:
    """Mixup (``box`` None) or cutmix of a batch with its permutation ``perm``.

    Mixup blends images, labels and loss weights by ``lam``. Cutmix pastes the partner's
    ``box`` into each image and mixes labels and weights by the area actually kept.
    ``y`` is one label tensor or a list (one per head): 0/1 labels, one-hot class rows
    and numbers all mix linearly.
    """
    p = to_device(torch.as_tensor(perm), x.device)
    if box is None:
        share = lam
        x = lam * x + (1.0 - lam) * x[p]
    else:
        y0, y1, x0, x1 = box
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[p][:, :, y0:y1, x0:x1]
        share = 1.0 - (y1 - y0) * (x1 - x0) / (x.shape[2] * x.shape[3])

    def mix(t: torch.Tensor) -> torch.Tensor:
        return share * t + (1.0 - share) * t[p]

    ys = [mix(t) for t in y] if isinstance(y, list) else mix(y)
    return x, ys, mix(w)


def head_targets(task: TaskSpec, rows: dict, device: torch.device) -> list[torch.Tensor]:
    """Each head's training target of a batch: 0/1 floats, one-hot rows, or the
    standardized number ``(y - center) / scale``."""
    out = []
    for head, key in zip(task.heads, label_keys(task), strict=True):
        v = to_device(torch.as_tensor(rows[key]), device)
        if head.kind == "multiclass":
            out.append(nn.functional.one_hot(v.long(), head.n_classes).float())
        elif head.kind == "regression":
            out.append((v.float() - head.center) / head.scale)
        else:
            out.append(v.float())
    return out


def task_loss(task: TaskSpec, logits: torch.Tensor, targets: list[torch.Tensor]
              ) -> torch.Tensor:
    """Per-sample loss ``(B,)``, summed over heads: BCE, soft cross-entropy (one-hot or
    mixed rows), or L1 / smooth L1 on the standardized target."""
    total = torch.zeros(len(logits), device=logits.device)
    for head, cols, y in zip(task.heads, task.slices(), targets, strict=True):
        out = logits[:, cols]
        if head.kind == "multiclass":
            total = total - (y * torch.log_softmax(out, dim=1)).sum(dim=1)
        elif head.kind == "regression":
            fn = (nn.functional.l1_loss if task.loss == "l1"
                  else nn.functional.smooth_l1_loss)
            total = total + fn(out[:, 0], y, reduction="none")
        else:
            total = total + nn.functional.binary_cross_entropy_with_logits(
                out[:, 0], y, reduction="none")
    return total


def head_outputs(task: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """Predictions from logits, ``(B, num_outputs)``: a sigmoid score per binary head,
    class probabilities per multiclass head, the number in target units per regression."""
    parts = []
    for head, cols in zip(task.heads, task.slices(), strict=True):
        out = logits[:, cols]
        if head.kind == "multiclass":
            parts.append(torch.softmax(out, dim=1))
        elif head.kind == "regression":
            parts.append(out * head.scale + head.center)
        else:
            parts.append(torch.sigmoid(out))
    return torch.cat(parts, dim=1)


@dataclass
class ValAttention:
    """Validation set whose per-cell error sets the loss weight of each training cell.

    ``dataset`` carries ``label`` and ``cell`` arrays; cells are numbered as in the training
    set's ``cell`` array (see :func:`facebalance.task.cell_ids`). The error is the error
    rate of the primary target (classification) or its MAE (regression).
    """

    dataset: ShardDataset
    n_cells: int
    task: TaskSpec = BINARY_TASK

    def weights(self, model: nn.Module, device: torch.device, max_weight: float
                ) -> np.ndarray:
        """Per-cell multipliers from the model's validation error."""
        (outputs,) = predict_outputs([model], self.dataset, device, self.task)
        return attention_weights(self.task, outputs, self.dataset.arrays["label"],
                                 self.dataset.arrays["cell"], self.n_cells, max_weight)


#: Narrowest convolution run in channels_last. oneDNN in torch 2.14.1 on AVX2 CPUs (AMD
#: EPYC, measured) corrupts memory ("double free or corruption", an abort or a segfault in
#: backward, or a hang) when training a channels_last net with 4- or 8-channel
#: convolutions (width 8: tests/models/test_evaluate.py aborted 3 times in 3 on
#: 2026-12-02); the default width 16 keeps channels_last.
CHANNELS_LAST_MIN_WIDTH = 16


def memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last (~30% faster convolutions on CPU, benchmarks/bench_train.py) unless the
    model has a convolution narrower than :data:`CHANNELS_LAST_MIN_WIDTH` outputs."""
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    if widths and min(widths) < CHANNELS_LAST_MIN_WIDTH:
        return torch.contiguous_format
    return torch.channels_last


def augment_batch(x: torch.Tensor, gen: torch.Generator, shift: int = 2,
                  part: tuple[slice, int] | None = None) -> torch.Tensor:
    """Random horizontal flips and per-image shifts of up to ``shift`` pixels (vectorized).

    ``part``: ``x`` is the rows ``part[0]`` of a global batch of ``part[1]`` rows (a
    data-parallel rank); the draws are the global batch's, so every row gets the flip and
    shift it gets in one process.
    """
    b, c, h, w = x.shape
    n, rows_of = (b, slice(None)) if part is None else (part[1], part[0])
    flip = to_device(torch.rand(n, generator=gen, device="cpu")[rows_of], x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if shift <= 0:
        return x
    xp = nn.functional.pad(x, (shift,) * 4, mode="replicate")
    oy, ox = to_device(torch.randint(0, 2 * shift + 1, (2, n), generator=gen,
                                     device="cpu")[:, rows_of], x.device)
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


def _add_losses(total: float, count: float, losses: list[torch.Tensor], sizes: list[int],
                epoch: int) -> tuple[float, float]:
    """Read back pending batch losses in one sync and add ``loss * batch size`` to the
    epoch's running sums one batch at a time, in order (the same float sums as adding
    each batch's ``loss.item()`` as it came). Empties ``losses`` and ``sizes``.

    In a data-parallel group each rank holds its share of every batch's loss: the shares
    are summed over the ranks first, so every rank adds the same numbers and a loss that
    goes NaN on one rank stops all of them with the same message.
    """
    if not losses:
        return total, count
    values = torch.stack(losses)
    if world()[1] > 1:
        torch.distributed.all_reduce(values)
    for value, n in zip(values.tolist(), sizes, strict=True):
        if not math.isfinite(value):
            raise FacebalanceError(
                f"training diverged: loss is {value} in epoch {epoch + 1}; "
                "lower the learning rate")
        total += value * n
        count += n
    losses.clear()
    sizes.clear()
    return total, count


def train_classifier(model: nn.Module, dataset: ShardDataset, cfg: TrainConfig,
                     device: torch.device, *, task: TaskSpec = BINARY_TASK,
                     weight_key: str | None = "weight",
                     attention: ValAttention | None = None) -> list[dict[str, float]]:
    """Train a classifier (or regressor) with per-sample weighted losses.

    The task says the heads and their losses (:func:`task_loss`). ``cfg.mix`` mixes each
    batch (mixup or cutmix, after the flips and shifts). With ``attention``, from the
    second epoch on each sample's loss weight is multiplied by its cell's weight from the
    validation error after the previous epoch (``dataset`` then needs a ``cell`` array).

    In a data-parallel group (:mod:`facebalance.distributed`) each rank trains on its rows
    of every global batch of ``cfg.batch_size`` with the global batch's augmentation draws,
    and DDP averages the gradients, so the step is one process's up to float sums and
    batch-norm statistics (each rank normalizes its own rows on CPU; SyncBatchNorm on
    CUDA). Mixup / cutmix mix within each rank's rows.

    Parameters
    ----------
    model
        Network with ``task.num_outputs`` outputs.
    dataset
        Training images with one label array per head (``label``, ``label1``, ...; see
        :func:`facebalance.task.label_keys`) and optionally ``weight_key``.
    cfg
        Optimisation settings; ``cfg.seed`` fixes initialisation-independent randomness
        (data order, augmentation). Seed torch before building the model for the rest.
        ``cfg.precision`` autocasts the forward pass (the loss and step stay float32).
    device
        Where to train.
    task
        Heads and losses; default one binary head.

    Returns
    -------
    list of dict
        One row per epoch: ``epoch``, ``loss`` (weighted mean), ``seconds``.

    Raises
    ------
    FacebalanceError
        When the loss becomes NaN or infinite (checked every :data:`LOSS_SYNC_STEPS`
        batches and at each epoch's end), or ``cfg.precision`` does not suit ``device``.
    """
    if cfg.mix not in MIX_MODES:
        raise FacebalanceError(f"training: mix = {cfg.mix!r}; valid: {', '.join(MIX_MODES)}")
    precision = resolve_precision(cfg.precision, device)
    scaler = grad_scaler(precision, device)
    fmt = memory_format(model)
    model.to(device, memory_format=fmt).train()
    rank, size = world()
    loader, sampler = make_loader(dataset, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                  num_workers=cfg.num_workers,
                                  num_samples=cfg.samples_per_epoch, rank=rank, world=size)
    net = _data_parallel(model, device) if size > 1 else model
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
            cell_w = _attention_weights(attention, model, device, cfg.attention_max, rank,
                                        size)
            model.train()
        start, total, weight_sum = time.perf_counter(), 0.0, 0.0
        losses: list[torch.Tensor] = []  # on the device until the next read-back
        sizes: list[int] = []
        for (x, rows), n in zip(loader, sampler.global_sizes(), strict=True):
            x = to_float(to_device(x, device))  # uint8 crosses the bus: a quarter of float
            if cfg.augment:
                x = augment_batch(x, gen, part=None if size == 1 else
                                  (slice(rank, None, size), n))
            ys = head_targets(task, rows, device)
            w = (to_device(torch.as_tensor(rows[weight_key], dtype=torch.float32), device)
                 if weight_key else torch.ones(len(x), device=device))
            if cell_w is not None:
                w = w * to_device(torch.as_tensor(cell_w[rows["cell"]], dtype=torch.float32),
                                  device)
            if cfg.mix != "none":
                x, ys, w = mix_batch(x, ys, w, *draw_mix(mix_rng, cfg.mix, cfg.mix_alpha,
                                                         len(x), x.shape[2], x.shape[3]))
            x = x.contiguous(memory_format=fmt)
            with autocast(precision, device):
                logits = net(x)
            # .float(): the loss in float32 (a no-op returning logits itself in fp32).
            if size == 1:
                loss = (task_loss(task, logits.float(), ys) * w).mean()
            else:  # DDP averages over ranks: each rank's sum over the global batch's rows
                loss = (task_loss(task, logits.float(), ys) * w).sum() * (size / n)
            opt.zero_grad(set_to_none=True)
            backward_step(loss, opt, scaler)
            sched.step()
            losses.append(loss.detach() if size == 1 else loss.detach() / size)
            sizes.append(n)
            if len(losses) == LOSS_SYNC_STEPS:
                total, weight_sum = _add_losses(total, weight_sum, losses, sizes, epoch)
        total, weight_sum = _add_losses(total, weight_sum, losses, sizes, epoch)
        row = {"epoch": epoch + 1, "loss": total / max(weight_sum, 1),
               "seconds": time.perf_counter() - start}
        if cell_w is not None:
            row.update({f"cell{c}_weight": float(v) for c, v in enumerate(cell_w)})
        history.append(row)
        log.info("epoch %d/%d loss %.4f (%.1f s)", epoch + 1, cfg.epochs, row["loss"],
                 row["seconds"])
    return history


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` under DDP (its parameters are shared, so saving ``model`` saves the result);
    batch norm synchronized across ranks on CUDA, where SyncBatchNorm runs."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def _attention_weights(attention: ValAttention, model: nn.Module, device: torch.device,
                       max_weight: float, rank: int, size: int) -> np.ndarray:
    """The cell weights of the next epoch; in a data-parallel group rank 0's, sent to every
    rank (on CPU each rank's batch-norm statistics differ a little, and every rank must
    weight a cell the same)."""
    if size == 1:
        return attention.weights(model, device, max_weight)
    weights = (attention.weights(model, device, max_weight) if rank == 0
               else np.zeros(attention.n_cells))
    t = torch.as_tensor(weights, dtype=torch.float64,
                        device=device if device.type == "cuda" else "cpu")
    torch.distributed.broadcast(t, 0)
    return t.cpu().numpy()


@torch.no_grad()
def predict_outputs(models: Sequence[nn.Module], dataset: ShardDataset, device: torch.device,
                    task: TaskSpec = BINARY_TASK, batch_size: int = 512) -> list[np.ndarray]:
    """Each model's ``(n, task.num_outputs)`` predictions (:func:`head_outputs`) for every
    row of ``dataset``, in order. Each batch is decoded once and shared by all models."""
    fmts = [memory_format(m) for m in models]
    for m, fmt in zip(models, fmts, strict=True):
        m.to(device, memory_format=fmt).eval()
    loader, _ = make_loader(dataset, batch_size, shuffle=False)
    out = [np.empty((len(dataset), task.num_outputs), dtype=np.float32) for _ in models]
    for x, rows in loader:
        x = to_float(to_device(x, device))
        for m, fmt, preds in zip(models, fmts, out, strict=True):
            logits = m(x.contiguous(memory_format=fmt))
            preds[rows["index"]] = head_outputs(task, logits).float().cpu().numpy()
    return out


def predict_proba(models: Sequence[nn.Module], dataset: ShardDataset, device: torch.device,
                  batch_size: int = 512) -> list[np.ndarray]:
    """Sigmoid scores ``(n,)`` of each one-logit model for every row of ``dataset``."""
    return [p[:, 0] for p in predict_outputs(models, dataset, device, BINARY_TASK,
                                             batch_size)]
