from pathlib import Path

import pytest
import torch

from facebalance.errors import FacebalanceError
from facebalance.models.classifier import (
    ClassifierConfig,
    build_classifier,
    load_checkpoint,
    load_initial_weights,
    save_checkpoint,
)


@pytest.mark.parametrize("arch", ["small_resnet", "resnet18", "mobilenet_v2"])
def test_architectures_give_one_logit(arch: str) -> None:
    net = build_classifier(ClassifierConfig(arch=arch, width=8)).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 1)


def test_checkpoint_round_trip_is_weights_only(tmp_path: Path) -> None:
    cfg = ClassifierConfig(width=8)
    net = build_classifier(cfg)
    path = tmp_path / "m.pt"
    save_checkpoint(path, net, cfg, {"seed": 3})
    ckpt = torch.load(path, weights_only=True)  # loadable without unpickling code
    assert set(ckpt) == {"state_dict", "config", "meta"}
    loaded, cfg2, meta = load_checkpoint(path)
    assert cfg2 == cfg and meta == {"seed": 3} and not loaded.training
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net.eval()(x))


def test_initial_weights_skip_a_different_head(tmp_path: Path) -> None:
    src = build_classifier(ClassifierConfig(width=8, num_outputs=5))
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = build_classifier(ClassifierConfig(width=8, num_outputs=1))
    load_initial_weights(dst, tmp_path / "w.pt")
    torch.testing.assert_close(dst.features[0].weight, src.features[0].weight)
    with pytest.raises(FacebalanceError, match="does not exist"):
        load_initial_weights(dst, tmp_path / "none.pt")


def test_bad_checkpoints_are_named(tmp_path: Path) -> None:
    with pytest.raises(FacebalanceError, match="does not exist; run the stage"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(FacebalanceError, match="is not a facebalance classifier checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
