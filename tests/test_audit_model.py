"""``facebalance audit-model``: a user's exported model scored on a prepared dataset.

The report must be :func:`audit_predictions` on the scores the same torch model gives in
this process (exactly for ``.pt2``, to 1e-6 through ONNX), and every bad input one line.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from facebalance.audit import (
    ERR_MODEL_COLUMN,
    ERR_MODEL_INDEX,
    audit_model,
    audit_predictions,
    model_scores,
)
from facebalance.cli import app
from facebalance.data.shards import decode_batch, iter_batches, read_columns
from facebalance.errors import FacebalanceError
from facebalance.model_files import (
    ERR_MISSING,
    ERR_ONNXRUNTIME,
    ERR_PT2_UNSAFE,
    ERR_SUFFIX,
    load_model_file,
)

from .conftest import with_pickled_entry

runner = CliRunner()
BOOT = 30


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 1)).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model as .pt2 (dynamic batch, 32 px), .onnx and TorchScript .pt."""
    root = tmp_path_factory.mktemp("models")
    model, x = tiny_model(), torch.randn(2, 3, 32, 32)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: batch},)),
                      root / "m.pt2")
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), root / "m.onnx", dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
        torch.jit.save(torch.jit.trace(model, x), root / "m.pt")
    return {"pt2": root / "m.pt2", "onnx": root / "m.onnx", "pt": root / "m.pt"}


def in_process_frame(data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test and val rows scored by the torch model here ((x/255 - 0.5) / 0.5, sigmoid in
    float32), and the training labels."""
    model = tiny_model()
    parts = []
    for split in ("test", "val"):
        refs = read_columns(data / split, ["id", "blond", "male"])
        scores = []
        for batch in iter_batches(data / split, ["id", "image"], batch_rows=64):
            images, _ = decode_batch(batch)
            x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
            with torch.inference_mode():
                scores.append(torch.sigmoid(model((x - 0.5) / 0.5)[:, 0]).numpy())
        parts.append(refs[["id", "blond", "male"]].assign(split=split,
                                                          score=np.concatenate(scores)))
    train = read_columns(data / "train", ["blond", "male"])[["blond", "male"]]
    return pd.concat(parts, ignore_index=True), train


def numbers(obj, path=""):
    """Every number of a report, keyed by its path (for a tolerance comparison)."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items()
                for k, v in numbers(val, f"{path}/{key}").items()}
    if isinstance(obj, float | int) and not isinstance(obj, bool):
        return {path: float(obj)}
    return {}


def test_pt2_and_onnx_reports_equal_the_audit_of_in_process_scores(
        tiny_prepared: Path, models: dict[str, Path], tmp_path: Path) -> None:
    frame, train = in_process_frame(tiny_prepared)
    want = audit_predictions(frame, label="blond", scores="score", groups=["male"],
                             train=train, name="m", source=str(models["pt2"]),
                             n_bootstrap=BOOT)["male"]
    got = audit_model(models["pt2"], tiny_prepared, tmp_path / "pt2", n_bootstrap=BOOT)["male"]
    model_meta = got["audit"].pop("model")
    got["audit"].pop("gallery")
    assert got == want  # exact: the same graph, the same float32 sigmoid
    assert model_meta["format"] == "pt2" and model_meta["mean"] == [0.5, 0.5, 0.5]
    for name in ("male.json", "audit.md", "male_scores.png", "male_gallery.png"):
        assert (tmp_path / "pt2" / name).is_file(), name
    written = json.loads((tmp_path / "pt2" / "male.json").read_text())
    assert written["audit"]["model"]["output"] == "logit"

    onnx = audit_model(models["onnx"], tiny_prepared, tmp_path / "onnx",
                       n_bootstrap=BOOT)["male"]
    assert onnx["audit"]["model"]["format"] == "onnx"
    got_n, want_n = numbers(onnx), numbers(want)
    shared = set(want_n) & set(got_n)
    assert shared == set(want_n) and len(shared) > 50
    for key in shared:
        assert got_n[key] == pytest.approx(want_n[key], abs=1e-6, nan_ok=True), key


def test_torchscript_is_a_legacy_fallback(tiny_prepared: Path, models: dict[str, Path],
                                          tmp_path: Path) -> None:
    rep = audit_model(models["pt"], tiny_prepared, tmp_path, n_bootstrap=BOOT)["male"]
    assert rep["audit"]["model"]["format"] == "torchscript"
    assert "legacy" in rep["audit"]["model"]["loaded"]


def test_cli_audit_model(tiny_prepared: Path, models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["audit-model", str(models["pt2"]), "--data",
                                 str(tiny_prepared), "--bootstrap", str(BOOT), "--gallery",
                                 "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| m |" in result.output and (out / "male_gallery.png").is_file()


@pytest.mark.parametrize("option", ["--data", "--label", "--group", "--kind", "--input-size",
                                    "--mean", "--std", "--output", "--index", "--batch-size",
                                    "--threshold", "--out", "--gallery"])
def test_audit_model_help_documents_every_option(option: str) -> None:
    result = runner.invoke(app, ["audit-model", "--help"], env={"COLUMNS": "200"})
    line = next((ln for ln in result.output.splitlines() if f" {option} " in ln), "")
    assert len(line.split(option, 1)[1].strip()) > 20, option


# ---------------------------------------------------------------------------- bad input


def one_line_error(args: list[str]) -> str:
    result = runner.invoke(app, ["audit-model", *args])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0][len("error: "):]


def test_missing_file_unknown_suffix_and_wrong_input_size(
        tiny_prepared: Path, models: dict[str, Path], tmp_path: Path) -> None:
    data = ["--data", str(tiny_prepared), "--bootstrap", "5", "--out", str(tmp_path / "o")]
    assert one_line_error([str(tmp_path / "no.pt2"), *data]) == ERR_MISSING.format(
        who="audit-model", path=tmp_path / "no.pt2")
    (tmp_path / "adir.pt2").mkdir()
    assert one_line_error([str(tmp_path / "adir.pt2"), *data]) == (
        f"audit-model: {tmp_path / 'adir.pt2'} is a directory; give the model file in it")
    other = tmp_path / "model.h5"
    other.write_bytes(b"x")
    assert one_line_error([str(other), *data]) == ERR_SUFFIX.format(
        who="audit-model", path=other, suffix=".h5")
    for fmt, why in (("pt2", "Guard failed"), ("onnx", "INVALID_ARGUMENT")):
        message = one_line_error([str(models[fmt]), *data, "--input-size", "48"])
        assert re.match(rf"^audit-model: {re.escape(str(models[fmt]))} rejects a float32 "
                        r"batch of shape \(64, 3, 48, 48\) \(N, 3, H, W\): .*"
                        rf"{why}.*; it was exported for 32 px inputs: --input-size 32$",
                        message), message
    assert one_line_error([str(models["pt2"]), *data, "--label", "blnd"]) == (
        ERR_MODEL_COLUMN.format(data=tiny_prepared, role="label", column="blnd",
                                columns=", ".join(read_columns(tiny_prepared / "test")
                                                  .columns[:-2])))


def test_missing_onnxruntime_names_the_extra(models: dict[str, Path], monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    message = ERR_ONNXRUNTIME.format(who="audit-model", path=models["onnx"])
    with pytest.raises(FacebalanceError, match=f"^{re.escape(message)}$"):
        load_model_file(models["onnx"])


def test_a_pt2_with_pickled_entries_is_refused(models: dict[str, Path],
                                               tmp_path: Path) -> None:
    bad = with_pickled_entry(models["pt2"], tmp_path / "bad.pt2")
    with pytest.raises(FacebalanceError, match=r"^audit-model: .*bad\.pt2 holds a pickled "
                                               r"entry '.+' \(.*weights_config\.json\), "):
        load_model_file(bad)
    assert ERR_PT2_UNSAFE.startswith("{who}: {path} holds {what}, which torch.export")


def test_model_outputs_become_scores() -> None:
    two = np.array([[0.0, 1.0], [2.0, 0.0]], dtype=np.float32)
    p = model_scores(two, kind="binary", output="softmax", index=None)
    assert p == pytest.approx([1 / (1 + np.exp(-1)), 1 / (1 + np.exp(2))])
    assert model_scores(two, kind="binary", output="logit", index=0) == pytest.approx(
        [0.5, 1 / (1 + np.exp(-2))])
    message = ERR_MODEL_INDEX.format(path="the model", n=2, last=1,
                                     why="name the positive class's column")
    with pytest.raises(FacebalanceError, match=f"^{re.escape(message)}$"):
        model_scores(two, kind="binary", output="logit", index=None)
    # Probe (2026-12-06): each of these gave a report, or blamed a "score column".
    for out, kwargs, why in (
            (two, {"kind": "binary", "output": "logit", "index": 7},
             r"outputs 2 columns per image; --index 7 is not one of them \(--index, 0\.\.1\)"),
            (two[:, :1], {"kind": "multiclass", "output": "softmax", "index": None},
             r"outputs 1 column per image; a multiclass model needs one per class"),
            (np.array([[np.nan], [0.0]]), {"kind": "binary", "output": "logit", "index": None},
             r"output nan for image 0 of a batch; check the model and its --mean / --std"),
            (np.array([[-3.35], [0.5]]), {"kind": "binary", "output": "probability",
                                          "index": None},
             r"output -3\.35, outside \[0, 1\], with --output probability; if its outputs "
             r"are logits, use --output logit")):
        with pytest.raises(FacebalanceError, match=why):
            model_scores(out, **kwargs)


def test_the_label_column_may_also_be_a_group(tiny_prepared: Path, models: dict[str, Path],
                                              tmp_path: Path) -> None:
    """``--group blond`` with blond the label: read once, reported as a group (it raised a
    TypeError from a frame holding the column twice)."""
    reps = audit_model(models["pt2"], tiny_prepared, tmp_path, groups=["male", "blond"],
                       n_bootstrap=BOOT)
    assert set(reps) == {"male", "blond"}
    assert set(reps["blond"]["by_group"]) == {"blond=0", "blond=1"}


def test_a_rejected_batch_names_the_dimension_to_change() -> None:
    """The hint follows the fixed dimension the model's error names (probe, 2026-12-06: a
    batch-2 export was told to change --input-size)."""
    from facebalance.model_files import run_hint

    for reason, hint in (
            ("Guard failed: x.size()[0] == 2", "exactly 2; export it with a dynamic batch"),
            ("Got invalid dimensions for input: x for the following indices\n index: 0 Got: "
             "64 Expected: 2", "exactly 2; export it with a dynamic batch"),
            ("Guard failed: x.size()[1] == 1", "it takes 1 channels, and audit-model feeds RGB"),
            ("index: 3 Got: 48 Expected: 224", "224 px inputs: --input-size 224"),
            ("mat1 and mat2 shapes cannot be multiplied", "(--input-size)")):
        assert hint in run_hint(reason), (reason, run_hint(reason))
