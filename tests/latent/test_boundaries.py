import numpy as np
import pytest

from facebalance.errors import FacebalanceError
from facebalance.latent.boundaries import Boundary, boundary_accuracy, fit_boundary


def _planted(n: int = 3000, d: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)
    b = 0.4
    z = rng.standard_normal((n, d))
    return z, (z @ w + b > 0).astype(int), w, b


@pytest.mark.parametrize("method", ["svm", "logistic"])
def test_fit_recovers_a_planted_hyperplane(method: str) -> None:
    z, y, w, b = _planted()
    bd = fit_boundary(z[:2000], y[:2000], method=method, c=10.0)
    assert np.linalg.norm(bd.w) == pytest.approx(1.0)
    assert bd.w @ w > 0.98
    assert bd.b == pytest.approx(b, abs=0.1)
    assert boundary_accuracy(bd, z[2000:], y[2000:]) > 0.97


def test_distance_sign_and_round_trip() -> None:
    bd = Boundary(w=np.array([0.6, 0.8]), b=-1.0)
    z = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(bd.distance(z), [4.0, -1.0])
    assert bd.predict(z).tolist() == [1, 0]
    again = Boundary.from_dict(bd.to_dict())
    np.testing.assert_allclose(again.w, bd.w)
    with pytest.raises(FacebalanceError, match="unit norm"):
        Boundary.from_dict({"w": [1.0, 1.0], "b": 0.0})


def test_one_class_labels_are_reported() -> None:
    with pytest.raises(FacebalanceError, match="one class only"):
        fit_boundary(np.zeros((10, 3)), np.ones(10))
    with pytest.raises(FacebalanceError, match="unknown boundary method 'tree'"):
        fit_boundary(np.eye(4), np.array([0, 1, 0, 1]), method="tree")
