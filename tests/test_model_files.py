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


def run(model: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.fixture
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.Tanh()).eval()


X = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)


def test_a_single_file_model_and_a_file_that_is_not_onnx_come_back_as_they_are(
        net: torch.nn.Module, tmp_path: Path) -> None:
    path = export_onnx(net, torch.zeros(2, 8), tmp_path / "m.onnx", external=False)
    assert portable_onnx(path) == (path.read_bytes(), False)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model")
    assert portable_onnx(junk) == (junk.read_bytes(), False)


def test_external_data_is_packed_into_a_file_that_loads_anywhere(
        net: torch.nn.Module, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    path = export_onnx(net, torch.zeros(2, 8), tmp_path / "src" / "m.onnx", external=True)
    assert (tmp_path / "src" / "m.onnx.data").is_file()
    # What a copy of the .onnx file alone does elsewhere: it cannot find its weights.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "copy.onnx").write_bytes(path.read_bytes())
    with pytest.raises(Exception, match=r"m\.onnx\.data"):
        run(elsewhere / "copy.onnx", X)
    data, packed = portable_onnx(path)
    assert packed and len(data) > path.stat().st_size
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL
                   for t in onnx.load_model_from_string(data).graph.initializer)
    (elsewhere / "packed.onnx").write_bytes(data)
    expected = net(torch.from_numpy(X)).detach().numpy()
    np.testing.assert_allclose(run(elsewhere / "packed.onnx", X), expected, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(run(elsewhere / "packed.onnx", X), run(path, X))


def test_tensors_in_subgraphs_and_constant_nodes_are_packed(tmp_path: Path) -> None:
    """An If node's branch initializer and a Constant node's tensor, both external."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w_then, w_const = (rng.normal(size=(8, 3)).astype(np.float32) for _ in range(2))
    then = helper.make_graph([helper.make_node("MatMul", ["x", "w_then"], ["y_then"])],
                             "then", [], [helper.make_tensor_value_info("y_then",
                                                                        TensorProto.FLOAT,
                                                                        None)],
                             initializer=[numpy_helper.from_array(w_then, "w_then")])
    other = helper.make_graph([helper.make_node("MatMul", ["x", "w_const"], ["y_else"])],
                              "else", [], [helper.make_tensor_value_info("y_else",
                                                                         TensorProto.FLOAT,
                                                                         None)])
    nodes = [helper.make_node("Constant", [], ["w_const"],
                              value=numpy_helper.from_array(w_const, "w_const")),
             helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(
                 np.array(True), "cond")),
             helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["b", 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["b", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "src" / "if.onnx"
    path.parent.mkdir()
    onnx.save_model(model, str(path), save_as_external_data=True, location="if.data",
                    size_threshold=0, convert_attribute=True)
    stored = onnx.load(str(path), load_external_data=False)
    assert sum(t.data_location == TensorProto.EXTERNAL
               for t in model_files._onnx_tensors(stored)) >= 2
    data, packed = portable_onnx(path)
    assert packed
    (tmp_path / "packed.onnx").write_bytes(data)
    np.testing.assert_allclose(run(tmp_path / "packed.onnx", X), X @ w_then, rtol=1e-5)


def test_data_reached_through_symbolic_links_is_packed(net: torch.nn.Module,
                                                       tmp_path: Path) -> None:
    """The layout of a Hugging Face snapshot or a DVC symlink cache: the model and its data
    file are links into a blob folder."""
    (tmp_path / "blobs").mkdir()
    path = export_onnx(net, torch.zeros(2, 8), tmp_path / "blobs" / "m.onnx", external=True)
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for name in ("m.onnx", "m.onnx.data"):
        (snapshot / name).symlink_to(tmp_path / "blobs" / name)
    data, packed = portable_onnx(snapshot / "m.onnx")
    assert packed and data == portable_onnx(path)[0]


@pytest.mark.parametrize("location", ["../m.onnx.data", "/etc/passwd", ""])
def test_data_outside_the_models_folder_is_refused(net: torch.nn.Module, tmp_path: Path,
                                                   location: str) -> None:
    path = export_onnx(net, torch.zeros(2, 8), tmp_path / "m.onnx", external=True)
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())
    with pytest.raises(FacebalanceError) as err:
        portable_onnx(path, who="gan.checkpoint")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"gan.checkpoint: {path} keeps its weights in "
                                              "files beside it (ONNX external data")
    assert f"names {location!r}, which is not a file in the model's folder; refused" in msg


def test_missing_or_short_data_and_the_size_limit_fail_in_one_line(
        net: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = export_onnx(net, torch.zeros(2, 8), tmp_path / "m.onnx", external=True)
    data_file = tmp_path / "m.onnx.data"
    with monkeypatch.context() as m:
        m.setattr(model_files, "ONNX_ONE_FILE_LIMIT", data_file.stat().st_size)
        with pytest.raises(FacebalanceError, match=r"GiB, over ONNX's 2 GiB limit for one "
                                                   r"file, so it cannot be packed into one$"):
            portable_onnx(path)
    data_file.write_bytes(data_file.read_bytes()[:-4])
    with pytest.raises(FacebalanceError, match=re.escape(f"{data_file} has ") + r"\d+ bytes but "
                                               r"tensor .* needs bytes \d+ to \d+: truncated\?$"):
        portable_onnx(path)
    data_file.unlink()
    with pytest.raises(FacebalanceError, match=re.escape(f"{data_file} is missing: put the "
                                                         "model's data file beside it")):
        portable_onnx(path)


def test_without_onnx_the_extra_is_named(net: torch.nn.Module, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = export_onnx(net, torch.zeros(2, 8), tmp_path / "m.onnx", external=True)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(FacebalanceError, match=r"^gan\.checkpoint: .*m\.onnx: reading an ONNX "
                                               r"generator needs the onnx package; install "
                                               r"the extra: pip install facebalance\[onnx\]$"):
        portable_onnx(path, who="gan.checkpoint")


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
