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


def test_group_boundaries_recover_a_planted_target_direction_per_group(tmp_path) -> None:
    import json
    from types import SimpleNamespace

    from facebalance.latent.boundaries import (
        Boundary,
        fit_group_boundaries,
        read_group_boundaries,
    )

    rng = np.random.default_rng(0)
    d = 10
    z = rng.normal(size=(4000, d))
    groups = (z[:, 0] > 0).astype(int)  # protected: the first axis
    # The target is read off axis 1 in group 0 and off axis 2 in group 1.
    target = np.where(groups == 1, z[:, 2] > 0.2, z[:, 1] > -0.1).astype(int)
    params = SimpleNamespace(n_fit=3000, n_val=1000, method="logistic", c=10.0)
    protected = Boundary(np.eye(d)[0], 0.0)
    found, report = fit_group_boundaries(z, target, groups, params, protected, seed=0)
    w0, w1 = (np.asarray(f["w"]) for f in found)
    assert abs(w0[1]) > 0.95 and abs(w1[2]) > 0.95
    assert report["group0"]["accuracy_val"] > 0.95 and report["group1"]["accuracy_val"] > 0.95
    assert abs(report["cos_between"]) < 0.2
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"target_by_group": found}))
    t0, t1 = read_group_boundaries(path)
    np.testing.assert_allclose(t0.w, w0)
    np.testing.assert_allclose(t1.w, w1)
    path.write_text(json.dumps({}))
    with pytest.raises(FacebalanceError, match="has no domain-dependent target boundaries"):
        read_group_boundaries(path)


def test_fit_attribute_boundaries_on_planted_scores() -> None:
    from facebalance.config import BoundaryParams
    from facebalance.latent.boundaries import fit_attribute_boundaries

    rng = np.random.default_rng(0)
    z = rng.standard_normal((600, 6))
    scores = {"target": (z[:, 0] > 0).astype(float), "protected": (z[:, 1] > 0.2) * 0.9}
    params = BoundaryParams(n_fit=400, n_val=200, method="logistic", domain_dependent=True)
    result, report = fit_attribute_boundaries(z, scores, {"target": "blond",
                                                          "protected": "male"}, params, 0)
    assert report["target"]["accuracy_val"] > 0.95 and report["protected"]["accuracy_val"] > 0.95
    assert result["target"]["attribute"] == "blond" and len(result["target_by_group"]) == 2
    assert abs(report["cos_target_protected"]) < 0.3  # planted orthogonal normals
    with pytest.raises(FacebalanceError, match=r"boundaries: z.parquet has 600 latents, "
                       r"fewer than n_fit \+ n_val = 700"):
        fit_attribute_boundaries(z, scores, {"target": "a", "protected": "b"},
                                 BoundaryParams(n_fit=500, n_val=200), 0, source="z.parquet")
