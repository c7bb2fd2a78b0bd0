"""Train classifiers from a training set index (the attribute classifiers and, through
:func:`train_strategy` / :func:`save_seed_models`, a strategy's target classifiers, one per
seed), and score shard directories."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from facebalance.balance.registry import strategy as strategy_spec
from facebalance.balance.strategies import training_options
from facebalance.config import ClassifierParams, Params, as_dict, from_params
from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import atomic_directory, shard_refs
from facebalance.models.classifier import (
    ClassifierConfig,
    build_classifier,
    load_initial_weights,
    save_checkpoint,
)
from facebalance.models.train import TrainConfig, ValAttention, predict_proba, train_classifier
from facebalance.precision import precision_record
from facebalance.runtime import derive_seed
from facebalance.task import (
    BINARY_TASK,
    TaskSpec,
    cell_ids,
    label_keys,
    param_columns,
    read_task,
    task_rows,
)

log = logging.getLogger(__name__)


def epoch_samples(index: pd.DataFrame, epoch_size: str) -> int:
    """Rows drawn per epoch: every index row, or as many as there are distinct real images.

    ``real`` gives every strategy the same compute as the baseline, so oversampling or
    adding synthetic images changes *what* the model sees, not how long it trains.
    """
    if epoch_size == "index" or "source" not in index.columns:
        return len(index)
    real = index[index["source"] == "real"]
    return len(real.drop_duplicates(["path", "_file", "_row"])) or len(index)


def label_arrays(task: TaskSpec, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The training arrays of each head's labels: float32 for binary and regression heads,
    int64 class numbers for multiclass ones."""
    return {key: rows[key].to_numpy(np.int64 if h.kind == "multiclass" else np.float32)
            for key, h in zip(label_keys(task), task.heads, strict=True)}


def fit_classifier(index: pd.DataFrame, params: ClassifierParams, *, image_size: int,
                   seed: int, device: torch.device, options: Mapping[str, Any] | None = None,
                   attention_val: pd.DataFrame | None = None, task: TaskSpec = BINARY_TASK,
                   precision: str = "fp32"
                   ) -> tuple[nn.Module, ClassifierConfig, list[dict[str, float]]]:
    """Train one classifier (or regressor) on a training set index.

    :func:`fit_classifiers` with one seed; see it for the parameters.

    Returns
    -------
    model, config, history
        The trained model, the config that rebuilds it, and per-epoch loss rows.
    """
    (fitted,) = fit_classifiers(index, params, image_size=image_size, seeds=[seed],
                                device=device, options=options, attention_val=attention_val,
                                task=task, precision=precision)
    return fitted


def fit_classifiers(index: pd.DataFrame, params: ClassifierParams, *, image_size: int,
                    seeds: Sequence[int], device: torch.device,
                    options: Mapping[str, Any] | None = None,
                    attention_val: pd.DataFrame | None = None, task: TaskSpec = BINARY_TASK,
                    precision: str = "fp32"
                    ) -> list[tuple[nn.Module, ClassifierConfig, list[dict[str, float]]]]:
    """Train one classifier (or regressor) per seed on a training set index.

    The images are decoded once and shared by every seed's run (decoding the 20,000 PNGs
    of the default train split takes about 2 s, paid once instead of once per seed); each
    run is the same as training that seed alone.

    Parameters
    ----------
    index
        Rows with image references (``path``, ``_file``, ``_row``), one label column per
        head (``label``, ``label1``...), ``group`` and ``weight`` (see
        :mod:`facebalance.balance.strategies`).
    params
        Architecture and optimisation params (``train_attr`` or ``train_target``).
    image_size
        Side of the images (recorded in the checkpoint config).
    seeds
        One run per seed; a seed fixes initialisation, data order and augmentation.
    device
        Where to train.
    options
        :class:`TrainConfig` overrides of a training-time strategy (``mix``,
        ``mix_alpha``, ``attention_max``; see ``balance.strategies.training_options``).
    attention_val
        Validation rows (image references, ``label``, ``group``) for ``val_attention``:
        each epoch re-weights the training cells by their validation error. Its cells are
        numbered with ``task.n_groups``: pass the task resolved from the data
        (:func:`facebalance.task.task_from_params`) when there are more than two groups.
    task
        Heads and losses (default: one binary head).
    precision
        ``base.precision`` resolved for ``device``
        (:func:`facebalance.precision.resolve_precision`): the forward passes' compute.

    Returns
    -------
    list of (model, config, history)
        Per seed, in order: the trained model, the config that rebuilds it, and
        per-epoch loss rows.
    """
    config = ClassifierConfig(arch=params.arch, width=params.width,
                              num_outputs=task.num_outputs, image_size=image_size)
    arrays = {**label_arrays(task, index), "weight": index["weight"].to_numpy(np.float32)}
    attention = None
    if attention_val is not None:
        arrays["cell"] = cell_ids(task, index["label"], index["group"])
        val = ShardDataset(attention_val, {
            "label": attention_val["label"].to_numpy(np.float32),
            "cell": cell_ids(task, attention_val["label"], attention_val["group"])},
            cache_mb=params.cache_mb)
        attention = ValAttention(val, task.n_cells, task)
    dataset = ShardDataset(index, arrays, cache_mb=params.cache_mb)
    samples = epoch_samples(index, params.epoch_size)
    fitted = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = build_classifier(config)
        if params.weights:
            load_initial_weights(model, params.weights)
        cfg = from_params(TrainConfig, params, seed=seed, samples_per_epoch=samples,
                          precision=precision, **dict(options or {}))
        history = train_classifier(model, dataset, cfg, device, task=task,
                                   attention=attention)
        fitted.append((model, config, history))
    return fitted


def score_shards(models: list[nn.Module], path: str | Path, columns: list[str],
                 device: torch.device, batch_size: int = 512,
                 cache_mb: float = 2048) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Score every image of a shard directory with each one-logit model.

    Each batch of images is decoded once and shared by all models.

    Returns
    -------
    frame, scores
        The requested label columns (plus references) and one score array per model.
    """
    refs = shard_refs(path, columns)
    dataset = ShardDataset(refs, {}, cache_mb=cache_mb)
    return refs, predict_proba(models, dataset, device, batch_size)


def train_strategy(strategy: str, index: pd.DataFrame, p: Params, *, train_dir: str | Path,
                   val_dir: str | Path, device: torch.device, precision: str = "fp32"
                   ) -> tuple[list[tuple[nn.Module, ClassifierConfig, list[dict[str, float]]]],
                              TaskSpec]:
    """``train_target``: one target classifier per ``train_target.seeds`` on a strategy's
    training set index, with the strategy's training loop (mixup, cutmix, val_attention).

    The task (classes, regression scale, groups) comes from the real training split in
    ``train_dir``, not from the index; ``val_dir`` is read only by a strategy that needs
    validation rows (val_attention). Returns :func:`fit_classifiers`' runs and the task.
    """
    _, task = read_task(p, train_dir)
    attention_val = (task_rows(task, shard_refs(val_dir, param_columns(p)))
                     if strategy_spec(strategy).needs_val else None)
    fitted = fit_classifiers(index, p.train_target, image_size=p.base.image_size,
                             seeds=[derive_seed(p.base.seed, s) for s in p.train_target.seeds],
                             device=device, options=training_options(strategy, p.augment),
                             attention_val=attention_val, task=task, precision=precision)
    return fitted, task


def save_seed_models(out: str | Path, strategy: str,
                     fitted: Sequence[tuple[nn.Module, ClassifierConfig, list[dict[str, float]]]],
                     task: TaskSpec, p: Params, precision: str = "fp32") -> pd.DataFrame:
    """``out/seed<N>.pt`` of each run of :func:`train_strategy` (every seed or none: the
    folder is replaced whole, so no stale seed file survives); their loss history."""
    curves = []
    with atomic_directory(out) as tmp:
        for s, (net, config, hist) in zip(p.train_target.seeds, fitted, strict=True):
            save_checkpoint(tmp / f"seed{s}.pt", net, config,
                            {"strategy": strategy, "seed": s, "task": task.to_dict(),
                             "params": as_dict(p.train_target),
                             **precision_record(p.base.precision, precision)})
            curves += [{"seed": s, **h} for h in hist]
    return pd.DataFrame(curves)
