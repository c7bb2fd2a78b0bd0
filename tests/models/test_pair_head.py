from pathlib import Path

import numpy as np
import pytest

from facebalance.errors import FacebalanceError
from facebalance.metrics.verification import auc, cosine
from facebalance.models.pair_head import fit_pair_head, load_pair_head, save_pair_head


def _embeddings(n_ident: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of noisy views of random identity vectors (L2-normalized, with negatives)."""
    rng = np.random.default_rng(seed)
    ident = rng.normal(size=(n_ident, 16))
    i = rng.integers(0, n_ident, 800)
    same = rng.random(800) < 0.5
    j = np.where(same, i, (i + rng.integers(1, n_ident, 800)) % n_ident)
    a = ident[i] + 0.9 * rng.normal(size=(800, 16))
    b = ident[j] + 0.9 * rng.normal(size=(800, 16))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return a, b, same.astype(np.int8)


def test_head_beats_chance_matches_cosine_order_and_round_trips(tmp_path: Path) -> None:
    a, b, same = _embeddings(50, 0)
    ta, tb, tsame = _embeddings(50, 1)
    head = fit_pair_head(a, b, same)
    p = head.predict_proba(ta, tb)
    assert p.shape == (800,) and ((p >= 0) & (p <= 1)).all()
    assert auc(p, tsame) > 0.8
    assert auc(p, tsame) >= auc(cosine(ta, tb), tsame) - 0.03  # at least as good as cosine
    save_pair_head(tmp_path / "head.json", head)
    back = load_pair_head(tmp_path / "head.json")
    np.testing.assert_array_equal(back.predict_proba(ta, tb), p)
    with pytest.raises(FacebalanceError, match="expects 65 features, the embeddings give 33"):
        head.predict_proba(ta[:, :8], tb[:, :8])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(FacebalanceError, match=r"bad\.json is not a pair head JSON"):
        load_pair_head(tmp_path / "bad.json")
