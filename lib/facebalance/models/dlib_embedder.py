"""dlib's pretrained face descriptor (``embed.model: dlib``) and its worker processes.

dlib's ResNet descriptor (128-d, pretrained on real faces, CC0) comes from the
``face-recognition-models`` wheel with ``dlib-bin``; faces are aligned to 150 x 150 chips by
its 5-point landmarks (``embed.align: landmarks``, inside the prepared face crop;
``detect``: dlib's HOG face detector first; ``none``: the crop resized). It works one image
at a time on one core, so :func:`embed_in_processes` runs it in one process per core.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from facebalance.errors import FacebalanceError
from facebalance.processes import exit_with_parent

DLIB_CHIP = 150


def dlib_model_files() -> dict[str, Path]:
    """The descriptor and 5-point predictor inside the face-recognition-models wheel.

    Located with importlib (importing that package needs ``pkg_resources``, which recent
    setuptools no longer ships).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FacebalanceError(
            "embed.model: dlib needs dlib-bin and face-recognition-models: "
            "pip install -e '.[dlib]'")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = {"descriptor": models / "dlib_face_recognition_resnet_model_v1.dat",
             "landmarks": models / "shape_predictor_5_face_landmarks.dat"}
    for path in files.values():
        if not path.is_file():
            raise FacebalanceError(f"embed.model: dlib: {path} is missing (reinstall "
                                   "face-recognition-models)")
    return files


class NoFaceError(FacebalanceError):
    """dlib's detector found no face in an image (``embed.align: detect``)."""


class DlibEmbedder:
    """dlib's 128-d ResNet descriptor of faces aligned by its 5-point landmarks."""

    dim = 128

    def __init__(self, align: str = "landmarks") -> None:
        try:
            import dlib
        except ImportError:
            raise FacebalanceError(
                "embed.model: dlib needs dlib-bin and face-recognition-models: "
                "pip install -e '.[dlib]'") from None
        files = dlib_model_files()
        self.dlib = dlib
        self.align = align
        self.descriptor = dlib.face_recognition_model_v1(str(files["descriptor"]))
        self.landmarks = dlib.shape_predictor(str(files["landmarks"]))
        self.detector = dlib.get_frontal_face_detector() if align == "detect" else None
        self.no_face = 0  # images where the detector found none (the whole crop used)

    def face_box(self, image: np.ndarray, strict: bool = False) -> Any:
        """The face rectangle: dlib's largest detection (``detect``) or the whole crop."""
        h, w = image.shape[:2]
        whole = self.dlib.rectangle(0, 0, w - 1, h - 1)
        if self.detector is None:
            return whole
        found = list(self.detector(image, 1))
        if not found:
            if strict:
                raise NoFaceError("no face found")
            self.no_face += 1
            return whole
        return max(found, key=lambda r: r.area())

    def chip(self, image: np.ndarray, strict: bool = False) -> np.ndarray:
        """The 150 x 150 face chip the descriptor reads."""
        image = np.ascontiguousarray(image)
        if self.align == "none":
            from PIL import Image

            return np.asarray(Image.fromarray(image).resize((DLIB_CHIP,) * 2,
                                                            Image.Resampling.BILINEAR))
        # The predictor and chip extraction work on faces of 80+ px; small crops (32 px
        # synthfaces) are upsampled first.
        if min(image.shape[:2]) < 80:
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize((DLIB_CHIP,) * 2,
                                                             Image.Resampling.BILINEAR))
        shape = self.landmarks(image, self.face_box(image, strict))
        return np.asarray(self.dlib.get_face_chip(image, shape, size=DLIB_CHIP))

    def embed(self, images: torch.Tensor, strict: bool = False) -> np.ndarray:
        """Unit descriptors ``(n, 128)`` of a uint8 NHWC batch; ``strict``: an image where
        the detector (``align: detect``) finds no face raises :class:`NoFaceError`."""
        return self.embed_array(images.numpy(), strict)

    def embed_array(self, images: np.ndarray, strict: bool = False) -> np.ndarray:
        """:meth:`embed` of a uint8 NHWC numpy batch (what worker processes receive)."""
        chips = [self.chip(im, strict) for im in images]
        if not chips:
            return np.empty((0, self.dim), np.float32)
        out = np.asarray(self.descriptor.compute_face_descriptor(chips), dtype=np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


_WORKER: DlibEmbedder | None = None


def _dlib_worker_start(align: str, parent: int) -> None:
    exit_with_parent(parent)
    global _WORKER
    _WORKER = DlibEmbedder(align)


def _dlib_worker_embed(images: np.ndarray) -> tuple[np.ndarray, int]:
    assert _WORKER is not None
    before = _WORKER.no_face
    out = _WORKER.embed_array(images)
    return out, _WORKER.no_face - before


def cpu_workers() -> int:
    """CPU cores this process may use (its affinity where the system tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def embed_in_processes(embedder: DlibEmbedder, loader: Any, out: np.ndarray, workers: int,
                       bar: tqdm) -> None:
    """dlib batches in ``workers`` processes, results written in place as they come back in
    order. Each batch is cut into one chunk per process, so a short last batch (or a single
    one) still keeps every process busy; about ``2 x workers`` chunks are in flight (bounded
    memory)."""
    import sys
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor
    from multiprocessing import get_context

    method = "fork" if sys.platform == "linux" else "spawn"
    pending: deque[tuple[Future, np.ndarray]] = deque()

    def collect() -> None:
        future, index = pending.popleft()
        vectors, no_face = future.result()
        out[index] = vectors
        embedder.no_face += no_face
        bar.update(len(index))

    with ProcessPoolExecutor(workers, mp_context=get_context(method),
                             initializer=_dlib_worker_start,
                             initargs=(embedder.align, os.getpid())) as pool:
        for x, rows in loader:
            images, index = x.numpy(), np.asarray(rows["index"])
            for part in np.array_split(np.arange(len(index)), min(workers, len(index))):
                pending.append((pool.submit(_dlib_worker_embed, images[part]), index[part]))
                if len(pending) > 2 * workers:
                    collect()
        while pending:
            collect()
