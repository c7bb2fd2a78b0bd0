"""Score val and test with a strategy's per-seed models and build the metrics report.

This is where checkpoints are loaded and shards scored; the metrics themselves are array
functions in :mod:`facebalance.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from facebalance.config import EvaluateParams, Params
from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import read_columns, shard_refs
from facebalance.errors import FacebalanceError
from facebalance.metrics.report import fairness_report, task_report
from facebalance.models.classifier import load_checkpoint
from facebalance.models.train import predict_outputs
from facebalance.task import TaskSpec, param_columns, read_task, task_labels


def training_cell_counts(train: pd.DataFrame, target: str, protected: str,
                         groups: np.ndarray | None = None) -> np.ndarray:
    """``(2, n_groups)`` counts of target value x protected group in the training split.

    ``groups`` fixes the columns (the test split's groups, so that a group absent from
    train gets zero counts); default: the groups of ``train``.
    """
    groups = np.sort(train[protected].unique()) if groups is None else np.sort(groups)
    return np.array([[int(((train[target] == t) & (train[protected] == g)).sum())
                      for g in groups] for t in (0, 1)])


def load_seed_models(models_dir: Path, seeds: Sequence[int], device: torch.device,
                     default_task: TaskSpec) -> tuple[list[nn.Module], TaskSpec]:
    """Each seed's model and the task recorded in their checkpoints (all must agree).

    Checkpoints written before tasks were recorded are binary (``default_task``).
    """
    models, tasks = [], []
    for s in seeds:
        path = Path(models_dir) / f"seed{s}.pt"
        if not path.is_file():
            raise FacebalanceError(
                f"evaluate: {path} is missing; train_target.seeds lists seed {s}")
        model, _, meta = load_checkpoint(path, device)
        models.append(model)
        tasks.append(TaskSpec.from_dict(meta["task"], default_task.n_groups) if "task" in meta
                     else default_task)
    if any(t != tasks[0] for t in tasks[1:]):
        raise FacebalanceError(
            f"evaluate: the checkpoints in {models_dir} were trained for different tasks; "
            "rerun train_target")
    got, want = tasks[0], default_task
    if (got.kind, got.columns) != (want.kind, want.columns):
        raise FacebalanceError(
            f"evaluate: the checkpoints in {models_dir} were trained for a {got.kind} task on "
            f"{', '.join(got.columns)}; params.yaml asks for a {want.kind} task on "
            f"{', '.join(want.columns)}: rerun train_target (dvc repro train_target)")
    return models, tasks[0]


def predictions_table(task: TaskSpec, refs: pd.DataFrame, outputs: Sequence[np.ndarray],
                      seeds: Sequence[int]) -> pd.DataFrame:
    """Test rows with ``id``, the task's labels and group, and each seed's predictions.

    A binary task keeps each seed's score (``score_seed<N>``); other heads keep the
    predicted class (argmax, or score >= 0.5 for a binary head of a multitask model) or
    the predicted number: ``pred_seed<N>`` for the primary head, ``pred<h>_seed<N>``.
    """
    table = pd.concat([refs[["id"]], task_labels(task, refs)], axis=1).reset_index(drop=True)
    for s, out in zip(seeds, outputs, strict=True):
        if task.kind == "binary":
            table[f"score_seed{s}"] = out[:, 0]
            continue
        for h, (head, cols) in enumerate(zip(task.heads, task.slices(), strict=True)):
            part = out[:, cols]
            if head.kind == "multiclass":
                pred = part.argmax(axis=1).astype(np.int64)
            elif head.kind == "binary":
                pred = (part[:, 0] >= 0.5).astype(np.int64)
            else:
                pred = part[:, 0].astype(np.float64)
            table[f"pred_seed{s}" if h == 0 else f"pred{h}_seed{s}"] = pred
    return table


def evaluate_models(data: Path, models_dir: Path, seeds: Sequence[int], *,
                    default_task: TaskSpec, columns: Sequence[str], device: torch.device,
                    params: EvaluateParams, bootstrap_seed: int = 0
                    ) -> tuple[dict[str, Any], pd.DataFrame]:
    """Score val and test with each seed's checkpoint and build the metrics report.

    Parameters
    ----------
    data
        Prepared shards directory with ``train/``, ``val/`` and ``test/``.
    models_dir
        Directory of ``seed<N>.pt`` checkpoints.
    seeds
        Training seeds to evaluate.
    default_task
        The task of params (used for checkpoints that do not record theirs).
    columns
        Dataset columns the task reads (target(s), protected).
    device
        Where to run the models.
    params
        Bootstrap size, KL bins, batch size.
    bootstrap_seed
        Seed of the bootstrap resamples.

    Returns
    -------
    report, table
        The metrics dict (with the models' ``task``; test metrics) and the predictions
        table (:func:`predictions_table`) of test and val rows, told apart by ``split``.
    """
    models, task = load_seed_models(models_dir, seeds, device, default_task)
    cols = ["id", *columns]

    def predict(split: str) -> tuple[pd.DataFrame, list[np.ndarray]]:
        refs = shard_refs(data / split, cols)
        dataset = ShardDataset(refs, {})
        return refs, predict_outputs(models, dataset, device, task, params.batch_size)

    test, test_out = predict("test")
    val, val_out = predict("val")
    table = predictions_table(task, test, test_out, seeds)
    # Val predictions too: compare's validation guard judges every strategy on them.
    both = pd.concat([table.assign(split="test"),
                      predictions_table(task, val, val_out, seeds).assign(split="val")],
                     ignore_index=True)
    if task.kind != "binary":
        report = task_report(task, table, seeds, n_bootstrap=params.bootstrap,
                             bootstrap_seed=bootstrap_seed)
        return {"task": task.to_dict(), **report}, both
    train = read_columns(data / "train", [task.target, task.protected])
    report = fairness_report(
        val[task.target].to_numpy(), [o[:, 0] for o in val_out], table["label"].to_numpy(),
        table["group"].to_numpy(), [o[:, 0] for o in test_out], seeds=list(seeds),
        group_name=task.protected,
        reference_counts=training_cell_counts(train, task.target, task.protected,
                                              np.unique(table["group"])),
        n_bootstrap=params.bootstrap, bootstrap_seed=bootstrap_seed, kl_bins=params.kl_bins)
    return {"task": task.to_dict(), **report}, both


def evaluation_gallery(data: Path, report: Mapping[str, Any], table: pd.DataFrame,
                       seed: int, *, k: int = 6) -> bytes:
    """PNG of the test faces one seed's model gets most confidently wrong in each group
    (false negatives beside false positives at the report's threshold; the wrong class, or
    the largest errors for regression): what a person looks at when a number says a group
    is treated worse. Only the faces shown are decoded.

    Parameters
    ----------
    data
        Prepared shards (``test/``).
    report
        The evaluate report (its ``task``, ``strategy`` and per-seed ``threshold``).
    table
        :func:`evaluate_models`'s predictions table.
    seed
        Whose predictions are shown (the first training seed).
    k
        Faces per kind of mistake and group.
    """
    from facebalance.gallery import draw_gallery, images_from_shards, pick_mistakes

    task = TaskSpec.from_dict(report["task"])
    test = table[table["split"] == "test"].reset_index(drop=True)
    y, groups = test["label"].to_numpy(), test["group"].to_numpy()
    if task.kind == "binary":
        picks = pick_mistakes(y, groups, kind="binary", scores=test[f"score_seed{seed}"]
                              .to_numpy(), threshold=report["threshold"][f"seed{seed}"], k=k)
    else:
        kind = "regression" if task.kind == "regression" else "multiclass"
        picks = pick_mistakes(y, groups, kind=kind, y_pred=test[f"pred_seed{seed}"].to_numpy(),
                              k=k)
    images = images_from_shards(data / "test", {int(r): str(test["id"][r])
                                                for r in picks.shown()})
    return draw_gallery(picks, images, dict(enumerate(task.group_names())), k=k,
                        title=f"{report.get('strategy', '')}: most confident mistakes "
                              f"(seed {seed})")


def strategy_report(p: Params, strategy: str, data: Path, models_dir: Path,
                    device: torch.device) -> tuple[dict[str, Any], pd.DataFrame]:
    """``evaluate``: the report of a strategy's ``train_target.seeds`` checkpoints
    (:func:`evaluate_models` with the params' task, evaluate settings and bootstrap seed),
    led by the strategy's name (empty: left out), and the val/test predictions table."""
    _, task = read_task(p, data / "train")
    result, table = evaluate_models(data, models_dir, p.train_target.seeds, default_task=task,
                                    columns=param_columns(p), device=device, params=p.evaluate,
                                    bootstrap_seed=p.base.seed)
    return ({"strategy": strategy, **result} if strategy else result), table
