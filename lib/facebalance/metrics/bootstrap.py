"""Seeded bootstrap over test samples, as count weights for the metric functions."""

from __future__ import annotations

import numpy as np


def bootstrap_weights(n: int, n_resamples: int = 500, seed: int = 0) -> np.ndarray:
    """``(n_resamples, n)`` counts: how often each sample is drawn in each resample.

    Equivalent to drawing ``n`` indices with replacement per resample; passing the counts
    as ``sample_weight`` evaluates a metric on every resample in one vectorized call.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    flat = idx + (np.arange(n_resamples) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)


def summarize(values: np.ndarray) -> dict[str, float]:
    """Median and 95% percentile interval of bootstrap values (NaNs ignored; all NaN, as for
    a metric undefined on these data, gives NaN)."""
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).all():
        return {"median": float("nan"), "lo": float("nan"), "hi": float("nan")}
    lo, med, hi = np.nanpercentile(values, [2.5, 50, 97.5])
    return {"median": float(med), "lo": float(lo), "hi": float(hi)}
