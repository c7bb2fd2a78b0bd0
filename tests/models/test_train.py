from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facebalance.config import ClassifierParams
from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import shard_refs
from facebalance.device import resolve_device
from facebalance.errors import FacebalanceError
from facebalance.models.classifier import ClassifierConfig, build_classifier
from facebalance.models.fit import epoch_samples, fit_classifier, score_shards
from facebalance.models.train import (
    TrainConfig,
    augment_batch,
    memory_format,
    train_classifier,
)


def test_augment_shifts_match_a_reference_loop() -> None:
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x, gen, shift=1)
    # Replay the same random draws and build the result pixel by pixel.
    gen = torch.Generator().manual_seed(0)
    flip = torch.rand(2, generator=gen) < 0.5
    oy, ox = torch.randint(0, 3, (2, 2), generator=gen)
    for b in range(2):
        img = x[b, 0].flip(1) if flip[b] else x[b, 0]
        for i in range(5):
            for j in range(5):
                si = min(max(i + int(oy[b]) - 1, 0), 4)
                sj = min(max(j + int(ox[b]) - 1, 0), 4)
                assert out[b, 0, i, j] == img[si, sj]


def test_tiny_training_learns_the_protected_attribute(tiny_prepared: Path) -> None:
    refs = shard_refs(tiny_prepared / "train", ["id", "male"]).rename(columns={"male": "label"})
    refs["weight"] = np.float32(1.0)
    params = ClassifierParams(width=8, epochs=6, batch_size=32, lr=0.01)
    model, cfg, hist = fit_classifier(refs, params, image_size=32, seed=0,
                                      device=torch.device("cpu"))
    assert cfg.width == 8 and len(hist) == 6 and hist[-1]["loss"] < hist[0]["loss"]
    test, (scores,) = score_shards([model], tiny_prepared / "test", ["id", "male"],
                                   torch.device("cpu"))
    accuracy = ((scores >= 0.5) == test["male"].to_numpy()).mean()
    # 480 training images, 6 tiny epochs: chance is 0.5 (sd 0.04 on 160 test images).
    assert accuracy > 0.65


def test_training_is_reproducible(tiny_prepared: Path) -> None:
    refs = shard_refs(tiny_prepared / "train", ["id", "blond"]).rename(columns={"blond": "label"})
    refs["weight"] = np.float32(1.0)
    params = ClassifierParams(width=4, epochs=1, batch_size=64)
    a, _, _ = fit_classifier(refs, params, image_size=32, seed=5, device=torch.device("cpu"))
    b, _, _ = fit_classifier(refs, params, image_size=32, seed=5, device=torch.device("cpu"))
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(va, vb, msg=ka)


def test_divergence_is_reported(tiny_prepared: Path) -> None:
    refs = shard_refs(tiny_prepared / "val", ["id", "blond"])
    ds = ShardDataset(refs, {"label": refs["blond"].to_numpy(np.float32),
                             "weight": np.full(len(refs), np.nan, np.float32)})
    net = build_classifier(ClassifierConfig(width=4))
    with pytest.raises(FacebalanceError, match="training diverged: loss is nan in epoch 1"):
        train_classifier(net, ds, TrainConfig(epochs=1, batch_size=16), torch.device("cpu"))


def test_epoch_samples_counts_distinct_real_images() -> None:
    index = pd.DataFrame({"path": "p", "_file": 0, "_row": [0, 0, 1, 2, 3],
                          "source": ["real"] * 4 + ["generated"]})
    assert epoch_samples(index, "real") == 3
    assert epoch_samples(index, "index") == 5


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_a_device_the_machine_lacks_is_one_line_naming_the_key() -> None:
    with pytest.raises(FacebalanceError, match=r"params: base\.device = 'mps' but MPS \(Apple "
                       r"GPU\) is not available here; use auto or cpu"):
        resolve_device("mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line() -> None:
    with pytest.raises(FacebalanceError, match=r"base\.device = 'cuda:1' but CUDA is not"):
        resolve_device("cuda:1")


def test_narrow_convolutions_train_in_nchw() -> None:
    """oneDNN crashes training 4-channel convs in channels_last on AVX2 CPUs (torch 2.14.1)."""
    assert memory_format(build_classifier(ClassifierConfig(width=4))) == torch.contiguous_format
    assert memory_format(build_classifier(ClassifierConfig(width=8))) == torch.contiguous_format
    assert memory_format(build_classifier(ClassifierConfig(width=16))) == torch.channels_last
