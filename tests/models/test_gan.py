from pathlib import Path

import numpy as np
import pytest
import torch

from facebalance.data.datasets import ShardDataset, shard_refs
from facebalance.errors import FacebalanceError
from facebalance.models.gan import (
    Discriminator,
    GanConfig,
    GanTrainConfig,
    Generator,
    generate_uint8,
    load_generator,
    save_generator,
    train_gan,
)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes(size: int) -> None:
    cfg = GanConfig(image_size=size, latent_dim=16, width=8)
    gen, disc = Generator(cfg).eval(), Discriminator(cfg).eval()
    with torch.no_grad():
        x = gen(torch.randn(2, 16))
        assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
        assert disc(x).shape == (2,)


def test_tiny_gan_trains_and_round_trips(tiny_prepared: Path, tmp_path: Path) -> None:
    ds = ShardDataset(shard_refs(tiny_prepared / "train", ["id"]), {})
    cfg = GanConfig(latent_dim=16, width=8)
    gen, hist = train_gan(ds, cfg, GanTrainConfig(steps=12, batch_size=16, log_every=4),
                          torch.device("cpu"))
    assert [h["step"] for h in hist] == [4, 8, 12]
    assert all(np.isfinite([h["d_loss"], h["g_loss"]]).all() for h in hist)
    assert not gen.training
    path = tmp_path / "g.pt"
    save_generator(path, gen, {"note": "tiny"})
    again = load_generator(path)
    z = torch.randn(3, 16)
    np.testing.assert_array_equal(generate_uint8(gen, z), generate_uint8(again, z))
    assert generate_uint8(gen, z).dtype == np.uint8


def test_torchscript_generator(tmp_path: Path) -> None:
    gen = Generator(GanConfig(latent_dim=8, width=4)).eval()
    path = tmp_path / "g.ts"
    torch.jit.save(torch.jit.trace(gen, torch.randn(2, 8)), str(path))
    loaded = load_generator(path, latent_dim=8)
    assert loaded.cfg.image_size == 32 and loaded.cfg.latent_dim == 8
    with pytest.raises(FacebalanceError, match=r"set gan\.latent_dim"):
        load_generator(path)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(FacebalanceError, match="neither a facebalance generator checkpoint"):
        load_generator(tmp_path / "junk.pt", latent_dim=8)


def test_divergence_is_an_error(tiny_prepared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = ShardDataset(shard_refs(tiny_prepared / "val", ["id"]), {})
    monkeypatch.setattr(Discriminator, "forward",
                        lambda self, x: self.net(x).flatten() * float("nan"))
    with pytest.raises(FacebalanceError, match="GAN training diverged at step 1"):
        train_gan(ds, GanConfig(latent_dim=8, width=4), GanTrainConfig(steps=3, batch_size=8),
                  torch.device("cpu"))
