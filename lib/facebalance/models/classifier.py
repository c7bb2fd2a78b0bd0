"""Image classifiers and their self-describing checkpoints.

The default ``small_resnet`` is built for small images on a CPU: a stride-2 stem and three
residual stages (about 3,600 training images/s at 32x32, width 16, on 2 threads). The
torchvision ``resnet18``, ``resnet50`` and ``mobilenet_v2`` are selectable for GPUs and real
data (``weights=None``; a user's weights file can initialise them).
"""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facebalance.errors import FacebalanceError, first_line


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything needed to rebuild a classifier (stored inside its checkpoint)."""

    arch: str = "small_resnet"
    width: int = 16
    num_outputs: int = 1
    image_size: int = 32


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stride-2 stem, residual stages at widths w, 2w, 4w, global pooling, linear head."""

    def __init__(self, width: int = 16, num_outputs: int = 1) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            _Residual(w, w, 1), _Residual(w, 2 * w, 2), _Residual(2 * w, 4 * w, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * w, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(config: ClassifierConfig) -> nn.Module:
    """Instantiate the network named by ``config.arch`` (random weights)."""
    if config.arch == "small_resnet":
        return SmallResNet(config.width, config.num_outputs)
    from torchvision import models as tvm

    if config.arch in ("resnet18", "resnet50"):
        net = getattr(tvm, config.arch)(weights=None)
        net.fc = nn.Linear(net.fc.in_features, config.num_outputs)
        return net
    if config.arch == "mobilenet_v2":
        net = tvm.mobilenet_v2(weights=None)
        net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, config.num_outputs)
        return net
    raise FacebalanceError(
        f"unknown classifier arch {config.arch!r}; valid: small_resnet, resnet18, resnet50, "
        "mobilenet_v2")


UNSAFE_PICKLE = ("{what} {path} is not a facebalance checkpoint: it holds pickled Python "
                 "objects that a weights-only load refuses, and it must not be loaded "
                 "(unpickling runs code); rebuild it with the stage that writes it")
UNREADABLE = ("{what} {path} is not a readable torch file ({reason}); it may be truncated: "
              "rebuild it with the stage that writes it")


_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"}


def holds_pickled_code(path: str | Path) -> bool:
    """Whether a file parses as a pickle (bare, or a torch zip's ``data.pkl``) that imports
    or calls Python objects, read with :mod:`pickletools` (which lists opcodes, never runs
    them).

    Every torch checkpoint imports objects (its tensors are rebuilt by functions), so this
    means "holds code" only for a file that ``torch.load(weights_only=True)`` has already
    refused: torch raises the same ``UnpicklingError`` for random bytes and for a pickle
    naming objects outside its allow-list, and this tells the two apart for the message.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return False
                data = zf.read(name)
        else:
            data = path.read_bytes()
        return any(op.name in _CODE_OPCODES for op, _, _ in pickletools.genops(data))
    except Exception:  # not a pickle at all (or a truncated one)
        return False


def load_weights_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors naming the file.

    Raises
    ------
    FacebalanceError
        When the file is missing, holds pickled objects or code (never loaded: a shared
        cache must not run code), or is not a readable torch file (truncated, other format).
    """
    path = Path(path)
    if not path.is_file():
        raise FacebalanceError(f"{what} {path} does not exist; run the stage that writes it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if holds_pickled_code(path):
            raise FacebalanceError(UNSAFE_PICKLE.format(what=what, path=path)) from None
        raise FacebalanceError(
            UNREADABLE.format(what=what, path=path, reason=first_line(err))) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise FacebalanceError(
            UNREADABLE.format(what=what, path=path, reason=first_line(err))) from None


def load_initial_weights(model: nn.Module, path: str | Path) -> None:
    """Initialise ``model`` from a user's state dict (the final layer may differ in size).

    Accepts a bare state dict or a facebalance checkpoint; tensors whose shapes do not
    match (typically the classification head) are skipped.
    """
    state = load_weights_file(path, "weights file")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise FacebalanceError(f"weights file {path} has no tensor matching the model")
    model.load_state_dict(usable, strict=False)


def save_model(path: str | Path, model: nn.Module, config: dict[str, Any],
               meta: dict[str, Any]) -> None:
    """``torch.save`` of ``{"state_dict", "config", "meta"}`` (tensors only), atomically.

    Only tensors and plain Python values go in, so it loads with ``weights_only=True``.
    """
    import io

    from facebalance.data.shards import atomic_write_bytes

    buf = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "config": config, "meta": meta}, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_checkpoint(path: str | Path, model: nn.Module, config: ClassifierConfig,
                    meta: dict[str, Any]) -> None:
    """Save a classifier checkpoint (see :func:`save_model`)."""
    save_model(path, model, asdict(config), meta)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, ClassifierConfig, dict[str, Any]]:
    """Load a classifier checkpoint safely (``weights_only=True``) and rebuild the model.

    Returns
    -------
    model, config, meta
        The model in eval mode on ``device``, its config and the stored metadata.
    """
    ckpt = load_weights_file(path)
    if not isinstance(ckpt, dict) or not {"state_dict", "config"} <= set(ckpt):
        raise FacebalanceError(f"checkpoint {path} is not a facebalance classifier checkpoint")
    config = ClassifierConfig(**ckpt["config"])
    model = build_classifier(config)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), config, ckpt.get("meta", {})


def load_attribute_classifiers(directory: str | Path, device: str | torch.device = "cpu",
                               protected_groups: int = 2) -> dict[str, nn.Module]:
    """The ``train_attr`` classifiers of a directory: ``{"target": ..., "protected": ...}``.

    ``target`` must have one logit; ``protected`` one logit for ``protected_groups`` 2 (what
    the z/z' stages need), else that many. A mismatch (a K-group classifier where a binary
    one is needed, or a stale file) is an error naming the checkpoint.
    """
    out = {}
    for role, want in (("target", 1), ("protected", 1 if protected_groups == 2
                                        else protected_groups)):
        path = Path(directory) / f"{role}.pt"
        model, config, _ = load_checkpoint(path, device)
        if config.num_outputs != want:
            raise FacebalanceError(
                f"{path} has {config.num_outputs} outputs; this stage needs {want} ("
                + ("a binary attribute" if want == 1 else f"{want} groups") + "); the z/z' "
                "stages need a binary target and a binary protected attribute")
        out[role] = model
    return out
