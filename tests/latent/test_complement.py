import numpy as np
import pytest

from facebalance.errors import FacebalanceError
from facebalance.latent.boundaries import Boundary
from facebalance.latent.complement import complement_latents, draw_latents


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _boundaries(d: int = 12, seed: int = 0, cos: float = 0.4):
    rng = np.random.default_rng(seed)
    wt = _unit(rng.normal(size=d))
    other = _unit(rng.normal(size=d) - (rng.normal(size=d) @ wt) * wt)
    other = _unit(other - (other @ wt) * wt)
    wg = cos * wt + np.sqrt(1 - cos**2) * other
    return Boundary(wt, 0.3), Boundary(_unit(wg), -0.2)


def reference_loop(z, target, protected, mode, shell="none", max_step=4.0):
    """The formula written row by row, as in the paper."""
    out = np.empty_like(z, dtype=np.float64)
    wt, wg, bg = target.w, protected.w, protected.b
    cos = float(np.dot(wg, wt))
    sin = np.sqrt(1 - cos**2)
    perp = wg - cos * wt
    perp = perp / np.sqrt(sum(v * v for v in perp))
    for i in range(len(z)):
        dist = sum(wg[k] * z[i, k] for k in range(len(wg))) + bg
        if mode == "paper":
            step, direction = 2 * dist / sin, perp
        elif mode == "on_hyperplane":
            step, direction = dist / sin, perp
        else:
            step, direction = 2 * dist, wg
        if shell == "cap":
            step = max(-max_step, min(max_step, step))
        row = [z[i, k] - step * direction[k] for k in range(len(wg))]
        if shell == "rescale":
            scale = np.sqrt(sum(v * v for v in z[i])) / np.sqrt(sum(v * v for v in row))
            row = [v * scale for v in row]
        out[i] = row
    return out


@pytest.mark.parametrize("mode", ["paper", "perp", "on_hyperplane"])
@pytest.mark.parametrize("shell", ["none", "rescale", "cap"])
def test_vectorized_equals_reference_loop(mode: str, shell: str) -> None:
    target, protected = _boundaries()
    z = np.random.default_rng(1).standard_normal((50, 12)).astype(np.float32)
    got = complement_latents(z, target, protected, mode, shell, max_step=1.5)
    assert got.dtype == np.float32 and got.shape == z.shape
    np.testing.assert_allclose(got, reference_loop(z, target, protected, mode, shell, 1.5),
                               rtol=1e-5, atol=1e-5)


def test_paper_mode_mirrors_protected_and_keeps_target() -> None:
    target, protected = _boundaries(seed=2, cos=0.6)
    z = np.random.default_rng(3).standard_normal((500, 12))
    zp = complement_latents(z, target, protected)
    np.testing.assert_allclose(protected.distance(zp), -protected.distance(z), atol=1e-9)
    np.testing.assert_allclose(target.distance(zp), target.distance(z), atol=1e-9)
    flips = protected.predict(z) != protected.predict(zp)
    assert flips.mean() == pytest.approx(1.0, abs=0.01)  # all but points on the plane


def test_ablations_behave_as_described() -> None:
    target, protected = _boundaries(seed=4, cos=0.5)
    z = np.random.default_rng(5).standard_normal((200, 12))
    on = complement_latents(z, target, protected, "on_hyperplane")
    np.testing.assert_allclose(protected.distance(on), 0.0, atol=1e-9)
    perp = complement_latents(z, target, protected, "perp")
    np.testing.assert_allclose(protected.distance(perp), -protected.distance(z), atol=1e-9)
    assert not np.allclose(target.distance(perp), target.distance(z))  # target moves
    res = complement_latents(z, target, protected, shell="rescale")
    np.testing.assert_allclose(np.linalg.norm(res, axis=1), np.linalg.norm(z, axis=1))
    cap = complement_latents(z, target, protected, shell="cap", max_step=0.5)
    assert np.linalg.norm(cap - z, axis=1).max() <= 0.5 + 1e-9


def test_parallel_boundaries_and_bad_options() -> None:
    w = np.eye(4)[0]
    with pytest.raises(FacebalanceError, match="boundaries are parallel"):
        complement_latents(np.zeros((2, 4)), Boundary(w, 0.0), Boundary(w, 0.1))
    t, g = _boundaries(d=4)
    with pytest.raises(FacebalanceError, match="unknown mode 'mirror'"):
        complement_latents(np.zeros((2, 4)), t, g, mode="mirror")
    with pytest.raises(FacebalanceError, match="unknown shell 'sphere'"):
        complement_latents(np.zeros((2, 4)), t, g, shell="sphere")


def test_targeted_latents_fall_in_the_asked_cell() -> None:
    target, protected = _boundaries(seed=6)
    z = draw_latents(300, 12, target, protected, seed=0, cell=(1, 0), chunk=1000)
    assert z.shape == (300, 12) and z.dtype == np.float32
    assert (target.predict(z) == 1).all() and (protected.predict(z) == 0).all()
    far = draw_latents(200, 12, target, protected, seed=1, min_distance=1.2, chunk=1000)
    assert np.abs(protected.distance(far)).min() >= 1.2
    with pytest.raises(FacebalanceError, match="only 0 of 5 latents"):
        nowhere = Boundary(target.w, -100.0)  # nothing is on its positive side
        draw_latents(5, 12, nowhere, protected, seed=0, cell=(1, 0), chunk=100, max_draws=300)


def _group_targets(d: int, seed: int) -> tuple[Boundary, Boundary]:
    rng = np.random.default_rng(seed)
    return (Boundary(_unit(rng.normal(size=d)), 0.1), Boundary(_unit(rng.normal(size=d)), -0.4))


@pytest.mark.parametrize("mode", ["paper", "on_hyperplane"])
def test_domain_dependent_is_the_closest_point_meeting_both_constraints(mode: str) -> None:
    """Against a loop: for each latent, the minimum-norm step (lstsq) that mirrors (or
    zeroes) the protected score and gives the other group's target boundary the score of
    its own group's."""
    target, protected = _boundaries(6, 0)
    t0, t1 = _group_targets(6, 1)
    z = np.random.default_rng(2).normal(size=(40, 6))
    out = complement_latents(z, target, protected, mode, target_by_group=(t0, t1))
    for i in range(len(z)):
        d = protected.distance(z[i:i + 1])[0]
        own, other = (t1, t0) if d > 0 else (t0, t1)
        a = np.stack([protected.w, other.w])  # rows: the two constraint normals
        want = np.array([-d if mode == "paper" else 0.0, own.distance(z[i:i + 1])[0]])
        have = np.array([d, other.distance(z[i:i + 1])[0]])
        step = np.linalg.lstsq(a, want - have, rcond=None)[0]  # minimum-norm solution
        np.testing.assert_allclose(out[i], z[i] + step, atol=1e-9)
        assert protected.distance(out[i:i + 1])[0] == pytest.approx(want[0], abs=1e-9)
        assert other.distance(out[i:i + 1])[0] == pytest.approx(want[1], abs=1e-9)


def test_domain_dependent_with_one_shared_target_is_the_paper_formula() -> None:
    target, protected = _boundaries(8, 3)
    z = np.random.default_rng(4).normal(size=(30, 8))
    np.testing.assert_allclose(
        complement_latents(z, target, protected, target_by_group=(target, target)),
        complement_latents(z, target, protected), atol=1e-9)
    capped = complement_latents(z, target, protected, shell="cap", max_step=0.5,
                                target_by_group=(target, target))
    assert np.linalg.norm(capped - z, axis=1).max() <= 0.5 + 1e-9
    with pytest.raises(FacebalanceError, match="target boundary of group 1 are parallel"):
        complement_latents(z, target, protected,
                           target_by_group=(target, Boundary(protected.w, 0.0)))


def test_keep_rate_and_targeted_draws_read_the_group_boundaries() -> None:
    from facebalance.latent.pairs import latent_keep_rate

    target, protected = _boundaries(6, 5)
    t0, t1 = _group_targets(6, 6)
    z = np.random.default_rng(7).normal(size=(500, 6))
    for mode in ("paper", "on_hyperplane"):  # z' on the hyperplane: its own side is moot
        zp = complement_latents(z, target, protected, mode, target_by_group=(t0, t1))
        assert latent_keep_rate(z, zp, target, protected, (t0, t1)) == 1.0
    drawn = draw_latents(50, 6, target, protected, seed=0, cell=(1, 0), chunk=1000,
                         target_by_group=(t0, t1), to_latent=lambda d: d * 1.5)
    assert (protected.predict(drawn) == 0).all() and (t0.predict(drawn) == 1).all()
    assert np.abs(drawn).max() > 3  # the draws went through to_latent
