"""Stream a real dataset's images into Parquet image shards.

Memory is bounded by a few chunks of ``row_group_size`` images whatever the dataset size:
``dataset.workers`` processes decode chunk by chunk; each image is cropped (or aligned
with MTCNN), resized to ``base.image_size`` and written as a PNG row through
:class:`ShardWriter` (each split directory appears atomically). Missing and corrupt files
follow ``dataset.on_error``: ``skip`` counts and logs them, ``fail`` stops with the file
and its label line. Images in which MTCNN finds no face are always skipped, counted and
listed in the summary. :func:`load_face` prepares one file with the same code
(``facebalance verify``).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from tqdm import tqdm

from facebalance.data.loaders import SPLITS, LabelIndex
from facebalance.data.shards import (  # noqa: F401  (ALPHA_BACKGROUND: re-exported)
    ALPHA_BACKGROUND,
    ShardWriter,
    encode_png_batch,
    to_rgb,
    write_table_atomic,
)
from facebalance.errors import CorruptImageError, FacebalanceError
from facebalance.processes import exit_with_parent

log = logging.getLogger(__name__)

#: Error kinds counted in the summary (``malformed_name`` and pair misses come from indexing).
ERROR_KINDS = ("missing", "corrupt", "not_a_file", "outside_root", "too_large", "no_face")
#: Default pixel limit (width x height) checked from the header, before decoding.
MAX_PIXELS = 64_000_000
_EXAMPLES = 5
_RESAMPLE = Image.Resampling.BILINEAR  # antialiased when Pillow shrinks (its filter widens)

Box = tuple[float, float, float, float]


class FaceDetector(Protocol):
    """Finds the main face of each image: a ``(x0, y0, x1, y1)`` box, or None."""

    def __call__(self, images: Sequence[Image.Image]) -> list[Box | None]: ...


def center_box(width: int, height: int, crop: int) -> Box:
    """The centred square of side ``crop`` (0: the largest one) inside an image."""
    side = min(width, height) if crop <= 0 else min(crop, width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def face_box(box: Box, margin: float, width: int, height: int) -> Box:
    """A square around a detected face, ``margin`` of its size added, kept inside the image.

    The side is ``max(box width, box height) * (1 + margin)``, at most the image's shorter
    side; the square is centred on the face and shifted (not shrunk) to stay inside.
    """
    x0, y0, x1, y1 = box
    side = min(max(x1 - x0, y1 - y0) * (1.0 + margin), width, height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(cx - side / 2, 0.0), width - side)
    top = min(max(cy - side / 2, 0.0), height - side)
    return (left, top, left + side, top + side)


def align_face(im: Image.Image, box: Box, margin: float, size: int) -> np.ndarray:
    """The face crop of ``dataset.align: mtcnn``: the :func:`face_box` square of a detected
    face ``box`` (``margin`` added) resized to ``size`` x ``size`` RGB pixels."""
    return np.asarray(im.resize((size, size), _RESAMPLE, box=face_box(box, margin, *im.size)))


class ImageRefused(Exception):
    """An image file that is not read: ``kind`` is one of :data:`ERROR_KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def open_confined(path: Path, root: Path) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file inside ``root`` (links resolved).

    The loaders refuse label rows that name paths outside the image folder; this closes
    what a label file cannot show: a symbolic link inside the folder that points out of it,
    and a FIFO or device named like an image (reading one blocks forever). The file is
    opened non-blocking and checked with ``fstat``, so a FIFO is refused, not waited on.

    Raises
    ------
    ImageRefused
        ``outside_root`` or ``not_a_file``.
    FileNotFoundError
        When the file does not exist.
    """
    real = os.path.realpath(path)
    base = os.path.realpath(root)
    if os.path.commonpath([real, base]) != base:
        raise ImageRefused("outside_root", f"resolves to {real}, outside the image folder {base}")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(real, flags)
    except OSError as err:
        if err.errno == errno.ELOOP:  # became a link after it was resolved
            raise ImageRefused("outside_root", "changed into a link while being opened"
                               ) from None
        raise
    try:
        opened = Path(f"/proc/self/fd/{fd}")
        if opened.is_symlink():  # Linux: what was really opened, after any swap of folders
            actual = os.readlink(opened)
            if os.path.commonpath([actual, base]) != base:
                raise ImageRefused("outside_root", f"opened {actual}, outside {base}")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageRefused("not_a_file", "not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _check_pixels(im: Image.Image, max_pixels: int) -> None:
    w, h = im.size
    if w * h > max_pixels:
        raise ImageRefused("too_large", f"{w}x{h} = {w * h:,} pixels exceeds "
                                        f"dataset.max_pixels = {max_pixels:,}")


def open_rgb(path: Path, root: Path | None = None,
             max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file to RGB, upright (EXIF orientation applied, as phones store it)."""
    with open_confined(path, root or path.parent) as fh, Image.open(fh) as im:
        _check_pixels(im, max_pixels)
        return to_rgb(ImageOps.exif_transpose(im))  # transpose first: compositing drops EXIF


def load_cropped(path: Path, crop: int, size: int, root: Path | None = None,
                 max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode, turn upright, centre-crop a ``crop`` square (0: largest), resize to ``size``.

    Only regular files inside ``root`` (default: the file's folder) are opened, and the
    pixel count is checked from the header before anything is decoded.
    """
    return _load_cropped(path, crop, size, root, max_pixels)[0]


def _load_cropped(path: Path, crop: int, size: int, root: Path | None,
                  max_pixels: int) -> tuple[np.ndarray, int]:
    """:func:`load_cropped` and the crop's side in source pixels."""
    with open_confined(path, root or path.parent) as fh, Image.open(fh) as im:
        _check_pixels(im, max_pixels)
        w, h = im.size
        side = min(w, h) if crop <= 0 else min(crop, w, h)
        if im.format == "JPEG":
            # Decode at the smallest DCT scale that still leaves >= size pixels in the crop.
            scale = size / side
            im.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
        f = im.size[0] / w
        rgb = to_rgb(ImageOps.exif_transpose(im))  # transpose first: compositing drops EXIF
    box = center_box(rgb.width, rgb.height, 0)
    # The crop's half side at the decoded scale (rounding of the DCT scale may leave the
    # decoded image a fraction of a pixel short of it).
    half = min(side * f, rgb.width, rgb.height) / 2
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return np.asarray(rgb.resize((size, size), _RESAMPLE,
                                 box=(cx - half, cy - half, cx + half, cy + half))), side


class MtcnnDetector:
    """facenet-pytorch's MTCNN (weights ship in its wheel): the largest face per image."""

    def __init__(self, device: str = "cpu", min_face_size: int = 20,
                 threshold: float = 0.9) -> None:
        from facenet_pytorch import MTCNN  # heavy import, only when alignment is asked for

        self.mtcnn = MTCNN(select_largest=True, device=device, min_face_size=min_face_size,
                           thresholds=[0.6, 0.7, threshold], post_process=False)

    def __call__(self, images: Sequence[Image.Image]) -> list[Box | None]:
        out: list[Box | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            by_size.setdefault(im.size, []).append(i)
        for idx in by_size.values():  # MTCNN batches only equal-size images
            boxes, _ = self.mtcnn.detect([images[i] for i in idx])
            for i, b in zip(idx, boxes, strict=True):
                if b is not None and len(b):
                    out[i] = tuple(float(v) for v in b[0])
        return out


@dataclass
class ConvertStats:
    """What happened to each image of a conversion."""

    kept: dict[str, pd.DataFrame] = field(default_factory=dict)  # label rows written
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # extra tables written
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    examples: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)  # kept images worth a look

    @property
    def written(self) -> dict[str, int]:
        """Images written per split."""
        return {split: len(rows) for split, rows in self.kept.items()}

    def warn(self, kind: str, entry: str) -> None:
        """Count a kept image worth a warning (``small``); log and keep the first few."""
        self._count(self.warnings, kind, entry, f"{kind} image")

    def add(self, kind: str, entry: str) -> None:
        """Count a skipped image (``missing``, ``corrupt``...); log and keep the first few."""
        self._count(self.errors, kind, entry, kind.replace("_", " "))

    def _count(self, counter: dict[str, int], kind: str, entry: str, what: str) -> None:
        counter[kind] = counter.get(kind, 0) + 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < _EXAMPLES:
            shown.append(entry)
            log.warning("prepare: %s: %s", what, entry)


@dataclass(frozen=True)
class ConvertOptions:
    """How images become shard rows (from ``dataset`` and ``base`` params)."""

    image_size: int
    crop: int = 0
    workers: int = 2
    on_error: str = "fail"
    row_group_size: int = 1000
    rows_per_file: int = 10000
    align_margin: float = 0.2
    max_pixels: int = MAX_PIXELS
    progress: bool = True


@dataclass(frozen=True)
class DecodeJob:
    """One chunk of images for a decode process."""

    paths: list[Path]
    root: Path
    crop: int
    size: int
    aligned: bool
    max_pixels: int = MAX_PIXELS


Decoded = tuple[Any, str, str]  # (pixels or full image, error kind, message)


def _decode(path: Path, job: DecodeJob) -> Decoded:
    """(pixels or full image, error kind, message); never raises for bad files.

    A kept image smaller than the output size comes back with kind ``""`` and a message
    (it is upsampled: counted as ``small``).
    """
    try:
        if job.aligned:
            im = open_rgb(path, job.root, job.max_pixels)
            small = min(im.size) < job.size
            return im, "", f"{im.width}x{im.height}" if small else ""
        pixels, side = _load_cropped(path, job.crop, job.size, job.root, job.max_pixels)
        return pixels, "", f"{side}x{side} crop" if side < job.size else ""
    except ImageRefused as err:
        return None, err.kind, str(err)
    except FileNotFoundError:
        return None, "missing", "file not found"
    except Image.DecompressionBombError as err:
        return None, "too_large", str(err)
    except Exception as err:  # Pillow raises many unrelated types for bad bytes
        return None, "corrupt", f"{type(err).__name__}: {err}"


#: What :func:`load_face` says of a file :func:`_decode` refuses (by kind; else its message).
_REFUSED = {"missing": "no such file", "corrupt": "not a readable image ({})"}


def load_face(path: Path, image_size: int, crop: int = 0, align: str = "none",
              margin: float = 0.2, max_pixels: int = MAX_PIXELS,
              detector: FaceDetector | None = None) -> np.ndarray:
    """One image file prepared as ``prepare`` prepares a dataset's images: the MTCNN face
    crop (``dataset.align: mtcnn``) or the centre square (``dataset.crop``), at
    ``image_size``; the same decoding and cropping code as :func:`convert_split`.

    Parameters
    ----------
    path
        The image file; only a regular file inside its own folder is opened.
    image_size
        Side of the square output.
    crop
        Centre square side in source pixels (0: the largest), without alignment.
    align
        ``none`` (centre square) or ``mtcnn`` (face crop).
    margin
        Share of the face's size added around it (``dataset.align_margin``).
    max_pixels
        Larger images (width x height, from the header) are refused undecoded.
    detector
        Face detector for ``align="mtcnn"`` (default: a new :class:`MtcnnDetector`).

    Returns
    -------
    numpy.ndarray
        ``(image_size, image_size, 3)`` uint8 RGB pixels.

    Raises
    ------
    FacebalanceError
        One line naming the file: missing, unreadable or corrupt, or no face found.
    """
    path = Path(path)
    job = DecodeJob([path], path.parent, crop, image_size, align == "mtcnn", max_pixels)
    pixels, kind, msg = _decode(path, job)
    if kind:
        raise FacebalanceError(f"{path}: {_REFUSED.get(kind, '{}').format(msg)}")
    if not job.aligned:
        return pixels
    box = (detector or MtcnnDetector())([pixels])[0]
    if box is None:
        raise FacebalanceError(f"{path}: no face found (MTCNN, dataset.align: mtcnn)")
    return align_face(pixels, box, margin, image_size)


def decode_chunk(job: DecodeJob) -> list[Decoded]:
    """:func:`_decode` of each path (the unit of work of a decode process)."""
    return [_decode(p, job) for p in job.paths]


class ChunkDecoder:
    """Decodes chunks of image files in order, here (1 worker) or in worker processes.

    Small images cost Pillow more Python-level work than decoding, so threads would
    serialize on the GIL (bench_convert.py: 2 threads 1.3x, 2 processes 2.4x the loop);
    processes scale. At most ``workers + 1`` chunks are in flight, which bounds memory
    whatever the dataset size. On Linux the workers are forked, as torch's DataLoader
    does: they only run Pillow and numpy, and a forked worker needs no ``__main__`` guard
    in the caller's script; elsewhere they are spawned.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        method = "fork" if sys.platform == "linux" else "spawn"
        self.pool = (ProcessPoolExecutor(workers, mp_context=get_context(method),
                                         initializer=exit_with_parent, initargs=(os.getpid(),))
                     if workers > 1 else None)

    def __enter__(self) -> ChunkDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def map(self, jobs: Iterator[DecodeJob]) -> Iterator[list[Decoded]]:
        """Results of :func:`decode_chunk` for each job, in job order."""
        if self.pool is None:
            for job in jobs:
                yield decode_chunk(job)
            return
        pending: deque[Future] = deque()
        for job in jobs:
            pending.append(self.pool.submit(decode_chunk, job))
            if len(pending) > self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _chunks(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start: start + size]


def convert_split(records: pd.DataFrame, index: LabelIndex, out: Path, opts: ConvertOptions,
                  stats: ConvertStats, decoder: ChunkDecoder,
                  detector: FaceDetector | None = None) -> pd.DataFrame:
    """Write one split's images to ``out`` and return the label rows actually written."""
    split = str(records["split"].iloc[0]) if len(records) else "?"
    crop = opts.crop or index.default_crop
    attrs = [c for c in records.columns if c not in ("file", "line", "id", "split")]
    kept: list[pd.DataFrame] = []
    bar = tqdm(total=len(records), desc=f"prepare {split}", unit="img", mininterval=2.0,
               disable=not opts.progress)
    chunks = list(_chunks(records, opts.row_group_size))
    jobs = (DecodeJob([index.image_dir / f for f in chunk["file"]], index.image_dir, crop,
                      opts.image_size, detector is not None, opts.max_pixels)
            for chunk in chunks)
    with ShardWriter(out, opts.rows_per_file, opts.row_group_size) as writer:
        for chunk, results in zip(chunks, decoder.map(jobs), strict=True):
            ok = np.ones(len(chunk), dtype=bool)
            for i, (_, kind, msg) in enumerate(results):
                if kind:
                    ok[i] = False
                    _fail_or_count(kind, msg, chunk.iloc[i], index, opts, stats)
                elif msg:  # kept, but smaller than base.image_size: upsampled
                    stats.warn("small", f"{index.image_dir / chunk['file'].iloc[i]}: {msg}, "
                                        f"upsampled to {opts.image_size}")
            pixels = [r[0] for r in results]
            if detector is not None:
                _align(pixels, ok, chunk, detector, opts, stats)
            if ok.any():
                rows = chunk[ok]
                images = np.stack([pixels[i] for i in np.flatnonzero(ok)])
                frame = pd.DataFrame({"id": rows["id"].to_numpy()})
                frame["image"] = encode_png_batch(images)
                frame["split"] = split
                for col in attrs:
                    frame[col] = rows[col].to_numpy()
                frame["source_file"] = rows["file"].to_numpy()
                frame["source"] = "real"
                frame["weight"] = np.float32(1.0)
                writer.write(frame)
                kept.append(rows)
            bar.update(len(chunk))
        if not kept:
            raise FacebalanceError(
                f"prepare: no image of the {split} split of {index.label_file} could be "
                "written (see the errors above); the previous output is kept")
    bar.close()
    return pd.concat(kept)


def _fail_or_count(kind: str, msg: str, row: pd.Series, index: LabelIndex,
                   opts: ConvertOptions, stats: ConvertStats) -> None:
    where = f"{index.image_dir / row['file']}"
    if row["line"] > 0:
        where += f" ({index.label_file} line {row['line']})"
    if opts.on_error == "fail":
        raise CorruptImageError(
            f"prepare: {kind} image {where}: {msg}; set dataset.on_error: skip to skip and "
            "count such images")
    stats.add(kind, f"{where}: {msg}")


def _align(pixels: list[Any], ok: np.ndarray, chunk: pd.DataFrame, detector: FaceDetector,
           opts: ConvertOptions, stats: ConvertStats) -> None:
    """Replace each full image in ``pixels`` by its aligned face crop, in place."""
    idx = np.flatnonzero(ok)
    boxes = detector([pixels[i] for i in idx])
    for i, box in zip(idx, boxes, strict=True):
        im: Image.Image = pixels[i]
        if box is None:
            ok[i] = False
            stats.add("no_face", str(chunk["file"].iloc[i]))
            continue
        pixels[i] = align_face(im, box, opts.align_margin, opts.image_size)


def convert_dataset(index: LabelIndex, out: Path, opts: ConvertOptions,
                    detector: FaceDetector | None = None) -> ConvertStats:
    """Write ``out/{train,val,test}`` shards (and ``out/<table>.parquet`` extras) of an index.

    Parameters
    ----------
    index
        Label index from :func:`facebalance.data.loaders.index_dataset`.
    out
        Parent directory of the split directories.
    opts
        Image size, crop, worker count, error policy and shard layout.
    detector
        Face detector for alignment (:class:`MtcnnDetector`), or None to centre-crop.

    Returns
    -------
    ConvertStats
        Images written per split, error counts and the first few failing entries.

    Raises
    ------
    CorruptImageError
        With ``on_error="fail"``, at the first missing or unreadable image (file and line).
    """
    stats = ConvertStats()
    for kind, entries in index.skipped.items():
        stats.errors[kind] = len(entries)
        stats.examples[kind] = entries[:_EXAMPLES]
    with ChunkDecoder(opts.workers) as decoder:
        for split in SPLITS:
            records = index.records[index.records["split"] == split]
            if records.empty:
                raise FacebalanceError(
                    f"prepare: the {split} split of {index.label_file} is empty; every split "
                    "needs images (check dataset.val_fraction / dataset.test_fraction)")
            stats.kept[split] = convert_split(records, index, out / split, opts, stats,
                                              decoder, detector)
    for name, table in index.tables.items():
        if name == "pairs":  # keep only pairs whose two images were written
            ids = set(pd.concat(stats.kept.values())["id"])
            table = table[table["id_a"].isin(ids) & table["id_b"].isin(ids)]
        write_table_atomic(table, out / f"{name}.parquet")
        stats.tables[name] = table
    total = sum(stats.errors.values())
    if total:
        log.warning("prepare: left out %s", ", ".join(
            f"{n} {k.replace('_', ' ')}" for k, n in stats.errors.items() if n))
    return stats
