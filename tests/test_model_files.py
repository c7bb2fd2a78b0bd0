"""ONNX files with external data (``torch.onnx.export``'s default): one portable file."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from facebalance import model_files
from facebalance.errors import FacebalanceError
from facebalance.model_files import portable_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def export_onnx(net: torch.nn.Module, x: torch.Tensor, path: Path, external: bool) -> Path:
    """``net`` as ONNX at ``path``; with ``external``, every weight in ``<name>.data``
    beside it, as torch.onnx.export's default exporter writes it."""
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), path, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "b"}})
    if external:
        onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=f"{path.name}.data",
                        size_threshold=0)
    return path


def run(data: bytes | Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(data) if isinstance(data, Path) else data,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.fixture
def net() -> tuple[torch.nn.Module, np.ndarray]:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.Tanh()).eval(), \
        np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)


def test_a_single_file_model_is_returned_byte_for_byte(net, tmp_path: Path) -> None:
    path = export_onnx(net[0], torch.zeros(2, 8), tmp_path / "m.onnx", external=False)
    data, packed = portable_onnx(path)
    assert data == path.read_bytes() and not packed


def test_external_data_is_packed_into_a_file_that_loads_anywhere(net, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    path = export_onnx(net[0], torch.zeros(2, 8), tmp_path / "src" / "m.onnx", external=True)
    assert (tmp_path / "src" / "m.onnx.data").is_file()
    # What the copy of the .onnx file alone does elsewhere: it cannot find its weights.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "copy.onnx").write_bytes(path.read_bytes())
    with pytest.raises(Exception, match=r"m\.onnx\.data"):
        run(elsewhere / "copy.onnx", net[1])
    data, packed = portable_onnx(path)
    assert packed and len(data) > path.stat().st_size
    (elsewhere / "packed.onnx").write_bytes(data)
    expected = net[0](torch.from_numpy(net[1])).detach().numpy()
    np.testing.assert_allclose(run(elsewhere / "packed.onnx", net[1]), expected, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(run(elsewhere / "packed.onnx", net[1]), run(path, net[1]))


def test_external_data_needs_onnx_to_pack_and_says_so(net, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = export_onnx(net[0], torch.zeros(2, 8), tmp_path / "m.onnx", external=True)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(FacebalanceError) as err:
        portable_onnx(path, who="gan.checkpoint")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"gan.checkpoint: {path} keeps its weights in "
                                              "files beside it (ONNX external data")
    assert "pip install facebalance[onnx]" in msg and "external_data=False" in msg


def test_a_missing_data_file_and_the_size_limit_fail_in_one_line(
        net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = export_onnx(net[0], torch.zeros(2, 8), tmp_path / "m.onnx", external=True)
    monkeypatch.setattr(model_files, "ONNX_ONE_FILE_LIMIT", 100)
    with pytest.raises(FacebalanceError, match=r"over ONNX's 2 GiB limit for one file"):
        portable_onnx(path)
    (tmp_path / "m.onnx.data").unlink()
    missing = re.escape(f"cannot load {path} as ONNX with its external data: ")
    with pytest.raises(FacebalanceError, match=missing):
        portable_onnx(path)


def test_audit_model_reads_external_data_beside_the_file(tmp_path: Path) -> None:
    """``audit-model`` runs the user's file where it lies: its weights beside it are found."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 1)).eval()
    path = export_onnx(net, torch.zeros(2, 3, 8, 8), tmp_path / "m.onnx", external=True)
    x = np.random.default_rng(0).normal(size=(5, 3, 8, 8)).astype(np.float32)
    model = model_files.load_model_file(path)
    np.testing.assert_allclose(model.run(x), net(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
