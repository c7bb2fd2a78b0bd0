"""Training-time strategies: mixup / cutmix batches and validation-driven cell weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facebalance.balance.attention import cell_weights
from facebalance.balance.strategies import training_options
from facebalance.config import ClassifierParams
from facebalance.data.shards import shard_refs
from facebalance.models.fit import fit_classifier
from facebalance.models.train import draw_mix, mix_batch


def test_mixup_matches_a_per_element_loop() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 4, 4, generator=g)
    y, w = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0]), torch.tensor([1.0, 2.0, 1.0, 0.5, 1.0])
    perm = np.array([3, 0, 4, 1, 2])
    xm, ym, wm = mix_batch(x, y, w, 0.7, perm)
    for i in range(5):
        j = perm[i]
        assert torch.allclose(xm[i], 0.7 * x[i] + 0.3 * x[j])
        assert ym[i].item() == pytest.approx(0.7 * y[i].item() + 0.3 * y[j].item())
        assert wm[i].item() == pytest.approx(0.7 * w[i].item() + 0.3 * w[j].item())


def test_cutmix_pastes_the_box_and_mixes_labels_by_area() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    y, w = torch.tensor([1.0, 0.0]), torch.ones(2)
    xm, ym, _ = mix_batch(x, y, w, 0.9, np.array([1, 0]), box=(0, 2, 1, 4))
    assert torch.equal(xm[0, :, 0:2, 1:4], x[1, :, 0:2, 1:4])  # pasted from the partner
    assert torch.equal(xm[0, :, 2:, :], x[0, :, 2:, :]) and torch.equal(xm[0, :, :, 0],
                                                                        x[0, :, :, 0])
    kept = 1 - 6 / 16  # the box covers 2 x 3 of 16 pixels, whatever lam was drawn
    assert ym[0].item() == pytest.approx(kept) and ym[1].item() == pytest.approx(1 - kept)


def test_draw_mix_is_seeded_and_boxes_stay_inside() -> None:
    a = draw_mix(np.random.default_rng(3), "cutmix", 1.0, 8, 32, 32)
    b = draw_mix(np.random.default_rng(3), "cutmix", 1.0, 8, 32, 32)
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2] == b[2]
    rng = np.random.default_rng(0)
    for _ in range(200):
        lam, perm, (y0, y1, x0, x1) = draw_mix(rng, "cutmix", 1.0, 8, 32, 32)
        assert 0 <= y0 <= y1 <= 32 and 0 <= x0 <= x1 <= 32 and sorted(perm) == list(range(8))
        assert (y1 - y0) * (x1 - x0) <= round(32 * np.sqrt(1 - lam)) ** 2
    assert draw_mix(rng, "mixup", 0.4, 4, 8, 8)[2] is None


def test_cell_weights() -> None:
    w = cell_weights(np.array([0.9, 0.6, 0.95, 0.95]), max_weight=4.0)
    assert w[1] == w.max() and w[1] / w[0] == pytest.approx(4.0)  # error 0.4 vs 0.1
    assert np.all((w >= 0.25) & (w <= 4.0))
    assert np.allclose(cell_weights(np.array([0.8, 0.8]), 4.0), 1.0)
    assert np.allclose(cell_weights(np.array([1.0, 1.0]), 4.0), 1.0)
    assert cell_weights(np.array([0.5, 1.0, 1.0, 1.0]), 3.0).tolist() == [3.0, 1 / 3, 1 / 3,
                                                                         1 / 3]


def test_training_options() -> None:
    assert training_options("mixup", mixup_alpha=0.2) == {"mix": "mixup", "mix_alpha": 0.2}
    assert training_options("cutmix")["mix"] == "cutmix"
    assert training_options("val_attention", attention_max=3.0) == {"attention_max": 3.0}
    assert training_options("reweight") == {}


def _rows(tiny_prepared: Path, split: str) -> pd.DataFrame:
    rows = shard_refs(tiny_prepared / split, ["id", "blond", "male"])
    return rows.rename(columns={"blond": "label", "male": "group"}).assign(weight=1.0)


PARAMS = ClassifierParams(width=8, epochs=2, batch_size=64, lr=0.005)


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_fit_with_mixing_trains(tiny_prepared: Path, mix: str) -> None:
    rows = _rows(tiny_prepared, "train")
    _, _, plain = fit_classifier(rows, PARAMS, image_size=32, seed=0,
                                 device=torch.device("cpu"))
    _, _, mixed = fit_classifier(rows, PARAMS, image_size=32, seed=0,
                                 device=torch.device("cpu"), options=training_options(mix))
    assert all(np.isfinite(h["loss"]) for h in mixed)
    assert mixed[0]["loss"] != plain[0]["loss"]  # the batches really were mixed


def test_val_attention_weights_the_worst_cell_most(tiny_prepared: Path) -> None:
    rows = _rows(tiny_prepared, "train")
    val = _rows(tiny_prepared, "val")
    _, _, hist = fit_classifier(rows, PARAMS, image_size=32, seed=0,
                                device=torch.device("cpu"),
                                options=training_options("val_attention"), attention_val=val)
    assert "cell0_weight" not in hist[0]  # the first epoch has no validation result yet
    weights = np.array([hist[1][f"cell{c}_weight"] for c in range(4)])
    assert weights.mean() == pytest.approx(1.0, abs=0.35) and weights.max() > 1.0
    # cells 2, 3 = blond women, blond men (rare in training): the least accurate on val
    assert weights[3] == weights.max() and weights[2:].min() > weights[:2].max()


def test_unknown_mix_mode_is_refused(tiny_prepared: Path) -> None:
    from facebalance.errors import FacebalanceError

    rows = _rows(tiny_prepared, "train")
    with pytest.raises(FacebalanceError, match=r"mix = 'blend'; valid: none, mixup, cutmix"):
        fit_classifier(rows, PARAMS, image_size=32, seed=0, device=torch.device("cpu"),
                       options={"mix": "blend"})
