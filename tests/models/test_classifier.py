import pickle
from pathlib import Path

import pytest
import torch

from facebalance.errors import FacebalanceError
from facebalance.models.classifier import (
    ClassifierConfig,
    build_classifier,
    load_attribute_classifiers,
    load_checkpoint,
    load_initial_weights,
    save_checkpoint,
)
from facebalance.models.gan import load_generator


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


class _RunsCode:
    """Unpickling this writes a marker file: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "code ran"))


def test_a_checkpoint_holding_code_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    torch.save({"state_dict": {}, "config": _RunsCode(marker)}, tmp_path / "evil.pt")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    for name in ("evil.pt", "evil.pkl"):
        with pytest.raises(FacebalanceError) as info:
            load_checkpoint(tmp_path / name)
        message = str(info.value)
        assert message == (f"checkpoint {tmp_path / name} is not a facebalance checkpoint: it "
                           "holds pickled Python objects that a weights-only load refuses, "
                           "and it must not be loaded (unpickling runs code); rebuild it with "
                           "the stage that writes it")
        assert "weights_only=False" not in message and "\n" not in message
    assert not marker.exists()
    with pytest.raises(FacebalanceError, match="is not a facebalance checkpoint"):
        load_generator(tmp_path / "evil.pt", latent_dim=8)
    assert not marker.exists()


def test_a_truncated_or_foreign_checkpoint_is_one_line(tmp_path: Path) -> None:
    net = build_classifier(ClassifierConfig(width=8))
    save_checkpoint(tmp_path / "ok.pt", net, ClassifierConfig(width=8), {})
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_bytes(b"not a model")
    for name in ("cut.pt", "text.pt"):
        with pytest.raises(FacebalanceError, match=rf"checkpoint .*{name} is not a readable "
                           r"torch file \(.*\); it may be truncated") as info:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(info.value)


def test_attribute_classifiers_must_have_the_outputs_a_stage_needs(tmp_path: Path) -> None:
    for role, outputs in (("target", 1), ("protected", 4)):
        cfg = ClassifierConfig(width=4, num_outputs=outputs)
        save_checkpoint(tmp_path / f"{role}.pt", build_classifier(cfg), cfg, {})
    models = load_attribute_classifiers(tmp_path, protected_groups=4)  # guided: K groups
    with torch.no_grad():
        assert models["protected"](torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    with pytest.raises(FacebalanceError, match=r"protected\.pt has 4 outputs; this stage "
                                               r"needs 1 \(a binary attribute\)"):
        load_attribute_classifiers(tmp_path)  # the z/z' stages: binary only
