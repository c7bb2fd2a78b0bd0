"""The guide stage's quotas, and the flip/keep rule shared by both complement stages."""

from __future__ import annotations

import numpy as np
import pytest

from facebalance.latent.complement import flip_and_keep
from facebalance.latent.guided import group_quotas


@pytest.mark.parametrize(("to", "size", "quotas"), [
    ("max", 50, {1: 40, 2: 45}),
    ("mean", 22, {1: 12, 2: 17}),  # ceil(65 / 3)
])
def test_group_quotas_fill_small_groups(to: str, size: int, quotas: dict) -> None:
    assert group_quotas(np.array([50, 10, 5]), to) == (size, quotas)


def test_flip_and_keep_matches_a_loop() -> None:
    rng = np.random.default_rng(0)
    label, group = rng.integers(0, 2, 300), rng.integers(0, 2, 300).astype(np.int8)
    t, g = rng.random(300).astype(np.float32), rng.random(300)
    flipped, kept = flip_and_keep(label, group, t, g)
    for i in range(300):
        assert flipped[i] == (int(g[i] >= 0.5) != group[i])
        assert kept[i] == (int(t[i] >= 0.5) == label[i])
    # Boolean sources (sampled pairs: G(z)'s own thresholded scores) give the same.
    f2, k2 = flip_and_keep(label.astype(bool), group.astype(bool), t, g)
    assert (f2 == flipped).all() and (k2 == kept).all()
