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

- ``dlib``: dlib's ResNet face descriptor (128-d, pretrained on real faces;
  :mod:`facebalance.models.dlib_embedder`).

Every embedder maps a uint8 NHWC batch to float32 ``(n, d)`` unit vectors; ``models/embed``
holds ``embedder.json`` (what it is) and, for facenet, ``embedder.pt`` (its weights), so a
shared cache reproduces the embeddings without the user's weight files. The embeddings'
file and the rows it covers: :mod:`facebalance.data.embeddings`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from facebalance.config import EmbedParams, as_dict, from_params
from facebalance.data.datasets import ShardDataset, make_loader, to_float
from facebalance.data.embeddings import (
    embeddings_table,
    holdout_identities,
    pair_image_rows,
    write_embeddings,
)
from facebalance.data.shards import (
    atomic_directory,
    atomic_write_bytes,
    read_parquet,
)
from facebalance.errors import FacebalanceError, first_line
from facebalance.models.classifier import SmallResNet, load_weights_file, save_model
from facebalance.models.dlib_embedder import (
    DLIB_CHIP,
    DlibEmbedder,
    cpu_workers,
    embed_in_processes,
)
from facebalance.models.train import TrainConfig, train_classifier
from facebalance.runtime import write_json
from facebalance.task import classifier_task

#: facenet-pytorch's pretrained files (release v2.2.9) and their identity counts.
FACENET_FILES = {"vggface2": ("20180402-114759-vggface2.pt", 8631),
                 "casia-webface": ("20180408-102900-casia-webface.pt", 10575)}
FACENET_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"


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
    in that many processes, each batch cut into one chunk per process (dlib's descriptor of
    a face does not depend on its batch; the network embedders use torch's threads).
    A progress bar shows images and their rate.
    """
    out = np.empty((len(dataset), embedder.dim), dtype=np.float32)
    loader, _ = make_loader(dataset, batch_size, shuffle=False)
    bar = tqdm(total=len(dataset), desc="embed", unit="img", mininterval=2.0,
               disable=not progress)
    with bar:
        if isinstance(embedder, DlibEmbedder) and workers > 1:
            embed_in_processes(embedder, loader, out, workers, bar)
        else:
            for x, rows in loader:
                out[rows["index"]] = embedder.embed(x)
                bar.update(len(x))
    return out


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
        Every prepared image (:func:`~facebalance.data.embeddings.embedding_rows`).
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
                            workers=min(threads or cpu_workers(), len(rows)))
    seconds = time.perf_counter() - t0
    summary |= {"dim": dim,
                "images": {s: int((rows["split"] == s).sum()) for s in ("train", "val", "test")},
                "embed_seconds": seconds, "images_per_second": len(rows) / max(seconds, 1e-9),
                "no_face": getattr(embedder, "no_face", 0)}
    return rows, np.asarray(vectors), summary


@dataclass(frozen=True)
class EmbedOutputs:
    """The embed stage's declared outputs, written together: every one exists afterwards,
    a skipped embedding included (DVC requires its outs)."""

    model_dir: Path
    embeddings: Path
    metrics: Path

    def write(self, cfg: EmbedderConfig, net: NetEmbedder | None, params: EmbedParams,
              rows: pd.DataFrame, vectors: np.ndarray, summary: dict[str, Any]) -> None:
        """The embedder (``embedder.json`` and its weights), the embeddings and the
        summary, each atomically (the caller computed everything first)."""
        table = embeddings_table(rows, vectors)
        with atomic_directory(self.model_dir) as tmp:
            save_embedder(tmp, cfg, net, {"params": as_dict(params)})
        write_embeddings(self.embeddings, table)
        write_json(self.metrics, summary)

    def write_skipped(self, rows: pd.DataFrame, summary: dict[str, Any], reason: str) -> None:
        """Every output of an embedding that did not run, saying why (no embeddings)."""
        with atomic_directory(self.model_dir) as tmp:
            write_json(tmp / "embedder.json", {"skipped": reason})
        write_embeddings(self.embeddings, embeddings_table(rows.iloc[:0].assign(head_fit=True),
                                                           np.zeros((0, 1), np.float32)))
        write_json(self.metrics, {**summary, "skipped": reason})
