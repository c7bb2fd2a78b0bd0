"""The verification head: logistic regression on standardized pair features.

Stored as JSON (means, scales, weights, bias, the feature kinds), never pickled, so a head
shared through a DVC remote loads without running code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from facebalance.data.shards import atomic_write_bytes
from facebalance.errors import FacebalanceError
from facebalance.metrics.verification import PAIR_FEATURES, pair_features


@dataclass(frozen=True)
class PairHead:
    """``P(same) = sigmoid(w . (f - mean) / scale + b)`` on :func:`pair_features` ``f``."""

    kinds: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def predict_proba(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Same-person probability of each embedding pair ``(a[i], b[i])``."""
        f = pair_features(a, b, self.kinds).astype(np.float64)
        if f.shape[1] != len(self.weights):
            raise FacebalanceError(
                f"pair head expects {len(self.weights)} features, the embeddings give "
                f"{f.shape[1]} (another embedding size?)")
        z = ((f - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.weights)
        return (1.0 / (1.0 + np.exp(-(z + self.bias)))).astype(np.float32)


def fit_pair_head(a: np.ndarray, b: np.ndarray, same: np.ndarray, *, c: float = 1.0,
                  kinds: tuple[str, ...] = PAIR_FEATURES, seed: int = 0) -> PairHead:
    """Fit the head on training pairs (embeddings ``a``, ``b``; ``same`` 0/1)."""
    f = pair_features(a, b, kinds).astype(np.float64)
    mean, scale = f.mean(axis=0), f.std(axis=0)
    scale[scale < 1e-12] = 1.0
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    model.fit((f - mean) / scale, np.asarray(same).astype(int))
    return PairHead(tuple(kinds), tuple(mean.tolist()), tuple(scale.tolist()),
                    tuple(model.coef_[0].tolist()), float(model.intercept_[0]))


def save_pair_head(path: str | Path, head: PairHead) -> None:
    """Write the head as JSON, atomically."""
    atomic_write_bytes(path, json.dumps(asdict(head)).encode())


def load_pair_head(path: str | Path) -> PairHead:
    """Read a head written by :func:`save_pair_head`; errors name the file."""
    try:
        data = json.loads(Path(path).read_text())
        return PairHead(kinds=tuple(data["kinds"]), mean=tuple(data["mean"]),
                        scale=tuple(data["scale"]), weights=tuple(data["weights"]),
                        bias=float(data["bias"]))
    except FileNotFoundError:
        raise FacebalanceError(f"pair head {path} does not exist") from None
    except (ValueError, KeyError, TypeError) as err:
        raise FacebalanceError(f"{path} is not a pair head JSON ({err})") from None


def save_verifier(path: str | Path, head: PairHead, thresholds: dict[str, float],
                  task: dict) -> None:
    """The head, each verifier's decision threshold (chosen on val) and the task, as JSON."""
    atomic_write_bytes(path, json.dumps({**asdict(head), "thresholds": thresholds,
                                         "task": task}, indent=1).encode())


def load_verifier(path: str | Path) -> tuple[PairHead, dict[str, float]]:
    """The head and thresholds written by :func:`save_verifier`; errors name the file."""
    head = load_pair_head(path)
    try:
        data = json.loads(Path(path).read_text())
        thresholds = {str(k): float(v) for k, v in data["thresholds"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise FacebalanceError(f"{path} has no verification thresholds ({err})") from None
    return head, thresholds
