"""A user's exported face model, loaded to score images: ``.pt2``, ``.onnx`` or TorchScript.

Trust: these files hold a graph of tensor operations and its weights, and scoring runs that
graph. No Python code from the file is run:

- ``.pt2`` (``torch.export.save``): :func:`torch.export.load` would unpickle some entries
  (tensor subclasses, custom or opaque objects, legacy weights, sample inputs that fail a
  weights-only load) and an AOTInductor package holds compiled code, so
  :func:`check_pt2` opens the archive first and refuses any of those;
- ``.onnx``: run by ``onnxruntime`` (the optional extra ``pip install facebalance[onnx]``);
- TorchScript (``.pt``, ``.ts``, ``.jit``): a legacy fallback (TorchScript is deprecated
  since torch 2.14) loaded by ``torch.jit.load``, whose own unpickler accepts TorchScript
  types only.

Every model takes a float32 ``(B, 3, H, W)`` batch and returns ``(B,)`` or ``(B, C)``
outputs as a numpy array.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facebalance.errors import FacebalanceError, first_line

if TYPE_CHECKING:  # imported where used: torch and onnxruntime are slow to import
    import onnxruntime
    import torch

log = logging.getLogger(__name__)

#: File types by format.
PT2_SUFFIXES = (".pt2",)
ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".jit")

#: Who an error line names: the command, or a param (gan.checkpoint).
WHO = "audit-model"

ERR_MISSING = "{who}: {path} does not exist"
ERR_SUFFIX = ("{who}: {path}: unknown model file type {suffix!r}; valid: .pt2 "
              "(torch.export), .onnx, .pt / .ts (TorchScript, legacy)")
ERR_ONNXRUNTIME = ("{who}: {path} is an ONNX model and onnxruntime is not installed; "
                   "install the extra: pip install facebalance[onnx]")
ERR_LOAD = "{who}: cannot load {path} as {fmt}: {reason}"
ERR_PT2_UNSAFE = ("{who}: {path} holds {what}, which torch.export.load would unpickle "
                  "or run as code; refused (export the model's plain tensors again with "
                  "torch.export.save)")
ERR_RUN = ("{who}: {path} rejects a float32 batch of shape {shape} (N, 3, H, W): "
           "{reason}; give the input size it was exported for (--input-size)")


@dataclass
class ModelFile:
    """A loaded model file.

    Attributes
    ----------
    path
        The file.
    format
        ``pt2``, ``onnx`` or ``torchscript``.
    run
        float32 ``(B, 3, H, W)`` array -> outputs ``(B,)`` or ``(B, C)`` (numpy).
    input_size
        ``(H, W)`` the file declares (ONNX with a static shape), else None.
    note
        How it was loaded, for the report (the TorchScript note says it is legacy).
    """

    path: Path
    format: str
    run: Callable[[np.ndarray], np.ndarray]
    input_size: tuple[int, int] | None = None
    note: str = ""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.run(np.ascontiguousarray(batch, dtype=np.float32)))
        except Exception as err:  # torch and onnxruntime raise their own types
            raise FacebalanceError(ERR_RUN.format(who=WHO, path=self.path,
                                                  shape=tuple(batch.shape),
                                                  reason=first_line(err))) from None


def is_pt2(path: str | Path) -> bool:
    """Whether ``path`` is a ``torch.export`` archive (a zip with an ``archive_version``), by
    its content: an adopted generator is copied to a name without its suffix."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.split("/", 1)[-1] == "archive_version" for name in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def check_pt2(path: str | Path, who: str = WHO) -> None:
    """Refuse a ``.pt2`` archive with any entry :func:`torch.export.load` would unpickle or
    any compiled code: only plain tensors and the JSON graph are accepted.

    Raises
    ------
    FacebalanceError
        Naming what the archive holds.
    """
    import torch

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            root = names[0].split("/", 1)[0] + "/" if names else ""
            if f"{root}archive_version" not in names:
                raise FacebalanceError(ERR_PT2_UNSAFE.format(
                    who=who, path=path, what="no archive_version (a pre-2.8 zip of pickles)"))
            for name in names:
                rel = name[len(root):]
                if rel.startswith("data/aotinductor/"):
                    raise FacebalanceError(ERR_PT2_UNSAFE.format(
                        who=who, path=path, what="an AOTInductor package (compiled code)"))
                if rel.startswith(("data/weights/", "data/constants/")) and rel.endswith(".pt"):
                    raise FacebalanceError(ERR_PT2_UNSAFE.format(
                        who=who, path=path, what=f"legacy pickled weights ({rel})"))
                if rel.endswith(("_weights_config.json", "_constants_config.json")):
                    config = json.loads(z.read(name)).get("config", {})
                    for key, meta in config.items():
                        if meta.get("use_pickle") or not str(
                                meta.get("path_name", "")).startswith(("weight_", "tensor_")):
                            raise FacebalanceError(ERR_PT2_UNSAFE.format(
                                who=who, path=path, what=f"a pickled entry {key!r} ({rel})"))
                if rel.startswith("data/sample_inputs/"):
                    # torch falls back to an unrestricted load when this one fails
                    torch.load(io.BytesIO(z.read(name)), weights_only=True)
    except FacebalanceError:
        raise
    except Exception as err:  # a bad zip, a bad JSON, a sample input that is not tensors
        raise FacebalanceError(ERR_LOAD.format(who=who, path=path, fmt="a torch.export program",
                                               reason=first_line(err))) from None


def load_pt2(path: str | Path, who: str = WHO) -> torch.export.ExportedProgram:
    """A ``torch.export`` archive, checked by :func:`check_pt2` before it is deserialized.

    Raises
    ------
    FacebalanceError
        Pickled or compiled entries, or a file torch cannot read (prefixed by ``who``).
    """
    import torch

    check_pt2(path, who)
    try:
        return torch.export.load(path)
    except Exception as err:  # torch's deserializer raises several types
        raise FacebalanceError(ERR_LOAD.format(who=who, path=path, fmt="a torch.export program",
                                               reason=first_line(err))) from None


def onnx_session(path: str | Path, who: str = WHO) -> onnxruntime.InferenceSession:
    """An onnxruntime session (CPU) of an ONNX file.

    Raises
    ------
    FacebalanceError
        onnxruntime missing (naming the extra), or a file it cannot load.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise FacebalanceError(ERR_ONNXRUNTIME.format(who=who, path=path)) from None
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own exception types
        raise FacebalanceError(ERR_LOAD.format(who=who, path=path, fmt="ONNX",
                                               reason=first_line(err))) from None


#: ONNX's limit for a model in one file (protobuf's message size).
ONNX_ONE_FILE_LIMIT = 2**31 - 1

ERR_ONNX_EXTERNAL = ("{who}: {path} keeps its weights in files beside it (ONNX external data, "
                     "torch.onnx.export's default), which a copy of the file loses; {fix}")


def portable_onnx(path: str | Path, who: str = WHO) -> tuple[bytes, bool]:
    """An ONNX model as one file that loads from any folder, and whether it was packed.

    ``torch.onnx.export`` writes the weights to a ``.data`` file beside the model by default
    (external data, found by a path relative to the model's folder), so a byte copy of the
    ``.onnx`` file alone fails to load elsewhere. Such a model is read with its external data
    and serialized whole (needs the ``onnx`` package, in ``facebalance[onnx]``); any other is
    returned byte for byte. Whether a copy loads is tried by onnxruntime in an empty folder,
    so this holds for every way a model can refer to files.

    Returns
    -------
    (data, packed)
        The bytes to write, and True when external data was packed into them.

    Raises
    ------
    FacebalanceError
        External data without ``onnx`` installed, a model over ONNX's 2 GB single-file
        limit, or bytes that onnxruntime cannot load even packed.
    """
    path = Path(path)
    data = path.read_bytes()
    if _loads_alone(data, path, who) is None:
        return data, False
    try:
        import onnx
    except ImportError:
        raise FacebalanceError(ERR_ONNX_EXTERNAL.format(
            who=who, path=path, fix="install onnx to pack them into one file (pip install "
            "facebalance[onnx]), or export with external_data=False")) from None
    try:
        model = onnx.load(str(path))  # with its external data, read from the model's folder
    except Exception as err:  # onnx raises several types for a missing or bad data file
        raise FacebalanceError(ERR_LOAD.format(who=who, path=path, fmt="ONNX with its external "
                                               "data", reason=first_line(err))) from None
    if model.ByteSize() > ONNX_ONE_FILE_LIMIT:
        raise FacebalanceError(ERR_ONNX_EXTERNAL.format(
            who=who, path=path, fix=f"with its weights it is {model.ByteSize() / 2**30:.1f} GiB, "
            "over ONNX's 2 GiB limit for one file; export a smaller generator"))
    packed = model.SerializeToString()
    reason = _loads_alone(packed, path, who)
    if reason is not None:
        raise FacebalanceError(ERR_LOAD.format(who=who, path=path, fmt="ONNX packed into one "
                                               "file", reason=reason))
    return packed, True


def _loads_alone(data: bytes, path: Path, who: str) -> str | None:
    """None when onnxruntime loads ``data`` as a file in an empty folder, else its error."""
    import tempfile

    try:
        import onnxruntime as ort
    except ImportError:
        raise FacebalanceError(ERR_ONNXRUNTIME.format(who=who, path=path)) from None
    with tempfile.TemporaryDirectory(prefix="facebalance-onnx-") as folder:
        copy = Path(folder) / "model.onnx"
        copy.write_bytes(data)
        try:
            ort.InferenceSession(str(copy), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types
            return first_line(err)
    return None


def load_model_file(path: str | Path, device: str = "cpu") -> ModelFile:
    """Load a ``.pt2``, ``.onnx`` or TorchScript model file for scoring.

    Raises
    ------
    FacebalanceError
        A missing file, an unknown file type, onnxruntime missing for ``.onnx``, a
        ``.pt2`` with pickled entries, or a file its loader cannot read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FacebalanceError(ERR_MISSING.format(who=WHO, path=path))
    if suffix in ONNX_SUFFIXES:
        session = onnx_session(path)
        first = session.get_inputs()[0]
        shape = list(first.shape)
        size = (tuple(shape[2:4]) if len(shape) == 4 and all(isinstance(d, int)
                                                              for d in shape[2:4]) else None)
        return ModelFile(path, "onnx", lambda x: session.run(None, {first.name: x})[0],
                         size, "ONNX, run by onnxruntime (CPU)")
    if suffix not in PT2_SUFFIXES + TORCHSCRIPT_SUFFIXES:
        raise FacebalanceError(ERR_SUFFIX.format(who=WHO, path=path, suffix=path.suffix))
    import torch

    if suffix in PT2_SUFFIXES:
        module = load_pt2(path).module()
        fmt, note = "pt2", "torch.export program (.pt2)"
    else:
        try:
            module = torch.jit.load(str(path), map_location=device)
        except Exception as err:  # a facebalance checkpoint or a pickle is no TorchScript
            raise FacebalanceError(ERR_LOAD.format(
                who=WHO, path=path, fmt="TorchScript (export it with torch.export.save as .pt2)",
                reason=first_line(err))) from None
        module.eval()
        fmt, note = "torchscript", ("TorchScript (legacy: deprecated since torch 2.14; "
                                    "export with torch.export.save as .pt2)")
        log.warning("%s: TorchScript is a legacy format; prefer a torch.export .pt2", path)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(x).to(device))
        if isinstance(out, tuple | list):  # the first output of several
            out = out[0]
        return out.float().cpu().numpy()

    return ModelFile(path, fmt, run, None, note)
