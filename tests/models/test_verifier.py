from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facebalance.data.face_pairs import (
    synth_pairs,
)
from facebalance.errors import FacebalanceError
from facebalance.metrics.verification import auc
from facebalance.models.pair_head import load_verifier, save_verifier
from facebalance.models.verifier import VerifyConfig, verify_pairs
from facebalance.models.verify_outputs import headline, markdown_table, roc_points


def _faces(n_ids: int = 240, per_id: int = 4, dim: int = 16, noise: float = 1.0,
           seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Images of identities with a planted embedding: identity centre + noise; group 1
    faces are noisier (a verifier should find more errors there)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    ident = np.repeat(np.arange(n_ids), per_id)
    group = ident % 2
    split = np.array(["train", "val", "test"])[(ident % 6) // 2]
    emb = centres[ident] + rng.normal(size=(len(ident), dim)) * (noise + 0.5 * group)[:, None]
    rows = pd.DataFrame({"id": [f"img{i}" for i in range(len(ident))],
                         "identity": [f"{split[i]}-{ident[i]}" for i in range(len(ident))],
                         "split": split, "skin": group, "male": ident % 3 == 0,
                         "head_fit": True})
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return rows, emb.astype(np.float32)


def test_verify_pairs_measures_both_verifiers_with_paired_intervals() -> None:
    rows, emb = _faces()
    rows["male"] = rows["male"].astype(int)
    pairs = synth_pairs(rows, ["skin"], 150, seed=0, cross_share=0.25)
    cfg = VerifyConfig(bootstrap=50, seed=1)
    _, _, report, scored = verify_pairs(rows, emb, pairs, ["skin", "male"], cfg)
    m = report["verifiers"]
    assert m["head"]["metrics"]["auc"]["value"] > 0.8 and m["cosine"]["metrics"]["auc"][
        "value"] > 0.8
    test = pairs[pairs["split"] == "test"].reset_index(drop=True)
    assert len(scored) == len(test)
    assert m["cosine"]["metrics"]["auc"]["value"] == pytest.approx(
        auc(scored["score_cosine"], scored["same"]))
    for v in ("head", "cosine"):
        for key, stat in m[v]["metrics"].items():
            lo, hi = stat["ci95"]["lo"], stat["ci95"]["hi"]
            assert lo <= hi, key
    diff = report["paired"]["head - cosine"]["auc"]["value"]
    assert diff == pytest.approx(m["head"]["metrics"]["auc"]["value"]
                                 - m["cosine"]["metrics"]["auc"]["value"])
    # The noisier group 1 is falsely non-matched more often at the one global threshold.
    g = m["cosine"]["by_group"]["skin"]
    assert g["1"]["fnmr"]["value"] > g["0"]["fnmr"]["value"]
    assert m["cosine"]["metrics"]["fnmr_ratio_skin"]["value"] == pytest.approx(
        g["1"]["fnmr"]["value"] / g["0"]["fnmr"]["value"])
    assert set(headline(report)) == {"head", "cosine"}
    assert "| auc |" in markdown_table(report)
    points = roc_points(scored)
    assert set(points["verifier"]) == {"head", "cosine"} and points["tar"].max() == 1.0


def test_thresholds_come_from_val_and_round_trip(tmp_path: Path) -> None:
    rows, emb = _faces(seed=2)
    pairs = synth_pairs(rows, ["skin"], 100, seed=0, cross_share=0.0)
    head, thresholds, _, _ = verify_pairs(rows, emb, pairs, ["skin"],
                                          VerifyConfig(bootstrap=10))
    save_verifier(tmp_path / "head.json", head, thresholds, {"kind": "verification"})
    head2, thr2 = load_verifier(tmp_path / "head.json")
    assert head2 == head and thr2 == thresholds
    # Moving the test pairs' scores leaves the thresholds: they depend on val only.
    shuffled = pairs.copy()
    test = shuffled["split"] == "test"
    shuffled.loc[test, "same"] = shuffled.loc[test, "same"].to_numpy()[::-1]
    _, thr3, _, _ = verify_pairs(rows, emb, shuffled, ["skin"], VerifyConfig(bootstrap=10))
    assert thr3 == thresholds


def test_train_pairs_use_only_held_out_identities() -> None:
    rows, _ = _faces()
    train_ids = rows.loc[rows["split"] == "train", "identity"].unique()
    rows["head_fit"] = ~rows["identity"].isin(train_ids[: len(train_ids) // 2])
    pairs = synth_pairs(rows, ["skin"], 50, seed=0, cross_share=0.0)
    used = set(pairs.loc[pairs["split"] == "train", ["id_a", "id_b"]].to_numpy().ravel())
    assert rows.set_index("id").loc[sorted(used), "head_fit"].all()


def test_the_identity_bootstrap_weighs_pairs_by_their_identity() -> None:
    from facebalance.models.verifier import identity_bootstrap

    rows = pd.DataFrame({"id": ["a1", "a2", "b1", "b2"], "identity": ["A", "A", "B", "B"]})
    pairs = pd.DataFrame({"id_a": ["a1", "a2", "b1"], "id_b": ["a2", "b1", "b2"]})
    w = identity_bootstrap(rows, pairs, 200, seed=0)
    assert w.shape == (200, 3)
    assert (w[:, 0] == w[:, 1]).all()  # both of A's pairs move together
    assert (w.sum(axis=1) > 0).all() and not (w[:, 0] == w[:, 2]).all()


def test_a_split_without_both_kinds_of_pairs_is_named() -> None:
    rows, emb = _faces()
    pairs = synth_pairs(rows, ["skin"], 20, seed=0, cross_share=0.0)
    pairs = pairs[~((pairs["split"] == "val") & (pairs["same"] == 0))]
    with pytest.raises(FacebalanceError,
                       match="the val split has 40 genuine and 0 impostor pairs; it needs"):
        verify_pairs(rows, emb, pairs, ["skin"], VerifyConfig(bootstrap=10))


