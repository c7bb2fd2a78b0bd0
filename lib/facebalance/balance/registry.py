"""The strategy registry: what each balancing strategy needs, declared once.

Every place that treats strategies differently reads :data:`REGISTRY`: params validation
(task kinds, a binary protected attribute), the augment stage (its inputs and the
``augment.*`` options its index reads), the training loop (mixup, cutmix, validation
attention and the val split that needs), and ``tests/balance/test_registry.py``, which checks
dvc.yaml's ``augment*`` and ``train_target`` stages against it. The algorithms live in
:mod:`facebalance.balance.strategies` (index builders, keyed by :attr:`Strategy.index`),
:mod:`facebalance.balance.inputs` and :mod:`facebalance.balance.attention`; this module runs
no algorithm, so :mod:`facebalance.config` (imported by every stage) reads it without making
every stage depend on the algorithms.

Adding a strategy: one :class:`Strategy` entry (plus an index builder in
``strategies.INDEX_BUILDERS`` when none fits), its name in an ``augment*`` stage's
``foreach`` in dvc.yaml, and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from facebalance.choices import TASK_KINDS
from facebalance.errors import FacebalanceError

#: The augment stage's inputs (``--pairs`` ...), each written by one upstream stage.
INPUT_STAGES = {
    "pairs": "complement",        # data/complement: pairs.parquet and the z' images
    "generated": "sample",        # data/generated/images: the G(z) images of the pairs
    "interpolated": "interpolate",  # data/interpolated: plan.parquet, latent/ and pixel/
    "guided": "guide",            # data/guided: guided.parquet and images/
    "partners": "complement_real",  # data/complement_real: partners.parquet and images/
}
#: How a strategy changes the training loop beyond its index.
LOOPS = ("plain", "mixup", "cutmix", "attention")

_GAN_WHY = ("need task.kind: binary (the z/z' complements flip one binary protected "
            "attribute while keeping one binary target)")


@dataclass(frozen=True)
class Strategy:
    """One balancing strategy.

    Attributes
    ----------
    name
        The name in ``params.yaml`` ``strategies`` and in file names.
    summary
        One line: what it does, and where it comes from.
    index
        How its training set index is built: a key of
        ``facebalance.balance.strategies.INDEX_BUILDERS``.
    stage
        The dvc.yaml stage that writes ``data/trainsets/<name>.parquet``.
    inputs
        The augment stage's inputs it reads (keys of :data:`INPUT_STAGES`).
    adds
        The table of added rows its index builder receives (``pairs``, ``interpolated``,
        ``guided``, ``partners``), empty for real rows only.
    images
        Which of the input's image folders holds its added images (``interpolate`` writes
        ``latent/`` and ``pixel/``); empty when the input has one.
    options
        The ``augment.*`` params its index reads.
    loop
        How it changes the training loop (:data:`LOOPS`): ``attention`` weights each cell's
        loss by its validation error each epoch, so it reads the val split.
    loop_options
        The ``augment.*`` params its training loop reads.
    task_kinds
        The ``task.kind`` values it supports.
    binary_protected
        Whether it needs a protected attribute with exactly two groups.
    why
        Why it is restricted to :attr:`task_kinds`: a relative clause of the params error
        ("strategies lists guided, which <why>; task.kind is ...").
    """

    name: str
    summary: str
    index: str
    stage: str
    inputs: tuple[str, ...] = ()
    adds: str = ""
    images: str = ""
    options: tuple[str, ...] = ()
    loop: str = "plain"
    loop_options: tuple[str, ...] = ()
    task_kinds: tuple[str, ...] = TASK_KINDS
    binary_protected: bool = False
    why: str = ""

    @property
    def needs_val(self) -> bool:
        """Whether training reads the validation split."""
        return self.loop == "attention"

    @property
    def requires(self) -> tuple[str, ...]:
        """The upstream stages whose outputs its augment stage reads."""
        return tuple(INPUT_STAGES[i] for i in self.inputs)


_PAIR_OPTIONS = ("synthetic_share", "synthetic_weight", "label_margin", "confirm_flip")

REGISTRY: dict[str, Strategy] = {s.name: s for s in (
    Strategy("baseline", "the real training set as it is", "real", "augment"),
    Strategy("reweight", "per-sample loss weights that remove the label-group correlation "
             "(augment.reweight_mode)", "reweight", "augment", options=("reweight_mode",)),
    Strategy("oversample", "repeat the rows of small (label, group) cells", "oversample",
             "augment", options=("oversample_to",)),
    Strategy("mixup", "mix every batch with its permutation (FairFace transfer study)", "real",
             "augment", loop="mixup", loop_options=("mixup_alpha",)),
    Strategy("cutmix", "paste a box of another image into every image of a batch", "real",
             "augment", loop="cutmix", loop_options=("cutmix_alpha",)),
    Strategy("val_attention", "weight each cell's loss by its validation error, each epoch",
             "real", "augment", loop="attention", loop_options=("attention_max",)),
    Strategy("gan_complement", "add generated z/z' pairs that flip the protected attribute "
             "and keep the target (Ramaswamy et al., CVPR 2021)", "pairs", "augment_gan",
             inputs=("pairs", "generated"), adds="pairs", options=_PAIR_OPTIONS,
             task_kinds=("binary",), binary_protected=True, why=_GAN_WHY),
    Strategy("gan_gz_only", "control: the G(z) of the same pairs at twice the weight, "
             "without their complements", "pairs_z", "augment_gan",
             inputs=("pairs", "generated"), adds="pairs", options=_PAIR_OPTIONS,
             task_kinds=("binary",), binary_protected=True, why=_GAN_WHY),
    Strategy("gan_complement_real", "add G(z') of inverted real faces, each with its real "
             "face's target label", "partners", "augment_real_pairs", inputs=("partners",),
             adds="partners", options=("synthetic_weight",), task_kinds=("binary",),
             binary_protected=True, why=_GAN_WHY),
    Strategy("latent_smote", "fill small cells with interpolations of inverted real faces "
             "in latent space (latent SMOTE)", "interpolated", "augment_smote",
             inputs=("interpolated",), adds="interpolated", images="latent"),
    Strategy("pixel_smote", "control: the same interpolations in pixel space",
             "interpolated", "augment_smote", inputs=("interpolated",), adds="interpolated",
             images="pixel"),
    Strategy("guided", "add faces generated along each group's latent direction, labelled "
             "by the target classifier", "guided", "augment_guided", inputs=("guided",),
             adds="guided", task_kinds=("binary",),
             why="labels its generated faces with the binary target classifier "
                 "(train_attr@target)"),
)}
#: Every strategy name, in the registry's order.
STRATEGIES = tuple(REGISTRY)


def strategy(name: str) -> Strategy:
    """The registry entry of ``name``.

    Raises
    ------
    FacebalanceError
        For an unknown name, listing the valid ones.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise FacebalanceError(
            f"unknown strategy {name!r}; valid: {', '.join(REGISTRY)}") from None


def using(names: list[str] | tuple[str, ...], **where: object) -> list[str]:
    """The names whose entries have every attribute of ``where`` equal to its value
    (``using(p.strategies, stage="augment_gan")``)."""
    return [n for n in names
            if all(getattr(REGISTRY[n], k) == v for k, v in where.items())]
