import numpy as np
import pytest
import torch

from facebalance.errors import FacebalanceError
from facebalance.latent.directions import (
    group_directions,
    guide_to_quotas,
    image_groups,
    walk_to_group,
)
from facebalance.models.gan import GanConfig


class ToyGenerator(torch.nn.Module):
    """Flat colour images whose channel c is tanh(z . a_c): groups linear in z."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = GanConfig(latent_dim=8)
        self.a = torch.nn.Linear(8, 3, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.a(z))[:, :, None, None].expand(-1, 3, 32, 32)


class ChannelGroups(torch.nn.Module):
    """A group classifier whose group is the image's brightest colour channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 100 * (x.mean(dim=(2, 3)) - x.mean(dim=(1, 2, 3))[:, None])


def _planted(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latents whose group is the argmax of planted linear logits (unit rows, centred)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, d))
    w -= w.mean(axis=0)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    z = rng.standard_normal((n, d)).astype(np.float32)
    return z, (z @ (3 * w).T).argmax(axis=1), w


@pytest.mark.parametrize("k", [2, 4])
def test_directions_recover_planted_ones(k: int) -> None:
    z, groups, planted = _planted(6000, 16, k, seed=k)
    directions, acc = group_directions(z, groups, k)
    assert directions.shape == (k, 16)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1, rtol=1e-5)
    cos = np.sum(directions * planted, axis=1)
    assert cos.min() > 0.95, cos
    assert acc > 0.95
    if k == 2:
        np.testing.assert_allclose(directions[0], -directions[1], rtol=1e-5)


def test_a_group_the_generator_never_makes_has_no_direction() -> None:
    z, groups, _ = _planted(3000, 4, 3, seed=0)
    groups[groups == 2] = 0
    directions, _ = group_directions(z, groups, 3)
    assert np.isnan(directions[2]).all() and np.isfinite(directions[:2]).all()
    with pytest.raises(FacebalanceError, match=r"group 2 needs 5 images but the group "
                                               r"classifier gives it to no generated image"):
        guide_to_quotas(directions, {2: 5}, lambda zz: torch.zeros(len(zz)), step=0.5,
                        max_steps=2, batch_size=8, seed=0, device=torch.device("cpu"))
    with pytest.raises(FacebalanceError, match=r"gives every generated image group \[0\]"):
        group_directions(z, np.zeros(len(z), np.int64), 3)


def test_walk_reaches_the_group_against_a_loop() -> None:
    z, _, planted = _planted(300, 8, 3, seed=1)
    w = torch.from_numpy(3 * planted).float()

    def classify(zz: torch.Tensor) -> torch.Tensor:
        return (zz @ w.T).argmax(1)

    direction = torch.from_numpy(planted[2]).float()
    out, steps, hit = walk_to_group(torch.from_numpy(z), direction, 2, classify, step=0.5,
                                    max_steps=4)
    for i in range(len(z)):  # the reference: one latent, one step at a time
        zi = torch.from_numpy(z[i:i + 1]).clone()
        for t in range(5):
            if classify(zi)[0] == 2:
                assert hit[i] and steps[i] == t
                torch.testing.assert_close(out[i], zi[0])
                break
            if t < 4:
                zi += 0.5 * direction
        else:
            assert not hit[i] and steps[i] == 4
    assert 0.3 < hit.float().mean() < 1  # some start there, some walk there, some do not
    with pytest.raises(FacebalanceError, match="step must be > 0"):
        walk_to_group(torch.zeros(1, 8), direction, 0, classify, step=0, max_steps=1)


def test_guided_generation_fills_quotas_with_images_the_classifier_agrees_on() -> None:
    torch.manual_seed(0)
    gen = ToyGenerator().eval()
    classify = image_groups(gen, ChannelGroups(), batch_size=64)
    z_fit = torch.randn(600, 8)
    groups = classify(z_fit).numpy()
    assert set(groups) == {0, 1, 2}
    directions, _ = group_directions(z_fit.numpy(), groups, 3)
    z, grp, steps, report = guide_to_quotas(directions, {1: 20, 2: 15}, classify, step=0.5,
                                            max_steps=10, batch_size=32, seed=0,
                                            device=torch.device("cpu"))
    for g, need in ((1, 20), (2, 15)):
        assert report[g]["needed"] == need and report[g]["made"] == (grp == g).sum()
        assert 0 < report[g]["hit_rate"] <= 1
    assert (classify(torch.from_numpy(z)).numpy() == grp).all()
    assert (steps >= 0).all() and (steps <= 10).all()


def test_guided_walks_start_from_mapped_prior_draws() -> None:
    """With a mapping network the fresh latents are w = mapping(z) (no autograd history:
    the walk must give numpy latents)."""
    import torch

    from facebalance.latent.directions import guide_to_quotas
    from facebalance.models.gan import GanConfig, Generator, WSpaceGenerator, prior_latents

    torch.manual_seed(0)
    view = WSpaceGenerator(Generator(GanConfig(latent_dim=4, width=8, mapping_layers=2)))
    directions = np.eye(2, 4)

    def classify(w: torch.Tensor) -> torch.Tensor:
        return (w[:, 1] > w[:, 0]).long()

    z, groups, _, report = guide_to_quotas(
        directions, {0: 5, 1: 5}, classify, step=0.5, max_steps=8, batch_size=16, seed=0,
        device=torch.device("cpu"), to_latent=lambda d: prior_latents(view, d))
    assert z.shape == (10, 4) and sorted(groups.tolist()) == [0] * 5 + [1] * 5
    assert report[0]["made"] == 5 and report[1]["made"] == 5
