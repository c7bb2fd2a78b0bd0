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
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facebalance.errors import FacebalanceError, first_line

if TYPE_CHECKING:  # imported where used: torch and onnxruntime are slow to import
    import onnx
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
           "{reason}; {hint}")


def run_hint(reason: str) -> str:
    """What to change when a model rejects a batch: the dimension its error names as fixed
    (a torch.export guard ``x.size()[0] == 2``, onnxruntime's ``index: 0 Got: 64 Expected:
    2``) decides between batch size, channels and input size."""
    fixed = (re.search(r"size\(\)\[(\d)\] == (\d+)", reason)
             or re.search(r"index: (\d)\s+Got: \d+\s+Expected: (\d+)", reason))
    if fixed:
        dim, size = int(fixed.group(1)), int(fixed.group(2))
        if dim == 0:  # a split's last batch is shorter whatever --batch-size is
            return (f"it was exported for batches of exactly {size}; export it with a dynamic "
                    "batch dimension (torch.export.Dim, or ONNX dynamic_axes)")
        if dim == 1:
            return f"it takes {size} channels, and audit-model feeds RGB images (3)"
        return f"it was exported for {size} px inputs: --input-size {size}"
    return "give the input size it was exported for (--input-size)"


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
            reason = first_line(err)
            raise FacebalanceError(ERR_RUN.format(who=WHO, path=self.path,
                                                  shape=tuple(batch.shape), reason=reason,
                                                  hint=run_hint(str(err)))) from None


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

ERR_ONNX_PACKAGE = ("{who}: {path}: reading an ONNX generator needs the onnx package; install "
                    "the extra: pip install facebalance[onnx]")
ERR_ONNX_EXTERNAL = ("{who}: {path} keeps its weights in files beside it (ONNX external data, "
                     "torch.onnx.export's default); {problem}")


def portable_onnx(path: str | Path, who: str = WHO) -> tuple[bytes, bool]:
    """An ONNX model as bytes that load from any folder, and whether they were packed.

    ``torch.onnx.export`` writes the weights to a ``.data`` file beside the model by default
    (external data, named by a path relative to the model's folder), so a copy of the
    ``.onnx`` file alone does not load elsewhere. Such a model comes back with those weights
    read into it (following symbolic links, as in a Hugging Face or DVC cache); any other
    file comes back byte for byte, one that is not ONNX too (the loader that reads it says
    what it is).

    Returns
    -------
    (data, packed)
        The model's bytes, and True when external data was packed into them.

    Raises
    ------
    FacebalanceError
        The ``onnx`` package missing; or external data that names a path outside the
        model's folder, is missing or shorter than the model says, or would take the model
        over ONNX's 2 GiB single-file limit (checked before any weight is read).
    """
    try:
        import onnx
    except ImportError:
        raise FacebalanceError(ERR_ONNX_PACKAGE.format(who=who, path=path)) from None
    path = Path(path)
    data = path.read_bytes()
    try:
        model = onnx.load_model_from_string(data)  # external data stays where it is
    except Exception:  # protobuf's DecodeError and others: not ONNX
        return data, False
    external = [t for t in _onnx_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
    if not external:
        return data, False
    sources = [_external_source(t, path, who) for t in external]
    size = len(data) + sum(length for _, _, length in sources)
    if size > ONNX_ONE_FILE_LIMIT:
        raise FacebalanceError(ERR_ONNX_EXTERNAL.format(
            who=who, path=path, problem=f"with them it is {size / 2**30:.1f} GiB, over ONNX's "
            "2 GiB limit for one file, so it cannot be packed into one"))
    for tensor, (file, offset, length) in zip(external, sources, strict=True):
        with open(file, "rb") as fh:
            fh.seek(offset)
            tensor.raw_data = fh.read(length)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return model.SerializeToString(), True


def _external_source(tensor: onnx.TensorProto, path: Path, who: str
                     ) -> tuple[Path, int, int]:
    """(file, offset, length) of an external tensor's bytes, checked to exist."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    rel = Path(location)
    if not location or rel.is_absolute() or ".." in rel.parts:
        raise FacebalanceError(ERR_ONNX_EXTERNAL.format(
            who=who, path=path, problem=f"tensor {tensor.name!r} names {location!r}, which is "
            "not a file in the model's folder; refused (save the model with its data beside "
            "it)"))
    file = path.parent / rel
    if not file.is_file():
        raise FacebalanceError(ERR_ONNX_EXTERNAL.format(
            who=who, path=path, problem=f"{file} is missing: put the model's data file beside "
            "it"))
    offset, available = int(info.get("offset", 0)), file.stat().st_size
    length = int(info["length"]) if "length" in info else available - offset
    if offset + length > available:
        raise FacebalanceError(ERR_ONNX_EXTERNAL.format(
            who=who, path=path, problem=f"{file} has {available} bytes but tensor "
            f"{tensor.name!r} needs bytes {offset} to {offset + length}: truncated?"))
    return file, offset, length


def _onnx_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor an ONNX model holds: initializers (sparse ones too) and node attributes,
    in subgraphs and functions."""

    def nodes(node_list: Iterable[onnx.NodeProto]) -> Iterator[onnx.TensorProto]:
        for node in node_list:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("sparse_tensor"):
                    yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    yield from graph(sub)

    def graph(g: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        yield from nodes(g.node)

    yield from graph(model.graph)
    for function in model.functions:
        yield from nodes(function.node)


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
    if path.is_dir():
        raise FacebalanceError(f"{WHO}: {path} is a directory; give the model file in it")
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
