"""Side-by-side comparison of evaluated strategies: a markdown table and a bar chart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from facebalance.errors import FacebalanceError

LABELS = {"ap": "AP", "accuracy": "accuracy", "deo": "DEO", "ba": "BA", "kl": "KL",
          "kl_max": "KL max", "kl_mean": "KL mean", "group_acc_std": "group acc std",
          "dp_diff": "DP diff", "eo_diff": "EO diff", "macro_f1": "macro-F1",
          "class_acc_std": "class acc std", "group_acc_gap": "group acc gap",
          "worst_group_acc": "worst group acc", "mae": "MAE", "rmse": "RMSE", "wmae": "WMAE",
          "worst_group_mae": "worst group MAE", "best_group_mae": "best group MAE",
          "group_mae_gap": "group MAE gap"}
LOWER_IS_BETTER = {"deo", "ba", "kl", "kl_max", "kl_mean", "group_acc_std", "dp_diff",
                   "eo_diff", "class_acc_std", "group_acc_gap", "mae", "rmse", "wmae",
                   "worst_group_mae", "best_group_mae", "group_mae_gap"}


def label(metric: str) -> str:
    """Table heading of a metric (``accuracy_male``: ``accuracy (male)``)."""
    if metric in LABELS:
        return LABELS[metric]
    for base in ("class_acc_std", "macro_f1", "accuracy"):
        if metric.startswith(base + "_"):
            return f"{LABELS[base]} ({metric[len(base) + 1:]})"
    return metric


def lower_is_better(metric: str) -> bool:
    """Gaps, errors and divergences: smaller is better."""
    return metric in LOWER_IS_BETTER or metric.startswith("class_acc_std_")


def _finite(value: Any) -> bool:
    return value is not None and bool(np.isfinite(float(value)))


def fmt(value: Any, digits: int = 3) -> str:
    """A metric value to ``digits`` decimals; an undefined one (None, NaN) as ``n/a``, never
    ``nan``."""
    return f"{float(value):.{digits}f}" if _finite(value) else "n/a"


def comparison_frame(reports: dict[str, dict[str, Any]], metrics: Sequence[str]) -> pd.DataFrame:
    """Long table: one row per (strategy, metric) with mean, std, interval and seeds."""
    rows = []
    for name, rep in reports.items():
        for m in metrics:
            if m not in rep:
                raise FacebalanceError(f"compare: metrics of {name!r} have no key {m!r}")
            r = rep[m]
            rows.append({"strategy": name, "metric": m, "value": r["value"], "std": r["std"],
                         "lo": r["ci95"]["lo"], "hi": r["ci95"]["hi"],
                         "n_seeds": rep.get("n_seeds", 1)})
    return pd.DataFrame(rows)


def to_markdown(frame: pd.DataFrame, baseline: str = "baseline") -> str:
    """Markdown table: strategies as rows, ``mean ± std [95% CI]`` per metric.

    When a baseline row exists, each fairness metric also shows its relative change.
    """
    metrics = list(dict.fromkeys(frame["metric"]))
    head = "| strategy | seeds | " + " | ".join(label(m) for m in metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 2)]
    base = frame[frame["strategy"] == baseline].set_index("metric")["value"]
    for name, rows in frame.groupby("strategy", sort=False):
        r = rows.set_index("metric")
        cells = []
        for m in metrics:
            cell = (f"{fmt(r.at[m, 'value'])} ± {fmt(r.at[m, 'std'])} "
                    f"[{fmt(r.at[m, 'lo'])}, {fmt(r.at[m, 'hi'])}]")
            if (name != baseline and m in base.index and lower_is_better(m)
                    and _finite(base[m]) and base[m] > 0 and _finite(r.at[m, "value"])):
                cell += f" ({(r.at[m, 'value'] / base[m] - 1) * 100:+.0f}%)"
            cells.append(cell)
        lines.append(f"| {name} | {int(r['n_seeds'].iloc[0])} | " + " | ".join(cells) + " |")
    note = ("\nmean ± std over training seeds [95% bootstrap interval of the seed mean, "
            "test resamples]; (±%) change against the baseline mean.\n")
    return "\n".join(lines) + "\n" + note


def plot_comparison(frame: pd.DataFrame) -> bytes:
    """PNG bytes of a bar chart per metric: seed mean with the 95% interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(frame["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.0 * len(metrics), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        sub = frame[frame["metric"] == m]
        x = range(len(sub))
        ax.bar(x, sub["value"], color="#4c78a8")
        # The interval is drawn as is: for skewed metrics (KL) the seed mean can sit
        # outside the bootstrap interval of the resampled mean.
        ax.vlines(list(x), sub["lo"], sub["hi"], color="black", linewidth=1.2)
        ax.scatter(list(x) * 2, list(sub["lo"]) + list(sub["hi"]), marker="_", s=60,
                   color="black")
        ax.set_xticks(list(x), sub["strategy"], rotation=35, ha="right", fontsize=8)
        arrow = "↓" if lower_is_better(m) else "↑"
        ax.set_title(f"{label(m)} {arrow}", fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
