"""The metrics JSON of one evaluated strategy, over several training seeds.

Layout (keys stable across strategies so ``dvc metrics diff`` lines up)::

    {"ap": {"value", "std", "median", "ci95": {"lo", "hi"}, "per_seed": {"seed0", ...}},
     "accuracy", "deo", "ba", "kl", "group_acc_std", "dp_diff", "eo_diff": same shape,
     "by_group": {"<protected>=<g>": {"n", "accuracy", "tpr", "fpr", "fnr",
                                      "selection_rate"}},
     "group_gaps": {"accuracy"|"tpr"|"fpr": {"difference", "ratio", "std"}},
     "n_seeds", "n_test", "threshold": {"seed0", ...}}

Multi-class, multitask and regression reports (:func:`task_report`) have the same shape with
their own metrics (:data:`facebalance.choices.TASK_METRICS`), ``by_group`` (accuracy or MAE
per group) and, for classes, ``by_class``.

``value`` is the mean over training seeds and ``std`` their standard deviation (seed
noise). ``ci95``/``median`` come from a seeded bootstrap over test samples: every seed's
model is scored on the same resamples and the per-resample mean over seeds is summarized,
so the interval is that of the seed-averaged metric.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from facebalance.choices import DEFAULT_COMPARE, HEAD_METRICS, TASK_METRICS
from facebalance.metrics.bootstrap import bootstrap_weights, summarize
from facebalance.metrics.fairness import (
    GroupRates,
    accuracy,
    average_precision,
    bias_amplification,
    calibrated_threshold,
    group_rates,
    kl_divergence,
)
from facebalance.metrics.tasks import (
    class_accuracy_std,
    group_accuracy,
    group_mae,
    kl_to_pooled,
    macro_f1,
    mean_absolute_error,
    per_class_accuracy,
    root_mean_squared_error,
)
from facebalance.task import TaskSpec, group_names, label_keys

METRIC_KEYS = TASK_METRICS["binary"]


def score_metrics(y: np.ndarray, g: np.ndarray, scores: np.ndarray, pred: np.ndarray,
                  w: np.ndarray, names: Sequence[str] = METRIC_KEYS, *,
                  reference_counts: np.ndarray | None = None, kl_bins: int = 50,
                  rates: GroupRates | None = None) -> dict[str, np.ndarray]:
    """The named metrics for each row of the ``(B, n)`` weight matrix ``w``: B values each.

    Only the requested metrics are computed (BA needs ``reference_counts``; KL its bins);
    ``rates`` passes group rates already computed for the same inputs.
    """
    rates = group_rates(y, pred, g, w) if rates is None else rates
    two_groups = len(rates.groups) == 2
    kl_pooled: list[np.ndarray] = []

    def pooled() -> np.ndarray:  # (B, G), computed once for kl_max and kl_mean
        if not kl_pooled:
            kl_pooled.append(np.atleast_2d(kl_to_pooled(y, scores, g, w, bins=kl_bins)[1]))
        return kl_pooled[0]

    compute = {
        "ap": lambda: average_precision(y, scores, w),
        "accuracy": lambda: accuracy(y, pred, w),
        "deo": lambda: rates.difference("fnr"),
        "ba": lambda: bias_amplification(y, pred, g, w, reference_counts),
        # The symmetric two-group KL (gan-debiasing); with K groups use kl_max / kl_mean.
        "kl": lambda: (kl_divergence(y, scores, g, w, bins=kl_bins) if two_groups
                       else np.full(len(w), np.nan)),
        "kl_max": lambda: np.nanmax(pooled(), axis=1),
        "kl_mean": lambda: np.nanmean(pooled(), axis=1),
        "group_acc_std": lambda: rates.std("accuracy"),
        "dp_diff": lambda: rates.difference("selection_rate"),
        "eo_diff": lambda: np.maximum(rates.difference("tpr"), rates.difference("fpr")),
    }
    return {m: np.atleast_1d(compute[m]()) for m in names}


def _seed_metrics(y: np.ndarray, g: np.ndarray, scores: np.ndarray, pred: np.ndarray,
                  w: np.ndarray, reference_counts: np.ndarray | None,
                  kl_bins: int) -> dict[str, Any]:
    """Every metric of :data:`METRIC_KEYS` plus the group rates (``_rates``)."""
    rates = group_rates(y, pred, g, w)
    out: dict[str, Any] = score_metrics(y, g, scores, pred, w, reference_counts=reference_counts,
                                        kl_bins=kl_bins, rates=rates)
    out["_rates"] = rates
    return out


def headline_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    """The few numbers DVC tracks as metrics of a strategy: the seed mean of each of its
    task's headline metrics (:data:`facebalance.choices.DEFAULT_COMPARE`), e.g.
    ``{"ap": 0.93, "deo": 0.08, ...}``; intervals, seeds and groups stay in the report."""
    return {m: report[m]["value"] for m in default_metrics(report)}


def default_metrics(report: Mapping[str, Any]) -> list[str]:
    """The headline metrics of a report's task (:data:`~facebalance.choices.DEFAULT_COMPARE`);
    a binary task with more than two groups has ``kl_max`` in place of the two-group
    ``kl``, which is undefined there."""
    kind = report.get("task", {}).get("kind", "binary")
    names = list(DEFAULT_COMPARE[kind])
    kl = report.get("kl", {}).get("value")
    if kind == "binary" and (kl is None or np.isnan(kl)):
        names[names.index("kl")] = "kl_max"
    return names


def summarize_runs(point: Sequence[Mapping[str, np.ndarray]],
                   boot: Sequence[Mapping[str, np.ndarray]], seeds: Sequence[int],
                   keys: Sequence[str]) -> dict[str, Any]:
    """``{key: {"value", "std", "median", "ci95", "per_seed"}}`` from each seed's metric on
    the full test set (``point``, first value) and on the bootstrap resamples (``boot``).

    ``value``/``std``: mean and standard deviation over seeds; the interval is that of the
    per-resample mean over seeds.
    """
    out: dict[str, Any] = {}
    for key in keys:
        per_seed = np.array([p[key][0] for p in point], dtype=np.float64)
        seed_mean = np.mean(np.stack([b[key] for b in boot]), axis=0)
        s = summarize(seed_mean)
        out[key] = {
            "value": float(per_seed.mean()),
            "std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
            "median": s["median"],
            "ci95": {"lo": s["lo"], "hi": s["hi"]},
            "per_seed": {f"seed{sd}": float(v) for sd, v in zip(seeds, per_seed, strict=True)},
        }
    return out


def fairness_report(val_y: np.ndarray, val_scores: Sequence[np.ndarray], test_y: np.ndarray,
                    test_groups: np.ndarray, test_scores: Sequence[np.ndarray], *,
                    seeds: Sequence[int], group_name: str = "group",
                    reference_counts: np.ndarray | None = None, n_bootstrap: int = 500,
                    bootstrap_seed: int = 0, kl_bins: int = 50,
                    threshold: float | None = None) -> dict[str, Any]:
    """Metrics of a binary classifier trained with several seeds.

    Parameters
    ----------
    val_y, val_scores
        Validation labels and each seed's scores: they fix each seed's calibrated threshold
        (unused when ``threshold`` is given).
    test_y, test_groups, test_scores
        Test labels, protected groups and each seed's scores.
    seeds
        Training seeds, in the order of the score lists.
    group_name
        Name of the protected attribute, used in ``by_group`` keys.
    reference_counts
        ``(2, n_groups)`` training label counts for the bias-amplification direction.
    n_bootstrap, bootstrap_seed
        Bootstrap resamples of the test set and their seed.
    kl_bins
        Histogram bins of the KL metric.
    threshold
        One decision threshold for every seed (a deployed model's), instead of calibrating
        each seed's on the validation rows.

    Returns
    -------
    dict
        JSON-ready metrics (see the module docstring).
    """
    test_y, test_groups = np.asarray(test_y), np.asarray(test_groups)
    weights = bootstrap_weights(len(test_y), n_bootstrap, bootstrap_seed)
    point, boot, thresholds = [], [], {}
    for seed, vs, ts in zip(seeds, val_scores, test_scores, strict=True):
        thr = calibrated_threshold(val_y, vs) if threshold is None else float(threshold)
        thresholds[f"seed{seed}"] = thr
        pred = (np.asarray(ts) >= thr).astype(np.int8)
        point.append(_seed_metrics(test_y, test_groups, ts, pred, np.ones((1, len(test_y))),
                                   reference_counts, kl_bins))
        boot.append(_seed_metrics(test_y, test_groups, ts, pred, weights, reference_counts,
                                  kl_bins))
    report: dict[str, Any] = {"n_seeds": len(seeds), "n_test": len(test_y),
                              "threshold": thresholds}
    report.update(summarize_runs(point, boot, seeds, METRIC_KEYS))
    frames = [p["_rates"].frame() for p in point]
    mean_frame = sum(frames[1:], frames[0]) / len(frames)
    report["by_group"] = {
        f"{group_name}={grp}": {k: float(v) for k, v in row.items()}
        for grp, row in mean_frame.iterrows()}
    report["group_gaps"] = {
        name: {stat: float(np.mean([getattr(p["_rates"], stat)(name)[0] for p in point]))
               for stat in ("difference", "ratio", "std")}
        for name in ("accuracy", "tpr", "fpr")}
    return report


def _classes_metrics(y: np.ndarray, pred: np.ndarray, w: np.ndarray, n_classes: int,
                     suffix: str = "") -> dict[str, np.ndarray]:
    # A test class the head never saw still counts (accuracy 0 in the spread).
    classes = np.union1d(np.arange(n_classes), np.unique(y))
    return {f"accuracy{suffix}": np.atleast_1d(accuracy(y, pred, w)),
            f"macro_f1{suffix}": np.atleast_1d(macro_f1(y, pred, w)),
            f"class_acc_std{suffix}": np.atleast_1d(class_accuracy_std(y, pred, classes, w))}


def head_predictions(task: TaskSpec, table: pd.DataFrame, seed: str) -> list[np.ndarray]:
    """Each head's predicted classes (or values) of one seed from a scores table:
    ``pred_<seed>`` for the primary head, ``pred<h>_<seed>`` for head h."""
    return [table[f"pred_{seed}" if h == 0 else f"pred{h}_{seed}"].to_numpy()
            for h in range(len(task.heads))]


def task_metrics(task: TaskSpec, table: pd.DataFrame, seed: str, w: np.ndarray,
                 names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The named metrics of one seed (``seed<N>``) of a multi-class, multitask or regression
    scores table (columns ``label``, ``label1``..., ``group``, predictions as in
    :func:`head_predictions`), for each row of the ``(B, n)`` weights: B values each."""
    names = list(names or available_metrics(task))
    y, g = table["label"].to_numpy(), table["group"].to_numpy()
    preds = head_predictions(task, table, seed)
    if task.kind == "regression":
        yhat = preds[0]
        _, mae = group_mae(y, yhat, g, w)
        mae = np.atleast_2d(mae)
        with warnings.catch_warnings():  # a group absent from a resample: NaN, ignored
            warnings.simplefilter("ignore", RuntimeWarning)
            worst, best = np.nanmax(mae, axis=1), np.nanmin(mae, axis=1)
            out = {"mae": np.atleast_1d(mean_absolute_error(y, yhat, w)),
                   "rmse": np.atleast_1d(root_mean_squared_error(y, yhat, w)),
                   "wmae": np.nanmean(mae, axis=1), "worst_group_mae": worst,
                   "best_group_mae": best, "group_mae_gap": worst - best}
        return {k: out[k] for k in names}
    out = _classes_metrics(y, preds[0], w, task.heads[0].n_classes)
    _, acc = group_accuracy(y, preds[0], g, w)
    acc = np.atleast_2d(acc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out.update({"group_acc_std": np.nanstd(acc, axis=1),
                    "group_acc_gap": np.nanmax(acc, axis=1) - np.nanmin(acc, axis=1),
                    "worst_group_acc": np.nanmin(acc, axis=1)})
    for key, head, pred in zip(label_keys(task)[1:], task.heads[1:], preds[1:], strict=True):
        out.update(_classes_metrics(table[key].to_numpy(), pred, w, head.n_classes,
                                    f"_{head.column}"))
    return {k: out[k] for k in names}


def available_metrics(task: TaskSpec) -> tuple[str, ...]:
    """Metric keys of a task's report (multitask: with each extra head's)."""
    extra = tuple(f"{m}_{h.column}" for h in task.heads[1:] for m in HEAD_METRICS)
    return TASK_METRICS[task.kind] + extra


def task_report(task: TaskSpec, table: pd.DataFrame, seeds: Sequence[int], *,
                n_bootstrap: int = 500, bootstrap_seed: int = 0) -> dict[str, Any]:
    """Metrics of a multi-class, multitask or regression model over several seeds.

    Parameters
    ----------
    task
        The models' task (from their checkpoints).
    table
        Test rows: ``label``, ``label1``..., ``group`` and each seed's predictions
        (:func:`head_predictions`).
    seeds
        Training seeds.
    n_bootstrap, bootstrap_seed
        Bootstrap resamples of the test set and their seed.

    Returns
    -------
    dict
        ``n_seeds``, ``n_test``, each metric of :func:`available_metrics` as in
        :func:`summarize_runs`, ``by_group`` (seed-mean accuracy or MAE and ``n`` per group)
        and, for classes, ``by_class`` (seed-mean accuracy per class of the primary target).
    """
    weights = bootstrap_weights(len(table), n_bootstrap, bootstrap_seed)
    ones = np.ones((1, len(table)))
    names = [f"seed{s}" for s in seeds]
    point = [task_metrics(task, table, s, ones) for s in names]
    boot = [task_metrics(task, table, s, weights) for s in names]
    report: dict[str, Any] = {"n_seeds": len(seeds), "n_test": len(table)}
    report.update(summarize_runs(point, boot, seeds, available_metrics(task)))
    y, g = table["label"].to_numpy(), table["group"].to_numpy()
    preds = [head_predictions(task, table, s)[0] for s in names]
    if task.kind == "regression":
        groups, _ = group_mae(y, preds[0], g)
        per_group = np.mean([group_mae(y, p, g)[1] for p in preds], axis=0)
        key = "mae"
    else:
        groups, _ = group_accuracy(y, preds[0], g)
        per_group = np.mean([group_accuracy(y, p, g)[1] for p in preds], axis=0)
        key = "accuracy"
        # Classes of the head, and any test label beyond them (absent from train).
        classes = np.union1d(np.arange(task.heads[0].n_classes), np.unique(y))
        per_class = np.mean([per_class_accuracy(y, p, classes) for p in preds], axis=0)
        report["by_class"] = {f"{task.target}={c}": float(a)
                              for c, a in zip(classes, per_class, strict=True)}
    counts = pd.Series(g).value_counts()
    report["by_group"] = {name: {"n": int(counts[grp]), key: float(v)}
                          for name, grp, v in zip(group_names(task, groups), groups, per_group,
                                                  strict=True)}
    return report
