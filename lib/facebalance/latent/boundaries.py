"""Linear attribute boundaries in a GAN's latent space.

A boundary is a unit normal ``w`` and offset ``b``: ``w . z + b`` is the signed distance of
latent ``z`` to the hyperplane, positive on the attribute's side (Ramaswamy et al. fit a
linear SVM on latents labelled by attribute classifiers, then normalize).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facebalance.choices import BOUNDARY_METHODS
from facebalance.errors import FacebalanceError

if TYPE_CHECKING:
    from facebalance.config import BoundaryParams

METHODS = BOUNDARY_METHODS


@dataclass(frozen=True)
class Boundary:
    """A normalized hyperplane ``w . z + b = 0`` (``|w| = 1``)."""

    w: np.ndarray
    b: float

    def distance(self, z: np.ndarray) -> np.ndarray:
        """Signed distances of latents ``(n, d)`` to the hyperplane."""
        return np.asarray(z, dtype=np.float64) @ self.w + self.b

    def predict(self, z: np.ndarray) -> np.ndarray:
        """1 on the positive side, else 0."""
        return (self.distance(z) > 0).astype(np.int8)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"w": [float(v) for v in self.w], "b": float(self.b)}

    @classmethod
    def from_dict(cls, d: dict) -> Boundary:
        """Inverse of :meth:`to_dict`; checks that ``w`` is a unit vector."""
        w = np.asarray(d["w"], dtype=np.float64)
        if not np.isclose(np.linalg.norm(w), 1.0, atol=1e-6):
            raise FacebalanceError("boundary normal w must have unit norm")
        return cls(w=w, b=float(d["b"]))


def read_boundaries(path: str | Path) -> tuple[Boundary, Boundary]:
    """The ``target`` and ``protected`` boundaries of a ``boundaries`` stage file.

    Raises
    ------
    FacebalanceError
        Naming the file when it is missing, not JSON, or lacks a boundary.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return tuple(Boundary.from_dict(data[k]) for k in ("target", "protected"))
    except FileNotFoundError:
        raise FacebalanceError(f"{path} does not exist; run the boundaries stage") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise FacebalanceError(
            f"{path} is not a boundaries file ({type(err).__name__}: {err}); rebuild it with "
            "`dvc repro -f -s boundaries`") from None


def read_group_boundaries(path: str | Path) -> tuple[Boundary, Boundary]:
    """The domain-dependent target boundaries ``(t_0, t_1)`` of a boundaries file.

    Raises
    ------
    FacebalanceError
        Naming the file when it has none (fitted without ``boundaries.domain_dependent``)
        or they are malformed.
    """
    data = json.loads(Path(path).read_text())
    if "target_by_group" not in data:
        raise FacebalanceError(
            f"{path} has no domain-dependent target boundaries; rerun the boundaries stage "
            "with boundaries.domain_dependent: true (dvc repro)")
    try:
        return tuple(Boundary.from_dict(d) for d in data["target_by_group"])
    except (KeyError, TypeError, ValueError) as err:
        raise FacebalanceError(f"{path}: bad target_by_group ({err})") from None


def fit_boundary(z: np.ndarray, labels: np.ndarray, method: str = "svm", c: float = 1.0,
                 seed: int = 0) -> Boundary:
    """Fit a linear boundary separating latents by a binary label, then normalize it.

    Parameters
    ----------
    z
        Latents ``(n, d)``.
    labels
        0/1 labels (e.g. an attribute classifier's predictions on ``G(z)``).
    method
        ``svm`` (LinearSVC, as the paper) or ``logistic``.
    c
        Inverse regularization strength.
    seed
        Solver seed.

    Returns
    -------
    Boundary
        ``w`` scaled to unit norm and ``b`` divided by the same factor.
    """
    # scikit-learn is imported here, not at module level: every stage imports this module
    # (through the params schema) and most never fit a boundary.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        raise FacebalanceError(
            "boundaries: the labels of the fitting latents have one class only; sample more "
            "latents (sample.n) or check the attribute classifier")
    if method == "svm":
        model = LinearSVC(C=c, dual="auto", max_iter=20000, random_state=seed)
    elif method == "logistic":
        model = LogisticRegression(C=c, max_iter=2000)
    else:
        raise FacebalanceError(f"unknown boundary method {method!r}; valid: {', '.join(METHODS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(np.asarray(z, dtype=np.float64), labels)
    w, b = model.coef_.ravel().astype(np.float64), float(model.intercept_[0])
    norm = np.linalg.norm(w)
    if norm == 0:
        raise FacebalanceError("boundaries: the fitted normal is zero; labels are not separable")
    return Boundary(w=w / norm, b=b / norm)


def boundary_accuracy(boundary: Boundary, z: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of latents on the side their label says."""
    return float(np.mean(boundary.predict(z) == np.asarray(labels).astype(np.int8)))


def fit_group_boundaries(z: np.ndarray, target: np.ndarray, groups: np.ndarray,
                         params: BoundaryParams, protected: Boundary, seed: int
                         ) -> tuple[list[dict[str, object]], dict[str, object]]:
    """Domain-dependent target boundaries: one fitted on the latents of each protected
    group (``params``: ``n_fit``, ``n_val``, ``method``, ``c`` of the ``boundaries``
    section), with their held-out accuracy within the group.

    Returns
    -------
    boundaries, report
        ``[t_0, t_1]`` as dicts, and per group the fitting size, positive rate, accuracy
        and the cosines with the protected normal and between the two.
    """
    fit = slice(0, params.n_fit)
    val = slice(params.n_fit, params.n_fit + params.n_val)
    found, report = [], {}
    for g in (0, 1):
        rows = np.flatnonzero(groups[fit] == g)
        vrows = params.n_fit + np.flatnonzero(groups[val] == g)
        try:
            bnd = fit_boundary(z[rows], target[rows], params.method, params.c, seed)
        except FacebalanceError as err:
            raise FacebalanceError(
                f"boundaries.domain_dependent: the target boundary of protected group {g} "
                f"({len(rows)} fitting latents): {err}") from None
        found.append(bnd)
        report[f"group{g}"] = {
            "n_fit": len(rows), "positive_rate": float(target[rows].mean()),
            "accuracy_fit": boundary_accuracy(bnd, z[rows], target[rows]),
            "accuracy_val": (boundary_accuracy(bnd, z[vrows], target[vrows])
                             if len(vrows) else None),
            "cos_protected": float(bnd.w @ protected.w)}
    report["cos_between"] = float(found[0].w @ found[1].w)
    return [bnd.to_dict() for bnd in found], report


def fit_attribute_boundaries(z: np.ndarray, scores: Mapping[str, np.ndarray],
                             attributes: Mapping[str, str], params: BoundaryParams,
                             seed: int, source: str = "the latents"
                             ) -> tuple[dict[str, object], dict[str, object]]:
    """The ``boundaries`` stage: target and protected hyperplanes (and, with
    ``domain_dependent``, one target hyperplane per protected group) fitted on the first
    ``n_fit`` scored latents, checked on the next ``n_val``.

    Parameters
    ----------
    z
        Sampled latents, in order.
    scores
        ``{"target": ..., "protected": ...}``: the attribute classifiers' scores of their
        images, row for row (labels are the scores thresholded at 0.5).
    attributes
        ``{"target": column, "protected": column}``, recorded with the boundaries.
    params
        The ``boundaries`` params.
    seed
        Seed of the fits.
    source
        Where the latents come from, for the error when there are too few.

    Returns
    -------
    boundaries, report
        The boundaries JSON (``target``, ``protected``, ``target_by_group``) and the
        metrics JSON (positive rates, fit and held-out accuracy, the normals' cosine).
    """
    b = params
    if len(z) < b.n_fit + b.n_val:
        raise FacebalanceError(f"boundaries: {source} has {len(z)} latents, fewer than "
                               f"n_fit + n_val = {b.n_fit + b.n_val}")
    result: dict[str, object] = {}
    report: dict[str, object] = {"method": b.method, "n_fit": b.n_fit, "n_val": b.n_val}
    labels = {role: (np.asarray(scores[role]) >= 0.5).astype(int)
              for role in ("target", "protected")}
    fit, val = slice(0, b.n_fit), slice(b.n_fit, b.n_fit + b.n_val)
    for role, y in labels.items():
        boundary = fit_boundary(z[fit], y[fit], b.method, b.c, seed)
        result[role] = {**boundary.to_dict(), "attribute": attributes[role]}
        report[role] = {
            "attribute": attributes[role],
            "positive_rate": float(y[fit].mean()),
            "accuracy_fit": boundary_accuracy(boundary, z[fit], y[fit]),
            "accuracy_val": boundary_accuracy(boundary, z[val], y[val]) if b.n_val else None,
        }
    bt, bg = (Boundary.from_dict(result[r]) for r in ("target", "protected"))
    report["cos_target_protected"] = float(bt.w @ bg.w)
    if b.domain_dependent:  # one target boundary per protected group (by its classifier)
        result["target_by_group"], report["target_by_group"] = fit_group_boundaries(
            z, labels["target"], labels["protected"], b, bg, seed)
    return result, report
