"""The pipeline's steps as functions, for a notebook or a script, without DVC.

Each function makes the lib calls of one stage, with its seeds and defaults:
:func:`prepare` (``stages/prepare.py``), :func:`training_index` (``augment``),
:func:`train` (``train_target``), :func:`evaluate` (``evaluate``), :func:`evaluate_strategy`
(the three in a row); :func:`fairness_report` builds the binary report from plain arrays.

``params`` is everywhere None (the defaults, equal to ``params.yaml``'s), a
:class:`~facebalance.config.Params`, a params file's path, or a mapping of changes such as
``{"train_target": {"epochs": 1}}``, validated like ``params.yaml`` (absent keys keep their
defaults). Training runs in this process on ``base.device`` (``base.nproc`` is the
pipeline's). The GAN strategies add rows that upstream stages generate: only
:data:`REAL_ONLY` strategies get an index here, while :func:`train` and :func:`evaluate`
also take the index and checkpoints the pipeline wrote for the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facebalance.balance.inputs import real_rows, strategy_index
from facebalance.balance.registry import REGISTRY
from facebalance.balance.registry import strategy as strategy_spec
from facebalance.config import Params, as_dict, load_params, parse_params
from facebalance.data.prepare import prepare_from_params
from facebalance.data.shards import read_parquet
from facebalance.errors import FacebalanceError
from facebalance.metrics import report as _report
from facebalance.models.evaluate import strategy_report
from facebalance.models.fit import save_seed_models, train_strategy
from facebalance.precision import resolve_precision
from facebalance.runtime import setup

#: The strategies this module runs from end to end: their rows are real images only.
REAL_ONLY = tuple(name for name, spec in REGISTRY.items() if not spec.inputs)
ERR_NEEDS_STAGES = (
    "api: strategy {name!r} adds rows made by upstream stages ({stages}, and the stages "
    "before them), which the Python API does not run: list it in params.yaml strategies and "
    "run `dvc repro evaluate@{name}` (train() and evaluate() then take "
    "data/trainsets/{name}.parquet and models/target/{name}); the API builds the index of "
    "{real}")
ERR_VAL_PAIR = "api: fairness_report needs val_y and val_scores together (or neither)"

ParamsLike = Params | Mapping[str, Any] | str | Path | None


def resolve_params(params: ParamsLike = None) -> Params:
    """The validated :class:`~facebalance.config.Params` that ``params`` stands for.

    None gives the defaults (equal to ``params.yaml``'s); a mapping is validated as a
    params file's content; a str or Path is a params file to load.
    """
    if params is None:
        return Params()
    if isinstance(params, Params):
        return params
    if isinstance(params, Mapping):
        return parse_params(params)
    return load_params(params)


def _with_seeds(p: Params, seeds: Sequence[int] | None) -> Params:
    """``p`` with ``train_target.seeds`` replaced (and validated) when ``seeds`` is given."""
    if seeds is None:
        return p
    data = as_dict(p)
    data["train_target"]["seeds"] = list(seeds)
    return parse_params(data)


def prepare(out: str | Path, params: ParamsLike = None, *, progress: bool = True
            ) -> dict[str, Any]:
    """Render synthfaces (or convert the real ``dataset.name``) into image shards.

    Parameters
    ----------
    out
        Folder of the ``train/``, ``val/`` and ``test/`` shards; replaced only once the
        whole dataset is written.
    params
        ``dataset``, ``task`` and ``base`` are read.
    progress
        Show progress bars.

    Returns
    -------
    dict
        Rows and target x protected cell counts per split (``metrics/prepare.json``).
    """
    p = resolve_params(params)
    return prepare_from_params(p, out, device=str(setup(p.base)), progress=progress)


def training_index(strategy: str, data: str | Path, params: ParamsLike = None
                   ) -> pd.DataFrame:
    """The training set index of a :data:`REAL_ONLY` strategy.

    Parameters
    ----------
    strategy
        ``baseline``, ``reweight``, ``oversample``, ``mixup``, ``cutmix`` or
        ``val_attention``; its options come from ``params``' ``augment`` section.
    data
        Prepared shards (:func:`prepare`); the index refers to ``data/train`` by this path.

    Returns
    -------
    pandas.DataFrame
        One row per training example: image references, ``id``, ``label``, ``group``,
        ``weight``, ``source`` (:mod:`facebalance.balance.strategies`).

    Raises
    ------
    FacebalanceError
        :data:`ERR_NEEDS_STAGES` for a strategy that adds generated rows.
    """
    p, spec = resolve_params(params), strategy_spec(strategy)
    if spec.inputs:
        raise FacebalanceError(ERR_NEEDS_STAGES.format(
            name=strategy, stages=" and ".join(spec.requires), real=", ".join(REAL_ONLY)))
    real, task = real_rows(p, Path(data) / "train")
    index = strategy_index(strategy, real, task, p)
    return index.reset_index(drop=True)


def train(strategy: str, index: pd.DataFrame | str | Path, data: str | Path, out: str | Path,
          params: ParamsLike = None, *, seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """Train the target classifier once per seed on a training set index.

    Parameters
    ----------
    strategy
        Sets the training loop: mixup, cutmix, val_attention (which reads ``data/val``).
    index
        :func:`training_index`'s table, or an index file (``data/trainsets/<name>.parquet``).
    data
        Prepared shards (the task's classes and groups come from ``data/train``).
    out
        Folder of the ``seed<N>.pt`` checkpoints (replaced; load one with
        :func:`facebalance.models.classifier.load_checkpoint`).
    seeds
        Training seeds instead of ``train_target.seeds``.

    Returns
    -------
    pandas.DataFrame
        The loss history: one row per seed and epoch.
    """
    p, data = _with_seeds(resolve_params(params), seeds), Path(data)
    rows = index if isinstance(index, pd.DataFrame) else read_parquet(index)
    device = setup(p.base)
    precision = resolve_precision(p.base.precision, device)
    fitted, task = train_strategy(strategy, rows, p, train_dir=data / "train",
                                  val_dir=data / "val", device=device, precision=precision)
    return save_seed_models(out, strategy, fitted, task, p, precision)


def evaluate(data: str | Path, models: str | Path, params: ParamsLike = None, *,
             strategy: str = "", seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """The metrics report of a strategy's checkpoints on the test split.

    Parameters
    ----------
    data
        Prepared shards: ``test/`` is scored, ``val/`` calibrates the thresholds.
    models
        Folder of ``seed<N>.pt`` checkpoints (:func:`train`).
    strategy
        Recorded first in the report, as the stage does.
    seeds
        The checkpoints to read instead of ``train_target.seeds``.

    Returns
    -------
    dict
        The keys of ``metrics/reports/<strategy>.json`` (:mod:`facebalance.metrics.report`).
    """
    p = _with_seeds(resolve_params(params), seeds)
    report, _ = strategy_report(p, strategy, Path(data), Path(models), setup(p.base))
    return report


def evaluate_strategy(strategy: str, data: str | Path, out: str | Path,
                      params: ParamsLike = None, *, seeds: Sequence[int] | None = None
                      ) -> dict[str, Any]:
    """:func:`training_index`, :func:`train` and :func:`evaluate` of one strategy.

    Parameters
    ----------
    strategy, data, seeds
        As in :func:`training_index` and :func:`train`.
    out
        Folder of the checkpoints.

    Returns
    -------
    dict
        The report ``dvc repro evaluate@<strategy>`` writes for the same params (with NaN
        where the file holds ``null``); only for the :data:`REAL_ONLY` strategies.
    """
    p = _with_seeds(resolve_params(params), seeds)
    index = training_index(strategy, data, p)
    train(strategy, index, data, out, p)
    return evaluate(data, out, p, strategy=strategy)


def _per_seed(scores: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """One score array per seed from one array or a list (or 2-D array) of them."""
    a = np.asarray(scores, dtype=np.float64)
    return [a] if a.ndim == 1 else list(a)


def fairness_report(y_true: np.ndarray, scores: np.ndarray | Sequence[np.ndarray],
                    groups: np.ndarray, *, val_y: np.ndarray | None = None,
                    val_scores: np.ndarray | Sequence[np.ndarray] | None = None,
                    threshold: float | None = None, reference_counts: np.ndarray | None = None,
                    group_name: str = "group", params: ParamsLike = None) -> dict[str, Any]:
    """The pipeline's binary fairness report from arrays.

    Parameters
    ----------
    y_true, groups
        0/1 labels and the protected group of each row.
    scores
        The model's scores: one array, or one per training seed (seed means and stds).
    val_y, val_scores
        Validation rows that calibrate each seed's threshold (#predicted positives = #true
        positives, the pipeline's rule); without them and without ``threshold``, the
        threshold is calibrated on ``y_true`` / ``scores`` themselves.
    threshold
        One decision threshold instead of calibrating.
    reference_counts
        ``(2, n_groups)`` training label counts for the direction of bias amplification
        (default: the test labels').
    group_name
        Prefix of the ``by_group`` keys (``male=0``).
    params
        ``evaluate.bootstrap``, ``evaluate.kl_bins`` and ``base.seed`` come from here.

    Returns
    -------
    dict
        ``ap``, ``accuracy``, ``deo`` (FNR gap), ``ba``, ``kl``, ``group_acc_std``,
        ``dp_diff``, ``eo_diff`` (each ``value``, ``std``, ``median``, ``ci95``,
        ``per_seed``), ``by_group``, ``group_gaps``, ``threshold``.
    """
    if (val_y is None) != (val_scores is None):
        raise FacebalanceError(ERR_VAL_PAIR)
    p, runs = resolve_params(params), _per_seed(scores)
    val = (y_true, runs) if val_y is None else (val_y, _per_seed(val_scores))
    return _report.fairness_report(
        *val, y_true, groups, runs,
        seeds=list(range(len(runs))), group_name=group_name, reference_counts=reference_counts,
        n_bootstrap=p.evaluate.bootstrap, bootstrap_seed=p.base.seed,
        kl_bins=p.evaluate.kl_bins, threshold=threshold)
