"""A user's pretrained generator (``gan.checkpoint``) as a ``torch.export`` program or ONNX:
``train_gan`` adopts it and the latent stages draw and invert with it (stages in process)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from facebalance.data.shards import read_columns
from facebalance.models.gan import GanConfig, Generator, load_generator

from .projects import BINARY, build_inprocess, merge


@pytest.mark.parametrize("fmt", ["pt2", "onnx", "onnx-external-data"])
def test_an_exported_generator_replaces_training(fmt: str, tmp_path: Path) -> None:
    """Adopted as it is; an ONNX file whose weights lie beside it (torch.onnx.export's
    default) is packed into one generator file, which loads without them."""
    torch.manual_seed(0)
    gen = Generator(GanConfig(latent_dim=16, width=8)).eval()  # BINARY's gan sizes
    z = torch.randn(2, 16)
    path = tmp_path / f"generator.{fmt.split('-')[0]}"
    if fmt == "pt2":
        b = torch.export.Dim("b", min=1, max=4096)
        torch.export.save(torch.export.export(gen, (z,), dynamic_shapes=({0: b},)), path)
    else:
        with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated
            warnings.simplefilter("ignore")
            torch.onnx.export(gen, (z,), path, dynamo=False, input_names=["z"],
                              dynamic_axes={"z": {0: "b"}})
    external = fmt == "onnx-external-data"
    if external:
        onnx = pytest.importorskip("onnx")
        onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True,
                        location="generator.onnx.data", size_threshold=0)
    # ONNX has no gradients: the inversion uses the encoder alone.
    invert = {"method": "both" if fmt == "pt2" else "encoder"}
    root = tmp_path / "p"
    ran = build_inprocess(root, merge(BINARY, {"gan": {"checkpoint": str(path)},
                                               "invert": invert}), "sample", "invert")
    assert sorted(ran) == ["invert", "prepare", "sample", "train_gan"]
    copy = root / "models/gan/generator.pt"
    summary = json.loads((root / "metrics/gan/train.json").read_text())
    if external:
        assert copy.stat().st_size > path.stat().st_size
        assert summary == {"source": "checkpoint", "checkpoint": str(path),
                           "external_data": "packed"}
        assert not (root / "models/gan/generator.onnx.data").exists()
        adopted = load_generator(copy)
        with torch.no_grad():
            torch.testing.assert_close(adopted(z), gen(z), rtol=1e-4, atol=1e-5)
    else:
        assert copy.read_bytes() == path.read_bytes()
        assert summary == {"source": "checkpoint", "checkpoint": str(path)}
    sampled = read_columns(root / "data/generated/images", ["id"])
    assert len(sampled) == BINARY["sample"]["n"]
    inverted = json.loads((root / "metrics/invert.json").read_text())
    assert inverted["method"] == invert["method"]
    assert inverted["test"]["n"] == BINARY["invert"]["n_test"]
    assert math.isfinite(inverted["test"]["error"])
