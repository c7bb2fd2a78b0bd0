"""Typed, validated pipeline parameters.

Every section of ``params.yaml`` maps to a frozen dataclass. :func:`parse_params` checks the
whole mapping before any stage does work: an unknown section or key, a value of the wrong
type or outside its allowed set fails with a message that names the key and the valid
values. The lib never opens ``params.yaml`` by itself; stages pass its path to
:func:`load_params`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from facebalance.balance.registry import REGISTRY, STRATEGIES
from facebalance.choices import (
    AGE_PROFILES,
    BOUNDARY_METHODS,
    COMPLEMENT_MODES,
    COMPLEMENT_SHELLS,
    EMBED_ALIGN,
    EMBED_BACKBONES,
    EMBED_MODELS,
    EVAL_SPLITS,
    GAN_BALANCE,
    HEAD_METRICS,
    INVERT_METHODS,
    PRESETS,
    REGRESSION_LOSSES,
    REWEIGHT_MODES,
    TASK_KINDS,
    TASK_METRICS,
    VERIFY_FEATURES,
)
from facebalance.errors import FacebalanceError, first_line

_T = TypeVar("_T")

#: Binary attributes synthfaces renders; any two can be target and protected.
SYNTH_BINARY_ATTRIBUTES = ("blond", "male", "smiling", "eyeglasses")
#: synthfaces columns by the task kinds they can be the target of.
SYNTH_TARGETS = {"binary": SYNTH_BINARY_ATTRIBUTES, "multiclass": ("skin",),
                 "multitask": ("skin", *SYNTH_BINARY_ATTRIBUTES), "regression": ("age",)}
#: synthfaces columns that can be the protected attribute (skin: 4 tone groups).
SYNTH_PROTECTED = (*SYNTH_BINARY_ATTRIBUTES, "skin")
DATASETS = ("synthfaces", "celeba", "utkface", "fairface", "lfw", "folder")
ALIGN = ("none", "mtcnn")
ARCHS = ("small_resnet", "resnet18", "resnet50", "mobilenet_v2")
IMAGE_SIZES = (32, 64, 128)
ON_ERROR = ("skip", "fail")
#: Upper bound of every count, size and step number without a bound of its own: a typo
#: like 1000000000 must fail at validation, not allocate until the machine kills the stage.
MAX_COUNT = 10_000_000
#: Upper bound of batch sizes (a batch is held in memory at once).
MAX_BATCH = 65_536
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
#: ``base.precision``: the training loops' compute (see :mod:`facebalance.precision`).
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
#: fp16 needs CUDA: its gradient scaler and fp16 kernels; CPU autocast has neither.
FP16_NEEDS_CUDA = ("params: base.precision = 'fp16' needs a CUDA device, but the device is "
                   "{device!r}; use bf16 or fp32")


def _opt(default: Any, *, choices: tuple | None = None, lo: float | None = None,
         hi: float | None = None, doc: str = "") -> Any:
    """A dataclass field carrying its validation rule in metadata."""
    meta = {"choices": choices, "lo": lo, "hi": hi, "doc": doc}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class BaseParams:
    """Shared by every stage."""

    seed: int = _opt(0, lo=0, hi=2**31 - 1, doc="root of every random source")
    device: str = _opt("auto", doc="auto | cpu | cuda | cuda:N | mps")
    image_size: int = _opt(32, choices=IMAGE_SIZES, doc="side of the square images")
    threads: int = _opt(0, lo=0, hi=1024, doc="torch CPU threads; 0 keeps torch's default")
    nproc: int = _opt(1, lo=1, hi=1024,
                      doc="processes of data-parallel training (DDP under torchrun: "
                          "train_attr, train_target, train_gan, the embedder); 1: one "
                          "process")
    # fp32 by default: the committed results were made in fp32 and reproduce bit for bit.
    precision: str = _opt("fp32", choices=PRECISIONS,
                          doc="training compute: fp32, bf16 or fp16 (CUDA) autocast, or auto "
                              "(bf16 on a GPU with bf16 or a CPU with AMX, else fp32)")


@dataclass(frozen=True)
class DatasetParams:
    """What ``prepare`` writes: the source dataset, its attributes and split sizes."""

    name: str = _opt("synthfaces", choices=DATASETS)
    root: str = _opt("", doc="dataset folder for real datasets")
    target: str = _opt("blond", doc="column the classifier predicts (task.kind says how)")
    protected: str = _opt("male", doc="column of the 2..K groups; empty for regression "
                                      "(its groups are task.age_bins of the target)")
    n_train: int = _opt(20000, lo=8)
    n_val: int = _opt(2000, lo=8)
    n_test: int = _opt(4000, lo=8)
    p_protected: float = _opt(0.42, lo=0.0, hi=1.0, doc="P(protected=1) in train")
    p_target_given_group: list = _opt(
        [0.24, 0.02], doc="synthfaces train: P(target=1 | group), one per protected group "
                          "(2 for a binary attribute, 4 for skin)")
    skin_shares: list = _opt([0.25, 0.25, 0.25, 0.25],
                             doc="synthfaces train: shares of the 4 skin groups when skin is "
                                 "the protected attribute or the target")
    age_profile: str = _opt("uniform", choices=AGE_PROFILES,
                            doc="synthfaces train ages: uniform 18-80 or UTKFace-like")
    blond_cue: float = _opt(1.0, lo=0.05, hi=1.0,
                            doc="synthfaces: hair lightness spread around the blond edge; "
                                "below 1 blond is harder to see (the hard preset)")
    eval_split: str = _opt("balanced", choices=EVAL_SPLITS,
                           doc="synthfaces val/test: equal cells (uniform ages) or like train")
    images_per_identity: int = _opt(4, lo=1)
    rows_per_file: int = _opt(10000, lo=1)
    row_group_size: int = _opt(1000, lo=1)
    on_error: str = _opt("fail", choices=ON_ERROR,
                         doc="missing or corrupt images: skip and count, or fail")
    # Real datasets only (the n_*/p_* keys above only shape synthfaces).
    images: str = _opt("", doc="image folder under root; empty: the dataset's usual one")
    labels: str = _opt("labels.csv", doc="folder: label CSV (relative to root or absolute)")
    file_column: str = _opt("file", doc="folder: CSV column with image paths")
    split_column: str = _opt("split", doc="folder: CSV column with train/val/test, if any")
    pairs: str = _opt("pairs.txt", doc="lfw: pairs file (10-fold or simple format)")
    val_fraction: float = _opt(0.1, lo=0.0, hi=0.5, doc="val share when a dataset has no split")
    test_fraction: float = _opt(0.2, lo=0.0, hi=0.5,
                                doc="test share when a dataset has no split")
    max_images: int = _opt(0, lo=0, doc="at most this many images per split (0: all)")
    crop: int = _opt(0, lo=0, doc="centre square in source pixels; 0: CelebA 128, else largest")
    align: str = _opt("none", choices=ALIGN, doc="mtcnn: detect the face and crop around it")
    align_margin: float = _opt(0.2, lo=0.0, hi=2.0, doc="share of the face box added around")
    workers: int = _opt(2, lo=1, hi=64, doc="processes decoding images (1: in-process)")
    # At most Pillow's own limit (Image.MAX_IMAGE_PIXELS), above which it warns, then refuses.
    max_pixels: int = _opt(64_000_000, lo=1, hi=89_478_485,
                           doc="images with more pixels (from the header) are not decoded: "
                               "skipped or failed as on_error says")


@dataclass(frozen=True)
class TaskParams:
    """What the target classifier learns from ``dataset.target`` (see facebalance.task)."""

    kind: str = _opt("binary", choices=TASK_KINDS,
                     doc="binary: a 0/1 target; multiclass: classes 0..C-1; multitask: "
                         "dataset.target and extra_targets from one backbone; regression: "
                         "a number (age)")
    extra_targets: list = _opt([], doc="multitask: further target columns (binary or "
                                       "classes), one head each, the loss summed")
    loss: str = _opt("l1", choices=REGRESSION_LOSSES, doc="regression loss")
    age_bins: list = _opt([10, 20, 30, 40, 50, 60, 70, 80, 90],
                          doc="regression: group edges of the target (10-year groups, as in "
                              "Fighting Ageism); the groups balancing and metrics use")


@dataclass(frozen=True)
class ClassifierParams:
    """A classifier and how to train it (``train_attr`` and ``train_target``)."""

    arch: str = _opt("small_resnet", choices=ARCHS)
    width: int = _opt(16, lo=4, hi=512, doc="base channel width of small_resnet")
    weights: str = _opt("", doc="optional path to initial weights (state dict)")
    epochs: int = _opt(4, lo=1)
    batch_size: int = _opt(128, lo=1, hi=MAX_BATCH)
    lr: float = _opt(0.003, lo=0.0)
    weight_decay: float = _opt(0.0005, lo=0.0)
    augment: bool = _opt(True, doc="random flips and 2-pixel shifts")
    num_workers: int = _opt(0, lo=0, doc="DataLoader workers when images are streamed")
    cache_mb: int = _opt(2048, lo=0, doc="decode the whole train set in memory below this")
    seeds: list = _opt([0], doc="training seeds; several separate methods from seed noise")
    epoch_size: str = _opt("real", choices=("real", "index"),
                           doc="samples per epoch: the distinct real images (same compute "
                               "for every strategy) or every row of the training index")


@dataclass(frozen=True)
class AttrParams(ClassifierParams):
    """The attribute classifiers that label generated images (``train_attr``)."""

    balance: str = _opt("reweight", choices=("none", "reweight"),
                        doc="reweight: equal total weight in every target x protected cell, "
                            "so the labeller leans less on the correlated attribute")


@dataclass(frozen=True)
class AugmentParams:
    """How each strategy builds its training set from the real train split."""

    oversample_to: str = _opt("max", choices=("max", "mean"), doc="cell size to reach")
    reweight_mode: str = _opt("equal_cells", choices=REWEIGHT_MODES,
                              doc="which cell totals reweighting equalizes")
    synthetic_share: float = _opt(
        0.5, lo=0.0, doc="GAN strategies: total loss weight of the generated images as a "
                         "share of the real training set's (real images weigh 1); 0: every "
                         "pair at synthetic_weight, however many complement.n_pairs makes")
    synthetic_weight: float = _opt(1.0, lo=0.0, doc="loss weight of each generated image")
    label_margin: float = _opt(
        0.0, lo=0.0, hi=0.5, doc="drop pairs whose G(z) target score is within this of 0.5 "
                                 "(an unsure label from the attribute classifier)")
    confirm_flip: bool = _opt(False, doc="keep only pairs whose scores confirm the flip")
    mixup_alpha: float = _opt(0.4, lo=0.01, doc="mixup: Beta(a, a) of the mixing share")
    cutmix_alpha: float = _opt(1.0, lo=0.01, doc="cutmix: Beta(a, a) of the kept area")
    attention_max: float = _opt(4.0, lo=1.0, doc="val_attention: largest cell loss weight")


@dataclass(frozen=True)
class GanParams:
    """The DCGAN trained on the real train split, or a user's pretrained generator."""

    checkpoint: str = _opt("", doc="pretrained generator: facebalance, torch.export .pt2, ONNX "
                                    "or TorchScript (legacy)")
    latent_dim: int = _opt(128, lo=2)
    width: int = _opt(32, lo=4, hi=1024)
    steps: int = _opt(2000, lo=1)
    batch_size: int = _opt(64, lo=2, hi=MAX_BATCH)
    lr: float = _opt(0.0002, lo=0.0)
    beta1: float = _opt(0.5, lo=0.0, hi=1.0)
    ema: float = _opt(0.99, lo=0.0, hi=1.0)
    balance: str = _opt("auto", choices=GAN_BALANCE,
                        doc="oversample: train on a stream with every target x protected cell "
                            "equally often, so the generator learns less of the skew; auto: "
                            "oversample for a binary target and a binary protected attribute, "
                            "none otherwise")
    mapping_layers: int = _opt(0, lo=0, hi=8,
                               doc="> 0: a StyleGAN-style MLP maps z to w; boundaries, "
                                   "complements, inversion and interpolation then work in w")


@dataclass(frozen=True)
class SampleParams:
    """Latents drawn from the prior and generated (boundary fitting and the pair pool)."""

    n: int = _opt(12000, lo=2)
    batch_size: int = _opt(1024, lo=1, hi=MAX_BATCH)


@dataclass(frozen=True)
class BoundaryParams:
    """Linear attribute boundaries in latent space."""

    n_fit: int = _opt(10000, lo=2, doc="first latents used to fit (paper: 10,000)")
    n_val: int = _opt(2000, lo=0, doc="next latents held out to report accuracy")
    method: str = _opt("svm", choices=BOUNDARY_METHODS)
    c: float = _opt(1.0, lo=0.0)
    domain_dependent: bool = _opt(
        False, doc="also fit one target boundary per protected group; complements keep the "
                   "target score across them (the paper's extension)")


@dataclass(frozen=True)
class ComplementParams:
    """z/z' complements."""

    mode: str = _opt("paper", choices=COMPLEMENT_MODES)
    shell: str = _opt("none", choices=COMPLEMENT_SHELLS)
    max_step: float = _opt(4.0, lo=0.0, doc="longest step for shell: cap")
    selection: str = _opt("all", choices=("all", "targeted"),
                          doc="pairs from every pool latent, or from latents whose "
                              "complement lands in the rarest real cell")
    min_distance: float = _opt(2.5, lo=0.0,
                               doc="sources at least this far from the protected boundary "
                                   "(0 with selection all: the paper's sampled pool)")
    n_pairs: int = _opt(0, lo=0, doc="pairs to generate; 0: what augment.synthetic_share "
                                     "needs for the real training set, with room for the "
                                     "filters (x1.5)")
    batch_size: int = _opt(1024, lo=1, hi=MAX_BATCH)


@dataclass(frozen=True)
class InvertParams:
    """GAN inversion of the real images (latent_smote): an encoder, then optimisation."""

    method: str = _opt("both", choices=INVERT_METHODS,
                       doc="encoder: one pass; optimize: Adam from a random latent; both: "
                           "Adam from the encoder's latent")
    encoder_steps: int = _opt(1500, lo=1, doc="encoder training steps on (G(z), z)")
    encoder_batch_size: int = _opt(128, lo=2, hi=MAX_BATCH)
    encoder_lr: float = _opt(0.001, lo=0.0)
    encoder_width: int = _opt(32, lo=4, hi=1024)
    steps: int = _opt(30, lo=0, doc="Adam steps per image (optimize, both)")
    lr: float = _opt(0.05, lo=0.0)
    prior_weight: float = _opt(0.01, lo=0.0,
                               doc="weight of (|z|/sqrt(d) - 1)^2, keeping latents on the "
                                   "prior's shell")
    batch_size: int = _opt(512, lo=1, hi=MAX_BATCH, doc="images optimised together")
    n_test: int = _opt(1000, lo=0, doc="test images inverted for metrics/invert.json; 0: all")


@dataclass(frozen=True)
class InterpolateParams:
    """latent_smote / pixel_smote: fill every cell below the mean cell size."""

    contribution: list = _opt([0.1, 0.9], doc="range of the injected member's share "
                                              "(paper: 0.1-0.9)")
    batch_size: int = _opt(1024, lo=1, hi=MAX_BATCH)


@dataclass(frozen=True)
class GuidedParams:
    """guided: one latent direction per group; fresh latents walk into small groups."""

    n_fit: int = _opt(4000, lo=10, doc="generated images the group classifier labels to fit "
                                       "the directions")
    c: float = _opt(1.0, lo=0.0, doc="inverse regularization of the logistic regression")
    step: float = _opt(0.5, lo=0.0, doc="step length along a direction")
    max_steps: int = _opt(12, lo=0, doc="steps before a latent that never reaches its "
                                        "group is dropped")
    to: str = _opt("mean", choices=("mean", "max"),
                   doc="the group size every smaller group is brought to")
    batch_size: int = _opt(512, lo=1, hi=MAX_BATCH, doc="fresh latents walked at a time")


@dataclass(frozen=True)
class EvaluateParams:
    """Fairness evaluation on the balanced test split."""

    bootstrap: int = _opt(500, lo=10, hi=100_000)
    kl_bins: int = _opt(50, lo=2)
    batch_size: int = _opt(512, lo=1, hi=MAX_BATCH)


@dataclass(frozen=True)
class CompareParams:
    """The strategy comparison table and chart."""

    metrics: list = _opt([], doc="metrics in the table and chart; empty: the task kind's "
                             "headline metrics")
    references: list = _opt(["baseline", "gan_gz_only"],
                            doc="paired differences of every strategy against each of these")
    guard_tolerance: float = _opt(
        0.01, lo=0.0, hi=1.0, doc="validation guard: flag a strategy whose quality metric "
                                  "(AP, accuracy, MAE) is this share worse than the "
                                  "baseline's beyond noise, or whose fairness metric is worse")


@dataclass(frozen=True)
class EmbedParams:
    """Face embeddings for verification (``embed``): facenet-pytorch or dlib."""

    model: str = _opt("facenet", choices=EMBED_MODELS,
                      doc="facenet: InceptionResnetV1 or a smaller backbone; dlib: dlib's "
                          "pretrained 128-d ResNet descriptor (pip install '.[dlib]')")
    weights: str = _opt("train", doc="facenet: vggface2 | casia-webface (facenet-pytorch's "
                                     "cached files) | PATH (a state dict) | train (on the "
                                     "prepared training identities); ignored by dlib")
    backbone: str = _opt("small_resnet", choices=EMBED_BACKBONES,
                         doc="weights: train: the network trained (embedding = its layer "
                             "before the identity logits)")
    width: int = _opt(32, lo=4, hi=512, doc="small_resnet width (embedding size 4 x width)")
    input_size: int = _opt(160, lo=32, hi=512,
                           doc="inception_resnet_v1: faces are resized to this side")
    epochs: int = _opt(8, lo=1)
    batch_size: int = _opt(128, lo=2, hi=MAX_BATCH)
    lr: float = _opt(0.003, lo=0.0)
    weight_decay: float = _opt(0.0005, lo=0.0)
    augment: bool = _opt(True, doc="random flips and 2-pixel shifts while training")
    holdout: float = _opt(0.2, lo=0.0, hi=0.9,
                          doc="weights: train: share of the training identities kept out of "
                              "the embedder's training; the head's training pairs come from "
                              "them (pairs of seen identities look easier than new faces)")
    align: str = _opt("landmarks", choices=EMBED_ALIGN,
                      doc="dlib: landmarks (5-point, inside the prepared face crop) | detect "
                          "(dlib's face detector first) | none (the crop as it is)")
    embed_batch_size: int = _opt(256, lo=1, hi=MAX_BATCH, doc="images embedded at a time")
    cache_mb: int = _opt(2048, lo=0, doc="decode the training images in memory below this")


@dataclass(frozen=True)
class VerifyParams:
    """Pair verification (``verify``): pairs, the pair head and its metrics."""

    pairs_per_group: int = _opt(500, lo=1, doc="identity pairs: genuine pairs per group and "
                                               "split (as many impostors)")
    cross_share: float = _opt(0.25, lo=0.0, hi=4.0,
                              doc="impostor pairs across groups, as a share of the "
                                  "within-group ones (overall rates only)")
    groups: list = _opt(["skin", "male", "age_group"],
                        doc="columns whose per-group FMR/FNMR are reported; pairs are "
                            "balanced by the first")
    group_file: str = _opt("", doc="real data: CSV mapping identity to group columns")
    features: list = _opt(list(VERIFY_FEATURES), doc="pair features of the head")
    c: float = _opt(1.0, lo=0.0, doc="inverse regularization of the logistic head")
    fars: list = _opt([0.01, 0.001], doc="false accept rates the TAR is reported at")
    bootstrap: int = _opt(500, lo=10, hi=100_000, doc="resamples of the test pairs")


@dataclass(frozen=True)
class Params:
    """All sections of ``params.yaml``."""

    base: BaseParams = field(default_factory=BaseParams)
    dataset: DatasetParams = field(default_factory=DatasetParams)
    task: TaskParams = field(default_factory=TaskParams)
    presets: list = field(default_factory=lambda: ["blond_male"])
    # The default pipeline's strategies (params.yaml); the latent-inversion and guided ones
    # run in their presets (age_smote, skin4_guided) or when listed.
    strategies: list = field(default_factory=lambda: list(STRATEGIES[:8]))
    train_attr: AttrParams = field(default_factory=AttrParams)
    train_target: ClassifierParams = field(
        default_factory=lambda: ClassifierParams(epochs=3, seeds=[0, 1, 2]))
    augment: AugmentParams = field(default_factory=AugmentParams)
    gan: GanParams = field(default_factory=GanParams)
    sample: SampleParams = field(default_factory=SampleParams)
    boundaries: BoundaryParams = field(default_factory=BoundaryParams)
    complement: ComplementParams = field(default_factory=ComplementParams)
    invert: InvertParams = field(default_factory=InvertParams)
    interpolate: InterpolateParams = field(default_factory=InterpolateParams)
    guided: GuidedParams = field(default_factory=GuidedParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    compare: CompareParams = field(default_factory=CompareParams)
    embed: EmbedParams = field(default_factory=EmbedParams)
    verify: VerifyParams = field(default_factory=VerifyParams)


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_value(key: str, value: Any, ftype: Any, meta: Mapping[str, Any]) -> Any:
    """Validate one leaf value against its declared type and rule; return it normalized."""
    origin = typing.get_origin(ftype) or ftype
    if origin in (list,):
        if not isinstance(value, list):
            raise FacebalanceError(f"params: {key} = {value!r} is invalid; expected a list")
        return list(value)
    if ftype is bool:
        if not isinstance(value, bool):
            raise FacebalanceError(f"params: {key} = {value!r} is invalid; expected true or false")
        return value
    if ftype is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FacebalanceError(f"params: {key} = {value!r} is invalid; expected an integer")
    elif ftype is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FacebalanceError(f"params: {key} = {value!r} is invalid; expected a number")
        value = float(value)
        if not math.isfinite(value):  # NaN passes every < / > bound check below
            raise FacebalanceError(
                f"params: {key} = {value!r} is invalid; expected a finite number")
    elif ftype is str:
        if not isinstance(value, str):
            raise FacebalanceError(f"params: {key} = {value!r} is invalid; expected a string")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        valid = ", ".join(str(c) for c in choices)
        raise FacebalanceError(
            f"params: {key} = {value!r} is invalid; valid values: {valid}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if ftype is int and hi is None and choices is None:
        hi = MAX_COUNT
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise FacebalanceError(f"params: {key} = {value!r} is invalid; expected {bounds}")
    return value


def _resolve_type(ftype: Any) -> Any:
    if isinstance(ftype, types.UnionType):  # pragma: no cover - not used by the schema
        return typing.get_args(ftype)[0]
    return ftype


#: Keys that were replaced, and what to write instead (a params file of an older version).
RENAMED = {
    "dataset.p_target_protected0": "is now the first value of dataset.p_target_given_group "
                                   "(one P(target=1 | group) per group: [0.24, 0.02])",
    "dataset.p_target_protected1": "is now the second value of dataset.p_target_given_group "
                                   "(one P(target=1 | group) per group: [0.24, 0.02])",
}


def _build(cls: type, data: Any, prefix: str, default: Any) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise FacebalanceError(f"params: {prefix} must be a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if f"{prefix}.{key}" in RENAMED:
            raise FacebalanceError(f"params: '{prefix}.{key}' {RENAMED[f'{prefix}.{key}']}")
        if key not in names:
            raise FacebalanceError(
                f"params: unknown key '{prefix}.{key}'{_suggest(str(key), names)}; "
                f"valid keys in '{prefix}': {', '.join(names)}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _check_value(
                f"{prefix}.{f.name}", data[f.name], _resolve_type(hints[f.name]), f.metadata)
        else:
            values[f.name] = getattr(default, f.name)
    return cls(**values)


def _check_list(key: str, values: list, valid: Any, hint: str) -> None:
    """A non-empty list without repeats whose items all pass ``valid``; ``hint`` says
    what is expected in the error message."""
    if not values:
        raise FacebalanceError(f"params: {key} is empty; {hint}")
    for v in values:
        if not valid(v):
            raise FacebalanceError(f"params: {key} contains {v!r}; {hint}")
    if len(set(values)) != len(values):
        raise FacebalanceError(f"params: {key} = {values!r} repeats a value")


def _check_int_list(key: str, values: list) -> None:
    _check_list(key, values, lambda v: isinstance(v, int) and not isinstance(v, bool)
                and v >= 0, "expected non-negative integers")


def _check_choice_list(key: str, values: list, choices: tuple[str, ...]) -> None:
    _check_list(key, values, lambda v: v in choices, f"valid values: {', '.join(choices)}")


def parse_params(data: Mapping[str, Any]) -> Params:
    """Validate a params mapping (as loaded from ``params.yaml``) into :class:`Params`.

    Parameters
    ----------
    data
        The whole parsed YAML document.

    Returns
    -------
    Params
        Frozen, validated parameters; keys absent from ``data`` take their defaults.

    Raises
    ------
    FacebalanceError
        On an unknown section or key, or an invalid value; the message names the key and
        the valid keys or values.
    """
    if not isinstance(data, Mapping):
        raise FacebalanceError("params: the file must hold a mapping of sections")
    defaults = Params()
    sections = [f.name for f in dataclasses.fields(Params)]
    for key in data:
        if key not in sections:
            raise FacebalanceError(
                f"params: unknown section '{key}'{_suggest(str(key), sections)}; "
                f"valid sections: {', '.join(sections)}")
    built: dict[str, Any] = {}
    for f in dataclasses.fields(Params):
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(default):
            built[f.name] = _build(type(default), data.get(f.name), f.name, default)
        else:
            value = data.get(f.name, default)
            if not isinstance(value, list):
                raise FacebalanceError(f"params: {f.name} = {value!r} is invalid; expected a list")
            built[f.name] = list(value)
    params = Params(**built)
    _check_cross(params)
    return params


def _check_cross(p: Params) -> None:
    """Rules that involve several keys."""
    if not _DEVICE_RE.match(p.base.device):
        raise FacebalanceError(
            f"params: base.device = {p.base.device!r} is invalid; "
            "valid values: auto, cpu, cuda, cuda:N, mps")
    if p.base.precision == "fp16" and p.base.device in ("cpu", "mps"):
        raise FacebalanceError(FP16_NEEDS_CUDA.format(device=p.base.device))
    if p.base.nproc > 1:  # every rank needs rows of every batch (batch norm: at least 2)
        trained = ("train_attr", "train_target", "embed") + (() if p.gan.checkpoint else ("gan",))
        for section in trained:
            size = getattr(p, section).batch_size
            if size < 2 * p.base.nproc:
                raise FacebalanceError(
                    f"params: {section}.batch_size = {size} is too small for base.nproc = "
                    f"{p.base.nproc}; expected at least {2 * p.base.nproc} (2 rows per "
                    "process of every batch)")
    _check_choice_list("strategies", p.strategies, STRATEGIES)
    _check_choice_list("presets", p.presets, PRESETS)
    if p.dataset.name != "synthfaces" and not p.dataset.root:
        raise FacebalanceError(
            f"params: dataset.root is empty; dataset.name = {p.dataset.name!r} needs the "
            "folder the dataset ships in")
    _check_task(p)
    _check_verify(p)
    for section in ("train_attr", "train_target"):
        _check_int_list(f"{section}.seeds", getattr(p, section).seeds)
    if p.compare.metrics:
        _check_choice_list("compare.metrics", p.compare.metrics, task_metrics(p))
    if p.compare.references:
        _check_choice_list("compare.references", p.compare.references, STRATEGIES)
    pool = p.sample.n - p.boundaries.n_fit - p.boundaries.n_val
    if pool < 0:
        raise FacebalanceError(
            f"params: boundaries.n_fit + boundaries.n_val = "
            f"{p.boundaries.n_fit + p.boundaries.n_val} exceeds sample.n = {p.sample.n}")
    if p.complement.n_pairs == 0 and p.augment.synthetic_share == 0:
        raise FacebalanceError(
            "params: complement.n_pairs = 0 (auto) needs augment.synthetic_share > 0 "
            "(the budget it follows); set one of them")
    if p.augment.synthetic_share > 0 and p.augment.synthetic_weight == 0:
        raise FacebalanceError(
            "params: augment.synthetic_weight = 0 gives generated images no weight; a "
            "synthetic_share needs it > 0")
    for key in ("step", "c"):
        if getattr(p.guided, key) <= 0:
            raise FacebalanceError(
                f"params: guided.{key} = {getattr(p.guided, key)!r} is invalid; expected > 0")
    lohi = p.interpolate.contribution
    if (len(lohi) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                  for v in lohi) or not 0 <= lohi[0] <= lohi[1] <= 1):
        raise FacebalanceError(
            f"params: interpolate.contribution = {lohi!r} is invalid; expected [lo, hi] with "
            "0 <= lo <= hi <= 1 (paper: [0.1, 0.9])")
    uses_pool = p.complement.selection == "all" and p.complement.min_distance == 0
    if uses_pool and p.complement.n_pairs > pool:
        raise FacebalanceError(
            f"params: complement.n_pairs = {p.complement.n_pairs} exceeds the {pool} latents "
            "left after boundary fitting (sample.n - boundaries.n_fit - boundaries.n_val); "
            "raise sample.n or use complement.selection: targeted")


def _check_verify(p: Params) -> None:
    """The embed / verify sections."""
    e, v = p.embed, p.verify
    if e.model == "facenet" and not e.weights:
        raise FacebalanceError(
            "params: embed.weights is empty; expected vggface2, casia-webface, a path to a "
            "state dict, or train")
    if e.model == "facenet" and e.weights == "train" and e.holdout == 0:
        raise FacebalanceError(
            "params: embed.holdout = 0 leaves no training identity the embedder has not "
            "seen, so the pair head has no train pairs; expected > 0 (default 0.2)")
    if v.groups:  # empty: no per-group rates (real data without group columns)
        _check_list("verify.groups", v.groups, lambda g: isinstance(g, str) and g,
                    "expected column names")
    _check_choice_list("verify.features", v.features, VERIFY_FEATURES)
    _check_list("verify.fars", v.fars, lambda f: isinstance(f, float) and 0 < f < 1,
                "expected false accept rates between 0 and 1 (e.g. 0.01)")


def task_metrics(p: Params) -> tuple[str, ...]:
    """The metric keys the evaluation of ``p.task`` writes (valid ``compare.metrics``)."""
    extra = tuple(f"{m}_{col}" for col in p.task.extra_targets for m in HEAD_METRICS)
    return TASK_METRICS[p.task.kind] + (extra if p.task.kind == "multitask" else ())


def _check_task(p: Params) -> None:
    """The task spec against the dataset: which columns each kind can use."""
    d, t = p.dataset, p.task
    if t.kind == "multitask":
        _check_list("task.extra_targets", t.extra_targets,
                    lambda v: isinstance(v, str) and v and v != d.target,
                    f"expected column names other than dataset.target ({d.target!r})")
    elif t.extra_targets:
        raise FacebalanceError(
            f"params: task.extra_targets = {t.extra_targets!r} is set but task.kind is "
            f"{t.kind!r}; extra targets need kind: multitask")
    if t.kind == "regression":
        _check_list("task.age_bins", t.age_bins,
                    lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v), "expected finite numbers")
        if list(t.age_bins) != sorted(t.age_bins):
            raise FacebalanceError(
                f"params: task.age_bins = {t.age_bins!r} is invalid; expected increasing "
                "edges")
        if d.protected:
            raise FacebalanceError(
                f"params: dataset.protected = {d.protected!r} is set but task.kind is "
                "regression, whose groups are task.age_bins of the target; set "
                "dataset.protected: \"\"")
    elif not d.protected:
        raise FacebalanceError(
            f"params: dataset.protected is empty; task.kind = {t.kind!r} needs the column "
            "of the groups")
    elif d.target == d.protected and t.kind in ("binary",):
        raise FacebalanceError(
            f"params: dataset.target and dataset.protected are both {d.target!r}; "
            "they must differ for a binary task")
    _check_strategies_fit(p)
    if t.kind == "regression" and "reweight" in p.strategies and (
            p.augment.reweight_mode == "independence"):
        raise FacebalanceError(
            "params: augment.reweight_mode = 'independence' has nothing to do for regression "
            "(one label class); use equal_cells or within_class (both equalize the age "
            "groups)")
    if d.name == "synthfaces":
        _check_synth_task(p)


def _check_strategies_fit(p: Params) -> None:
    """Each listed strategy supports the task (its registry entry says which)."""
    d, t = p.dataset, p.task
    unfit: dict[str, list[str]] = {}
    for name in p.strategies:
        if t.kind not in REGISTRY[name].task_kinds:
            unfit.setdefault(REGISTRY[name].why, []).append(name)
    for why, names in unfit.items():
        kinds = " or ".join(REGISTRY[names[0]].task_kinds)
        raise FacebalanceError(
            f"params: strategies lists {', '.join(names)}, which {why}; task.kind is "
            f"{t.kind!r}: remove {'it' if len(names) == 1 else 'them'} or use task.kind: "
            f"{kinds}")
    two = [s for s in p.strategies if REGISTRY[s].binary_protected]
    if two and d.name == "synthfaces" and d.protected not in SYNTH_BINARY_ATTRIBUTES:
        raise FacebalanceError(
            f"params: strategies lists {', '.join(two)}, which need a binary protected "
            f"attribute; dataset.protected = {d.protected!r} has more than two groups (the "
            "z/z' complement mirrors a face across one hyperplane)")
    if p.gan.balance == "oversample" and t.kind != "binary" and any(
            REGISTRY[s].inputs for s in p.strategies):
        raise FacebalanceError(
            f"params: gan.balance = {p.gan.balance!r} balances target x protected cells of a "
            f"binary task; task.kind is {t.kind!r}: use gan.balance: none")


def _check_synth_task(p: Params) -> None:
    d, t = p.dataset, p.task
    targets = SYNTH_TARGETS[t.kind]
    if d.target not in targets:
        raise FacebalanceError(
            f"params: dataset.target = {d.target!r} is invalid for synthfaces with task.kind "
            f"{t.kind}; valid values: {', '.join(targets)}")
    for col in t.extra_targets:
        if col not in SYNTH_TARGETS["multitask"]:
            raise FacebalanceError(
                f"params: task.extra_targets contains {col!r}, which synthfaces does not "
                f"render; valid values: {', '.join(SYNTH_TARGETS['multitask'])}")
    if t.kind != "regression" and d.protected not in SYNTH_PROTECTED:
        raise FacebalanceError(
            f"params: dataset.protected = {d.protected!r} is invalid for synthfaces; valid "
            f"values: {', '.join(SYNTH_PROTECTED)}")
    if d.target == d.protected and d.target != "skin":
        raise FacebalanceError(
            f"params: dataset.target and dataset.protected are both {d.target!r}; synthfaces "
            "draws a target as its own groups only for skin")
    if d.target == "skin" and d.protected != "skin":
        raise FacebalanceError(
            "params: synthfaces draws a skin target with skin as its groups; set "
            "dataset.protected: skin (the per-class accuracy spread is the fairness measure)")
    if d.protected and d.target != "skin":  # the target is drawn given the group
        groups = 4 if d.protected == "skin" else 2
        if len(d.p_target_given_group) != groups:
            raise FacebalanceError(
                f"params: dataset.p_target_given_group = {d.p_target_given_group!r}; "
                f"protected: {d.protected} needs P(target=1 | group) for each of its "
                f"{groups} groups")
        for v in d.p_target_given_group:
            _check_value("dataset.p_target_given_group", v, float, {"lo": 0.0, "hi": 1.0})
    if d.protected == "skin" or d.target == "skin":
        if len(d.skin_shares) != 4:
            raise FacebalanceError(
                f"params: dataset.skin_shares = {d.skin_shares!r}; expected 4 shares")
        for v in d.skin_shares:
            _check_value("dataset.skin_shares", v, float, {"lo": 0.0, "hi": 1.0})
        if min(d.skin_shares) <= 0:
            raise FacebalanceError(
                f"params: dataset.skin_shares = {d.skin_shares!r} has an empty group; every "
                "share must be above 0 (a group absent from train cannot be learned or "
                "balanced)")
        if abs(sum(d.skin_shares) - 1.0) > 1e-6:
            raise FacebalanceError(
                f"params: dataset.skin_shares = {d.skin_shares!r} sums to "
                f"{sum(d.skin_shares):g}; expected 1")


def parse_yaml(text: str, path: str | Path) -> Any:
    """Parse a YAML document that has no aliases; errors in one line with line and column.

    Aliases (``&a`` ... ``*a``) are refused: nested ones expand exponentially in the tools
    that read params.yaml after us (DVC expands ``foreach: ${strategies}``), and a params
    file never needs them.
    """
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                raise FacebalanceError(
                    f"params: {path} line {mark.line + 1} column {mark.column + 1}: YAML "
                    f"alias *{event.anchor}; write the values out (aliases are refused: "
                    "nested ones expand without bound)")
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise FacebalanceError(f"params: {path}{where}: invalid YAML: "
                               f"{err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise FacebalanceError(f"params: {path}: invalid YAML: {first_line(err)}") from None


def read_params_data(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a params file, before validation (for applying changes to it).

    Raises
    ------
    FacebalanceError
        When the file cannot be read, is not UTF-8, is not valid YAML (line and column),
        uses aliases, is empty or is not a mapping; one line naming the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise FacebalanceError(f"params: cannot read {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1
        raise FacebalanceError(f"params: {path} line {line}: byte 0x{err.object[err.start]:02x} "
                               "is not UTF-8; save the file as UTF-8") from None
    data = parse_yaml(text, path)
    if data is None:
        raise FacebalanceError(f"params: {path} is empty; expected a mapping of sections "
                               "(base:, dataset:, ...)")
    if not isinstance(data, Mapping):
        raise FacebalanceError(f"params: {path} holds a {type(data).__name__} "
                               f"({str(data)[:40]!r}); expected a mapping of sections "
                               "(base:, dataset:, ...)")
    return dict(data)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file.

    Parameters
    ----------
    path
        YAML file, normally the repository's ``params.yaml``.

    Returns
    -------
    Params
        The validated parameters.

    Raises
    ------
    FacebalanceError
        When the file is missing, is not valid YAML, or fails validation.
    """
    data = read_params_data(path)
    try:
        return parse_params(data)
    except FacebalanceError as err:
        raise FacebalanceError(f"{path}: {err}") from None


def as_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a params dataclass (stored in checkpoints and metrics)."""
    return dataclasses.asdict(obj)


def from_params(cls: type[_T], section: Any, *, prefix: str = "", **values: Any) -> _T:
    """A lib config built from a params section, so the two never drift apart.

    Each field of ``cls`` takes the section's field ``prefix + name`` when there is one;
    ``values`` give the rest (derived seeds, sizes resolved from the data) and win.
    ``tests/test_defaults.py`` checks that the lib configs' own defaults equal the
    params' (for a user calling the library without params).

    Parameters
    ----------
    cls
        A dataclass of lib settings (``GanTrainConfig``, ``PairSpec``...).
    section
        A params section (``p.gan``) or any object with those attributes.
    prefix
        Prefix of ``cls``'s fields in the section (``encoder_`` in ``invert``).
    **values
        Fields set directly.

    Raises
    ------
    TypeError
        When ``values`` names a field ``cls`` does not have.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in names]
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {unknown[0]!r}")
    taken = {n: getattr(section, prefix + n) for n in names
             if n not in values and hasattr(section, prefix + n)}
    for n, v in taken.items():  # lists in params, tuples in the frozen lib configs
        if isinstance(v, list):
            taken[n] = tuple(v)
    return cls(**taken, **values)
