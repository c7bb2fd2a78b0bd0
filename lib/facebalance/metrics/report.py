"""The metrics JSON of one evaluated strategy, over several training seeds.

Layout (keys stable across strategies so ``dvc metrics diff`` lines up)::

    {"ap": {"value", "std", "median", "ci95": {"lo", "hi"}, "per_seed": {"seed0", ...}},
     "accuracy", "deo", "ba", "kl", "group_acc_std", "dp_diff", "eo_diff": same shape,
     "by_group": {"<protected>=<g>": {"n", "accuracy", "tpr", "fpr", "fnr",
                                      "selection_rate"}},
     "group_gaps": {"accuracy"|"tpr"|"fpr": {"difference", "ratio", "std"}},
     "n_seeds", "n_test", "threshold": {"seed0", ...}}

``value`` is the mean over training seeds and ``std`` their standard deviation (seed
noise). ``ci95``/``median`` come from a seeded bootstrap over test samples: every seed's
model is scored on the same resamples and the per-resample mean over seeds is summarized,
so the interval is that of the seed-averaged metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

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

METRIC_KEYS = ("ap", "accuracy", "deo", "ba", "kl", "group_acc_std", "dp_diff", "eo_diff")


def score_metrics(y: np.ndarray, g: np.ndarray, scores: np.ndarray, pred: np.ndarray,
                  w: np.ndarray, names: Sequence[str] = METRIC_KEYS, *,
                  reference_counts: np.ndarray | None = None, kl_bins: int = 50,
                  rates: GroupRates | None = None) -> dict[str, np.ndarray]:
    """The named metrics for each row of the ``(B, n)`` weight matrix ``w``: B values each.

    Only the requested metrics are computed (BA needs ``reference_counts``; KL its bins);
    ``rates`` passes group rates already computed for the same inputs.
    """
    rates = group_rates(y, pred, g, w) if rates is None else rates
    compute = {
        "ap": lambda: average_precision(y, scores, w),
        "accuracy": lambda: accuracy(y, pred, w),
        "deo": lambda: rates.difference("fnr"),
        "ba": lambda: bias_amplification(y, pred, g, w, reference_counts),
        "kl": lambda: kl_divergence(y, scores, g, w, bins=kl_bins),
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


def fairness_report(val_y: np.ndarray, val_scores: Sequence[np.ndarray], test_y: np.ndarray,
                    test_groups: np.ndarray, test_scores: Sequence[np.ndarray], *,
                    seeds: Sequence[int], group_name: str = "group",
                    reference_counts: np.ndarray | None = None, n_bootstrap: int = 500,
                    bootstrap_seed: int = 0, kl_bins: int = 50) -> dict[str, Any]:
    """Metrics of a binary classifier trained with several seeds.

    Parameters
    ----------
    val_y, val_scores
        Validation labels and each seed's scores: they fix each seed's calibrated threshold.
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

    Returns
    -------
    dict
        JSON-ready metrics (see the module docstring).
    """
    test_y, test_groups = np.asarray(test_y), np.asarray(test_groups)
    weights = bootstrap_weights(len(test_y), n_bootstrap, bootstrap_seed)
    point, boot, thresholds = [], [], {}
    for seed, vs, ts in zip(seeds, val_scores, test_scores, strict=True):
        thr = calibrated_threshold(val_y, vs)
        thresholds[f"seed{seed}"] = thr
        pred = (np.asarray(ts) >= thr).astype(np.int8)
        point.append(_seed_metrics(test_y, test_groups, ts, pred, np.ones((1, len(test_y))),
                                   reference_counts, kl_bins))
        boot.append(_seed_metrics(test_y, test_groups, ts, pred, weights, reference_counts,
                                  kl_bins))
    report: dict[str, Any] = {"n_seeds": len(seeds), "n_test": len(test_y),
                              "threshold": thresholds}
    for key in METRIC_KEYS:
        per_seed = np.array([p[key][0] for p in point], dtype=np.float64)
        seed_mean = np.mean(np.stack([b[key] for b in boot]), axis=0)
        s = summarize(seed_mean)
        report[key] = {
            "value": float(per_seed.mean()),
            "std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
            "median": s["median"],
            "ci95": {"lo": s["lo"], "hi": s["hi"]},
            "per_seed": {f"seed{sd}": float(v) for sd, v in zip(seeds, per_seed, strict=True)},
        }
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
