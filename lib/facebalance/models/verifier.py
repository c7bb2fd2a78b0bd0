"""Face-pair verification from embeddings: pairs, the pair head and the cosine baseline.

Two verifiers score every pair of embeddings ``(a, b)``:

- ``head``: logistic regression on the pair features (chi-square, ``|a - b|``, ``a * b``,
  cosine; :mod:`facebalance.models.pair_head`) fitted on the train pairs;
- ``cosine``: the cosine similarity itself, the baseline the head must beat.

Each verifier's threshold is the one with the best accuracy on the val pairs; it is then
applied unchanged to the test pairs, where every metric is measured: AUC, accuracy, F1,
EER, TAR at the ``verify.fars``, and per group FMR / FNMR at that one global threshold
(NIST FRVT) with their max / min ratio. Intervals come from one seeded bootstrap over the
test identities (:func:`identity_bootstrap`), shared by both verifiers, so
``head - cosine`` is a paired difference.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facebalance.data.face_pairs import identity_pairs
from facebalance.data.shards import read_columns, read_parquet, write_table_atomic
from facebalance.errors import FacebalanceError
from facebalance.metrics.bootstrap import bootstrap_weights, summarize
from facebalance.metrics.verification import (
    best_threshold,
    cosine,
    group_rates_weighted,
    max_min_ratio,
    roc,
    verifier_metrics,
)
from facebalance.models.pair_head import PairHead, fit_pair_head

VERIFIERS = ("head", "cosine")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyConfig:
    """What :func:`verify_pairs` needs from the ``verify`` params."""

    features: tuple[str, ...] = ("chi2", "absdiff", "product", "cosine")
    c: float = 1.0
    fars: tuple[float, ...] = (0.01, 0.001)
    bootstrap: int = 500
    seed: int = 0


def pair_group(rows: pd.DataFrame, pairs: pd.DataFrame, column: str) -> np.ndarray:
    """The ``column`` group of each pair: the value both faces share, ``-1`` when they
    differ (such pairs count in the overall rates, not in a group's)."""
    value = rows.set_index("id")[column]
    a = value.reindex(pairs["id_a"]).to_numpy()
    b = value.reindex(pairs["id_b"]).to_numpy()
    return np.where(a == b, a, -1).astype(np.int64)


def synth_pairs(rows: pd.DataFrame, groups: Sequence[str], n_per_group: int, seed: int,
                cross_share: float) -> pd.DataFrame:
    """Genuine and impostor pairs of every split, balanced by ``groups[0]`` (one group when
    ``groups`` is empty); train pairs only from rows with ``head_fit`` set (identities the
    embedder did not train on)."""
    use = rows[(rows["split"] != "train") | rows["head_fit"]].copy()
    use["group"] = use[groups[0]].to_numpy(np.int64) if groups else 0
    return identity_pairs(use[["id", "identity", "group", "split"]], n_per_group, seed,
                          cross_share=cross_share)


def attach_groups(rows: pd.DataFrame, data: str | Path, groups: Sequence[str],
                  group_file: str = "") -> pd.DataFrame:
    """``rows`` with the ``groups`` columns, from the prepared shards or, for real data,
    a CSV mapping ``identity`` to group columns (``verify.group_file``).

    Text groups (``Black``, ``White``...) become numbers 0..K-1 in sorted order. Columns
    the images lack (the synthfaces defaults on a real dataset) are left out with a
    warning; :func:`present_groups` lists the ones kept.
    """
    if rows["id"].duplicated().any():
        raise FacebalanceError(
            f"verify: image id {rows.loc[rows['id'].duplicated(), 'id'].iloc[0]!r} occurs "
            "twice in the embeddings; rerun prepare and embed")
    out = rows.copy()
    if group_file:
        path = Path(group_file)
        try:
            mapping = pd.read_csv(path, dtype={"identity": str})
        except (OSError, ValueError) as err:
            raise FacebalanceError(f"verify.group_file {path}: cannot read it ({err})") from None
        if "identity" not in mapping.columns:
            raise FacebalanceError(
                f"verify.group_file {path}: no 'identity' column; it has {list(mapping)}")
        cols = [g for g in groups if g in mapping.columns]
        if mapping["identity"].duplicated().any():
            first = mapping.loc[mapping["identity"].duplicated(), "identity"].iloc[0]
            raise FacebalanceError(f"verify.group_file {path}: identity {first!r} is listed "
                                   "twice")
        out = out.merge(mapping[["identity", *cols]], on="identity", how="left")
    labels = []
    for split in out["split"].unique():
        frame = read_columns(Path(data) / str(split))
        keep = ["id", *[g for g in groups if g in frame.columns and g not in out.columns]]
        labels.append(frame[keep])
    if labels:
        extra = pd.concat(labels, ignore_index=True).drop_duplicates("id")
        if len(extra.columns) > 1:
            out = out.merge(extra, on="id", how="left")
    if len(out) != len(rows):  # a merge that added rows would misalign the embeddings
        raise FacebalanceError("verify: group columns do not map one to one onto the images")
    missing = [g for g in groups if g not in out.columns]
    if missing and group_file:  # the user named a file for them
        raise FacebalanceError(
            f"verify.groups lists {missing}, which neither the prepared images nor "
            f"verify.group_file hold; set verify.groups to existing columns (or [])")
    if missing:  # the synthfaces defaults on a real dataset: rates for the others only
        log.warning("verify: no column %s in the prepared images; no per-group rates for "
                    "them (verify.groups, verify.group_file)", missing)
    for g in (g for g in groups if g in out.columns):
        col = out[g]
        if col.isna().any():
            first = out.loc[col.isna(), "identity"].iloc[0]
            raise FacebalanceError(
                f"verify: identity {first!r} has no {g!r} group "
                + (f"in {group_file}" if group_file else "in the prepared images"))
        if not pd.api.types.is_integer_dtype(col):
            out[g] = pd.factorize(col.astype(str), sort=True)[0]
    return out


def present_groups(rows: pd.DataFrame, groups: Sequence[str]) -> list[str]:
    """The ``groups`` columns that :func:`attach_groups` found."""
    return [g for g in groups if g in rows.columns]


def load_pairs(data: str | Path, rows: pd.DataFrame, groups: Sequence[str],
               n_per_group: int, seed: int, cross_share: float) -> tuple[pd.DataFrame, str]:
    """The prepared ``pairs.parquet`` (LFW) when there is one, else pairs drawn from the
    identities; and which of the two it is."""
    path = Path(data) / "pairs.parquet"
    if path.is_file():
        return usable_pairs(read_parquet(path, ["id_a", "id_b", "same", "split"]), rows), (
            "pairs file")
    return synth_pairs(rows, groups, n_per_group, seed, cross_share), "identities"


def usable_pairs(pairs: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The pairs of a pairs file whose two images sit in the pair's split, and, for train
    pairs, are ``head_fit`` (not trained on by the embedder): a head fitted on pairs of
    faces the embedder has learned reads new faces wrongly. The others are dropped and
    logged."""
    info = rows.set_index("id")
    keep = np.ones(len(pairs), dtype=bool)
    for col in ("id_a", "id_b"):
        split = info["split"].reindex(pairs[col]).to_numpy()
        fit = info["head_fit"].reindex(pairs[col]).fillna(False).to_numpy(bool)
        keep &= split == pairs["split"].to_numpy()
        keep &= (pairs["split"].to_numpy() != "train") | fit
    if not keep.all():
        log.warning("verify: %d of %d pairs of the pairs file dropped (an image in another "
                    "split, or a train pair of faces the embedder trained on)",
                    int((~keep).sum()), len(pairs))
    return pairs[keep].reset_index(drop=True)


def _lookup(rows: pd.DataFrame, embeddings: np.ndarray, pairs: pd.DataFrame
            ) -> tuple[np.ndarray, np.ndarray]:
    pos = pd.Series(np.arange(len(rows)), index=rows["id"].to_numpy())
    missing = ~pairs["id_a"].isin(pos.index) | ~pairs["id_b"].isin(pos.index)
    if missing.any():
        first = pairs.loc[missing].iloc[0]
        raise FacebalanceError(
            f"verify: {int(missing.sum())} pairs name images without an embedding (first: "
            f"{first['id_a']} / {first['id_b']}); rerun embed")
    return (embeddings[pos.loc[pairs["id_a"]].to_numpy()],
            embeddings[pos.loc[pairs["id_b"]].to_numpy()])


def _split(pairs: pd.DataFrame, split: str) -> pd.DataFrame:
    part = pairs[pairs["split"] == split]
    same = part["same"].to_numpy()
    if not len(part) or same.all() or not same.any():
        raise FacebalanceError(
            f"verify: the {split} split has {int(same.sum())} genuine and "
            f"{int(len(same) - same.sum())} impostor pairs; it needs both (more identities "
            "with two images, or a pairs file with that split)")
    return part


def identity_bootstrap(rows: pd.DataFrame, pairs: pd.DataFrame, n_resamples: int,
                       seed: int) -> np.ndarray:
    """``(n_resamples, len(pairs))`` count weights of a bootstrap over identities.

    Pairs share faces and identities (an identity's genuine pairs, its impostor pairs), so
    resampling pairs as if they were independent makes intervals too narrow. Each resample
    draws identities with replacement and a pair weighs as often as the identity of its
    first face was drawn.
    """
    identity = rows.set_index("id")["identity"]
    cluster = pd.factorize(identity.reindex(pairs["id_a"]).to_numpy())[0]
    n = int(cluster.max()) + 1 if len(cluster) else 0
    return bootstrap_weights(n, n_resamples, seed)[:, cluster]


def score_pairs(head: PairHead, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Both verifiers' scores of the pairs ``(a[i], b[i])``."""
    return {"head": head.predict_proba(a, b).astype(np.float64), "cosine": cosine(a, b)}


def verify_pairs(rows: pd.DataFrame, embeddings: np.ndarray, pairs: pd.DataFrame,
                 group_columns: Sequence[str], cfg: VerifyConfig
                 ) -> tuple[PairHead, dict[str, float], dict[str, Any], pd.DataFrame]:
    """Fit the head on the train pairs, choose thresholds on val, measure on test.

    Parameters
    ----------
    rows
        One row per embedded image: ``id`` and the ``group_columns``.
    embeddings
        ``(len(rows), d)``, in the order of ``rows``.
    pairs
        ``id_a``, ``id_b``, ``same`` (0/1) and ``split``.
    group_columns
        Columns of ``rows`` whose per-group rates are reported.
    cfg
        Features, regularization, FARs and bootstrap.

    Returns
    -------
    head, thresholds, report, scored
        The fitted head, each verifier's threshold, the report (headline values with
        intervals, paired differences, per-group rates, ROC points) and the test pairs with
        both scores.
    """
    train, val, test = (_split(pairs, s) for s in ("train", "val", "test"))
    a, b = _lookup(rows, embeddings, train)
    head = fit_pair_head(a, b, train["same"].to_numpy(), c=cfg.c,
                         kinds=tuple(cfg.features), seed=cfg.seed)
    val_scores = score_pairs(head, *_lookup(rows, embeddings, val))
    thresholds = {v: best_threshold(val_scores[v], val["same"].to_numpy()) for v in VERIFIERS}
    test_scores = score_pairs(head, *_lookup(rows, embeddings, test))
    same = test["same"].to_numpy().astype(bool)
    weights = np.vstack([np.ones(len(test)), identity_bootstrap(rows, test, cfg.bootstrap,
                                                                cfg.seed)])
    values = {v: verifier_metrics(test_scores[v], same, thresholds[v], cfg.fars, weights)
              for v in VERIFIERS}
    groups = {col: pair_group(rows, test, col) for col in group_columns}
    report: dict[str, Any] = {"n_pairs": {s: int((pairs["split"] == s).sum())
                                          for s in ("train", "val", "test")},
                              "n_test_genuine": int(same.sum()),
                              "n_test_impostor": int((~same).sum()),
                              "thresholds": thresholds, "verifiers": {}}
    for v in VERIFIERS:
        metrics = dict(values[v])
        by_group: dict[str, Any] = {}
        for col, g in groups.items():
            names, rates = group_rates_weighted(test_scores[v], same, g, thresholds[v],
                                                weights)
            for rate in ("fmr", "fnmr"):
                metrics[f"{rate}_ratio_{col}"] = max_min_ratio(rates[rate])
            by_group[col] = {str(name): {rate: _stat(rates[rate][:, j])
                                         for rate in ("fmr", "fnmr")}
                             | {"n_genuine": int((same & (g == name)).sum()),
                                "n_impostor": int((~same & (g == name)).sum())}
                             for j, name in enumerate(names)}
        report["verifiers"][v] = {"metrics": {k: _stat(m) for k, m in metrics.items()},
                                  "by_group": by_group}
        values[v] = metrics
    ref = values["cosine"]
    report["paired"] = {"head - cosine": {k: _stat(values["head"][k] - ref[k])
                                          for k in values["head"]}}
    scored = test[["id_a", "id_b", "same"]].assign(
        group=groups[group_columns[0]] if group_columns else 0,
        **{f"score_{v}": test_scores[v] for v in VERIFIERS})
    return head, thresholds, report, scored.reset_index(drop=True)


def _stat(values: np.ndarray) -> dict[str, float]:
    """Row 0 is the full test set (the value), rows 1.. the bootstrap resamples."""
    s = summarize(values[1:])
    return {"value": float(values[0]), "ci95": {"lo": s["lo"], "hi": s["hi"]}}


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
        from facebalance.data.shards import atomic_directory, atomic_write_bytes
        from facebalance.models.pair_head import save_verifier
        from facebalance.runtime import write_csv, write_json

        points = roc_points(scored)
        with atomic_directory(self.model_dir) as tmp:
            save_verifier(tmp / "head.json", head, thresholds,
                          {"kind": "verification", "features": list(features)})
        write_table_atomic(scored, self.scores)
        write_json(self.report, report)
        write_json(self.metrics, headline(report))
        atomic_write_bytes(self.table, markdown_table(report).encode())
        write_csv(self.roc, points)
        atomic_write_bytes(self.figure, plot_roc(points, report))

    def write_skipped(self, reason: str) -> None:
        """Write every output of a verification that did not run, saying why."""
        from facebalance.data.shards import atomic_directory, atomic_write_bytes
        from facebalance.runtime import write_csv, write_json

        skipped = {"task": {"kind": "verification"}, "skipped": reason}
        with atomic_directory(self.model_dir) as tmp:
            write_json(tmp / "skipped.json", skipped)
        write_table_atomic(pd.DataFrame({"id_a": [], "id_b": [], "same": []}), self.scores)
        write_json(self.report, skipped)
        write_json(self.metrics, {"skipped": reason})
        atomic_write_bytes(self.table, f"verification skipped: {reason}\n".encode())
        write_csv(self.roc, pd.DataFrame({"verifier": [], "fmr": [], "tar": []}))
        atomic_write_bytes(self.figure, empty_png())
