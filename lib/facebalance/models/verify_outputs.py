"""The verify stage's outputs: the headline metrics, the markdown table, the ROC points and
figure, written together (:class:`VerifyOutputs`), a skipped verification included."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facebalance.data.shards import atomic_directory, atomic_write_bytes, write_table_atomic
from facebalance.metrics.verification import roc
from facebalance.models.pair_head import PairHead, save_verifier
from facebalance.models.verifier import VERIFIERS
from facebalance.runtime import write_csv, write_json


def roc_points(scored: pd.DataFrame) -> pd.DataFrame:
    """Long-format ROC of both verifiers on the test pairs (``verifier, fmr, tar``), for a
    DVC plot."""
    parts = []
    for v in VERIFIERS:
        fmr, tar, _ = roc(scored[f"score_{v}"].to_numpy(), scored["same"].to_numpy())
        parts.append(pd.DataFrame({"verifier": v, "fmr": fmr, "tar": tar}))
    return pd.concat(parts, ignore_index=True)


def headline(report: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The DVC metrics: each verifier's values without intervals (``metrics/verify.json``)."""
    return {v: {k: m["value"] for k, m in rep["metrics"].items()}
            for v, rep in report["verifiers"].items()}


def markdown_table(report: Mapping[str, Any]) -> str:
    """Both verifiers side by side, value [95% interval], and the paired difference."""
    keys = list(report["verifiers"]["head"]["metrics"])

    def cell(m: Mapping[str, Any]) -> str:
        v, lo, hi = m["value"], m["ci95"]["lo"], m["ci95"]["hi"]
        if v is None or not np.isfinite(v):
            return "n/a"
        return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"

    lines = ["| metric | head | cosine | head - cosine |", "|---|---|---|---|"]
    for k in keys:
        lines.append(f"| {k} | {cell(report['verifiers']['head']['metrics'][k])} | "
                     f"{cell(report['verifiers']['cosine']['metrics'][k])} | "
                     f"{cell(report['paired']['head - cosine'][k])} |")
    return "\n".join(lines) + "\n"


def plot_roc(points: pd.DataFrame, report: Mapping[str, Any]) -> bytes:
    """PNG bytes: both verifiers' ROC (TAR against FMR, log FMR axis) with their AUC."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    for v, color in zip(VERIFIERS, ("#4c78a8", "#f58518"), strict=True):
        sub = points[(points["verifier"] == v) & (points["fmr"] > 0)]
        auc = report["verifiers"][v]["metrics"]["auc"]["value"]
        ax.plot(sub["fmr"], sub["tar"], color=color, label=f"{v} (AUC {auc:.3f})")
    ax.set_xscale("log")
    ax.set_xlabel("false match rate (FMR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def empty_png() -> bytes:
    """A 1 x 1 white PNG: the figure of a skipped verification (the out must exist)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 255, 255)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class VerifyOutputs:
    """The verify stage's declared outputs, written together: every one exists afterwards,
    a skipped verification included (DVC requires its outs)."""

    model_dir: Path
    scores: Path
    report: Path
    metrics: Path
    table: Path
    roc: Path
    figure: Path

    def write(self, head: PairHead, thresholds: dict[str, float], scored: pd.DataFrame,
              report: Mapping[str, Any], features: Sequence[str]) -> None:
        """Write a verification: head, test pair scores, report, headline, markdown table,
        ROC points and figure (each atomically; the caller computed everything first)."""
        points = roc_points(scored)
        table, png = markdown_table(report).encode(), plot_roc(points, report)
        with atomic_directory(self.model_dir) as tmp:
            save_verifier(tmp / "head.json", head, thresholds,
                          {"kind": "verification", "features": list(features)})
        write_table_atomic(scored, self.scores)
        write_json(self.report, report)
        write_json(self.metrics, headline(report))
        atomic_write_bytes(self.table, table)
        write_csv(self.roc, points)
        atomic_write_bytes(self.figure, png)

    def write_skipped(self, reason: str) -> None:
        """Write every output of a verification that did not run, saying why."""
        skipped = {"task": {"kind": "verification"}, "skipped": reason}
        with atomic_directory(self.model_dir) as tmp:
            write_json(tmp / "skipped.json", skipped)
        write_table_atomic(pd.DataFrame({"id_a": [], "id_b": [], "same": []}), self.scores)
        write_json(self.report, skipped)
        write_json(self.metrics, {"skipped": reason})
        atomic_write_bytes(self.table, f"verification skipped: {reason}\n".encode())
        write_csv(self.roc, pd.DataFrame({"verifier": [], "fmr": [], "tar": []}))
        atomic_write_bytes(self.figure, empty_png())
