"""Evaluate a strategy's per-seed target classifiers on the prepared splits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from facebalance.config import EvaluateParams
from facebalance.data.shards import read_columns
from facebalance.errors import FacebalanceError
from facebalance.metrics.report import fairness_report
from facebalance.models.classifier import load_checkpoint
from facebalance.models.fit import score_shards


def training_cell_counts(train: pd.DataFrame, target: str, protected: str) -> np.ndarray:
    """``(2, n_groups)`` counts of target value x protected group in the training split."""
    groups = np.sort(train[protected].unique())
    return np.array([[int(((train[target] == t) & (train[protected] == g)).sum())
                      for g in groups] for t in (0, 1)])


def evaluate_models(data: Path, models_dir: Path, seeds: Sequence[int], *, target: str,
                    protected: str, device: torch.device, params: EvaluateParams,
                    bootstrap_seed: int = 0) -> tuple[dict[str, Any], pd.DataFrame]:
    """Score val and test with each seed's checkpoint and build the fairness report.

    Parameters
    ----------
    data
        Prepared shards directory with ``train/``, ``val/`` and ``test/``.
    models_dir
        Directory of ``seed<N>.pt`` checkpoints.
    seeds
        Training seeds to evaluate.
    target, protected
        Attribute columns.
    device
        Where to run the models.
    params
        Bootstrap size, KL bins, batch size.
    bootstrap_seed
        Seed of the bootstrap resamples.

    Returns
    -------
    report, scores
        The metrics dict and a table of test ids, labels, groups and each seed's score.
    """
    models = []
    for s in seeds:
        path = Path(models_dir) / f"seed{s}.pt"
        if not path.is_file():
            raise FacebalanceError(
                f"evaluate: {path} is missing; train_target.seeds lists seed {s}")
        models.append(load_checkpoint(path, device)[0])
    cols = ["id", target, protected]
    val, val_scores = score_shards(models, data / "val", cols, device, params.batch_size)
    test, test_scores = score_shards(models, data / "test", cols, device, params.batch_size)
    train = read_columns(data / "train", [target, protected])
    report = fairness_report(
        val[target].to_numpy(), val_scores, test[target].to_numpy(),
        test[protected].to_numpy(), test_scores, seeds=list(seeds), group_name=protected,
        reference_counts=training_cell_counts(train, target, protected),
        n_bootstrap=params.bootstrap, bootstrap_seed=bootstrap_seed, kl_bins=params.kl_bins)
    table = test[cols].copy()
    for s, sc in zip(seeds, test_scores, strict=True):
        table[f"score_seed{s}"] = sc
    return report, table
