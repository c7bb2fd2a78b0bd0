"""Face-pair verification from embeddings: the pair head against the cosine baseline.

Two verifiers score every pair of embeddings ``(a, b)``:

- ``head``: logistic regression on the pair features (chi-square, ``|a - b|``, ``a * b``,
  cosine; :mod:`facebalance.models.pair_head`) fitted on the train pairs;
- ``cosine``: the cosine similarity itself, the baseline the head must beat.

Each verifier's threshold is the one with the best accuracy on the val pairs; it is then
applied unchanged to the test pairs, where every metric is measured: AUC, accuracy, F1,
EER, TAR at the ``verify.fars``, and per group FMR / FNMR at that one global threshold
(NIST FRVT) with their max / min ratio. Intervals come from one seeded bootstrap over the
test identities (:func:`identity_bootstrap`), shared by both verifiers, so
``head - cosine`` is a paired difference. Which pairs: :mod:`facebalance.data.face_pairs`;
the stage's files: :mod:`facebalance.models.verify_outputs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from facebalance.data.face_pairs import pair_group
from facebalance.errors import FacebalanceError
from facebalance.metrics.bootstrap import bootstrap_weights, summarize
from facebalance.metrics.verification import (
    best_threshold,
    cosine,
    group_rates_weighted,
    max_min_ratio,
    verifier_metrics,
)
from facebalance.models.pair_head import PairHead, fit_pair_head

VERIFIERS = ("head", "cosine")


@dataclass(frozen=True)
class VerifyConfig:
    """What :func:`verify_pairs` needs from the ``verify`` params."""

    features: tuple[str, ...] = ("chi2", "absdiff", "product", "cosine")
    c: float = 1.0
    fars: tuple[float, ...] = (0.01, 0.001)
    bootstrap: int = 500
    seed: int = 0


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


