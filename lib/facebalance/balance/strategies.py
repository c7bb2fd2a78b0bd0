"""Balancing strategies: each turns the real training rows into a *training set index*.

A training set index is a table with one row per training example: image references
(``path``, ``_file``, ``_row``), ``id``, ``label`` (the primary target: 0/1, a class or a
number), ``label1``... (further multitask targets), ``group`` (the protected group, or the
age bin of a regression target), ``weight`` and ``source`` (``real``, ``generated``,
``interpolated``). Balancing works on cells (:func:`facebalance.task.cell_ids`): (label x
group) for classification, the groups for regression. Oversampling
repeats rows; reweighting changes weights; the GAN strategies add rows that point at
generated shards. ``train_target`` reads this table; the training-time strategies
(``mixup``, ``cutmix``, ``val_attention``) keep the real rows and change the training
loop instead (:func:`training_options`).

What each strategy needs and which builder it uses is declared once, in
:mod:`facebalance.balance.registry`; the options' defaults are ``params.yaml``'s
(:class:`facebalance.config.AugmentParams`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from facebalance.balance.registry import Strategy, strategy
from facebalance.choices import REWEIGHT_MODES
from facebalance.config import AugmentParams
from facebalance.errors import FacebalanceError
from facebalance.task import BINARY_TASK, TaskSpec, label_keys, present_cells

log = logging.getLogger(__name__)

INDEX_COLUMNS = ("path", "_file", "_row", "id", "label", "group", "weight", "source")


def cell_counts(label: np.ndarray, group: np.ndarray) -> pd.Series:
    """Number of rows in each (label, group) cell."""
    return pd.Series(1, index=pd.MultiIndex.from_arrays([label, group])).groupby(
        level=[0, 1]).sum()


def reweight_weights(label: np.ndarray, group: np.ndarray,
                     mode: str = "equal_cells") -> np.ndarray:
    """Per-sample weights that remove the label-group correlation (mean weight 1).

    Parameters
    ----------
    label, group
        Target labels and protected groups of the training rows.
    mode
        ``equal_cells``: every (label, group) cell gets the same total weight.
        ``independence``: Kamiran–Calders, ``w = P(y) P(g) / P(y, g)``, which makes label
        and group independent while keeping each marginal.
        ``within_class``: gan-debiasing ``compute_weight``, ``w = n(y) / (2 n(y, g))``:
        the groups weigh the same within each class, class totals unchanged.

    Returns
    -------
    numpy.ndarray
        float32 weights, normalized to mean 1.
    """
    label, group = np.asarray(label), np.asarray(group)
    cell = present_cells(label, group)
    n_cell = np.bincount(cell)[cell].astype(np.float64)
    n = len(label)
    if mode == "equal_cells":
        w = n / (len(np.unique(cell)) * n_cell)
    elif mode == "independence":
        n_y = pd.Series(label).map(pd.Series(label).value_counts()).to_numpy(np.float64)
        n_g = pd.Series(group).map(pd.Series(group).value_counts()).to_numpy(np.float64)
        w = n_y * n_g / (n * n_cell)
    elif mode == "within_class":
        n_y = pd.Series(label).map(pd.Series(label).value_counts()).to_numpy(np.float64)
        n_groups = len(np.unique(group))
        w = n_y / (n_groups * n_cell)
    else:
        raise FacebalanceError(
            f"unknown reweight mode {mode!r}; valid: {', '.join(REWEIGHT_MODES)}")
    return (w / w.mean()).astype(np.float32)


def oversample_rows(label: np.ndarray, group: np.ndarray, seed: int,
                    to: str = "max") -> np.ndarray:
    """Row indices with members of small (label, group) cells repeated.

    Each cell is brought to the size of the largest cell (``to="max"``) or the mean cell
    size (``"mean"``, cells above it are kept whole): every row is repeated
    ``target // n`` times and ``target % n`` further rows are drawn without replacement.

    Returns
    -------
    numpy.ndarray
        Indices into the input rows, sorted, with repeats.
    """
    label, group = np.asarray(label), np.asarray(group)
    cell = present_cells(label, group)
    sizes = np.bincount(cell)
    target = int(sizes.max()) if to == "max" else int(np.ceil(sizes.mean()))
    rng = np.random.default_rng(seed)
    out = []
    for c, size in enumerate(sizes):
        rows = np.flatnonzero(cell == c)
        if size >= target:
            out.append(rows)
            continue
        reps, rest = divmod(target, size)
        out.append(np.repeat(rows, reps))
        out.append(rng.choice(rows, size=rest, replace=False))
    return np.sort(np.concatenate(out))


def gan_stream_balance(setting: str, task_kind: str, protected: np.ndarray | None) -> str:
    """How the GAN's training stream is drawn: ``none`` or ``oversample`` (every target x
    protected cell equally often).

    ``auto`` oversamples for a binary target and a protected attribute with two groups,
    where it was measured over several synthfaces settings (README: the latent target and
    protected boundaries disentangle and the GAN strategies lower DEO more); with any other
    task the GAN trains on the data as it is.
    """
    if setting != "auto":
        return setting
    binary_groups = protected is not None and len(np.unique(protected)) == 2
    return "oversample" if task_kind == "binary" and binary_groups else "none"


def gan_stream(read: Callable[[list[str]], pd.DataFrame], setting: str, task_kind: str,
               target: str, protected: str, seed: int) -> tuple[pd.DataFrame, str]:
    """The rows the GAN trains on, and how they were drawn (:func:`gan_stream_balance`).

    Parameters
    ----------
    read
        Reads the training split's columns (``shard_refs`` of ``train/``): labels are read
        only when the stream uses them.
    setting
        ``gan.balance``.
    task_kind, target, protected
        The task (``task.kind``, ``dataset.target``, ``dataset.protected``).
    seed
        Seed of the oversampling draws.

    Returns
    -------
    rows, balance
        Image references (repeated for ``oversample``) and ``none`` or ``oversample``.
    """
    # A regression task has no protected column; the labels are read only when needed.
    labelled = task_kind == "binary" and bool(protected) and setting != "none"
    refs = read(["id", target, protected] if labelled else ["id"])
    balance = gan_stream_balance(setting, task_kind,
                                 refs[protected].to_numpy() if labelled else None)
    if balance == "oversample":  # every (target, protected) cell equally often
        refs = refs.iloc[oversample_rows(refs[target].to_numpy(), refs[protected].to_numpy(),
                                         seed)]
    return refs, balance


def _cell_label(frame: pd.DataFrame, task: TaskSpec) -> np.ndarray:
    """The label part of a cell: the primary target's class; one class for regression,
    whose cells are its groups (age bins)."""
    if task.kind == "regression":
        return np.zeros(len(frame), dtype=np.int64)
    return frame["label"].to_numpy()


def _real(frame: pd.DataFrame, added: pd.DataFrame | None, task: TaskSpec, seed: int,
          options: dict[str, Any]) -> pd.DataFrame:
    return frame.assign(weight=np.float32(1.0))


def _reweight(frame: pd.DataFrame, added: pd.DataFrame | None, task: TaskSpec, seed: int,
              options: dict[str, Any]) -> pd.DataFrame:
    mode = options["reweight_mode"]
    if task.kind == "regression" and mode == "independence":
        raise FacebalanceError(
            "augment.reweight_mode = 'independence' has nothing to do for regression (one "
            "label class); use equal_cells or within_class (both equalize the age groups)")
    return frame.assign(weight=reweight_weights(_cell_label(frame, task), frame["group"],
                                                mode))


def _oversample(frame: pd.DataFrame, added: pd.DataFrame | None, task: TaskSpec, seed: int,
                options: dict[str, Any]) -> pd.DataFrame:
    rows = oversample_rows(_cell_label(frame, task), frame["group"], seed,
                           options["oversample_to"])
    return frame.iloc[rows].reset_index(drop=True).assign(weight=np.float32(1.0))


#: Pairs ``complement.n_pairs: 0`` generates per pair the budget needs: room for the pairs
#: that ``label_margin`` and ``confirm_flip`` drop (together about 20-30% on synthfaces).
PAIR_HEADROOM = 1.5


def budget_pairs(n_real: int, share: float, weight: float) -> int:
    """Pairs whose two images weigh ``share`` of the real training set's total loss weight.

    Real rows weigh 1, so ``share * n_real`` is the synthetic total; each pair adds two
    images of weight ``weight``. ``share`` 0 means no budget (every pair, the old rule).
    """
    if share <= 0:
        return 0
    if weight <= 0:
        raise FacebalanceError("augment.synthetic_weight must be > 0 with a synthetic_share")
    return max(1, round(share * n_real / (2.0 * weight)))


def auto_n_pairs(n_real: int, share: float, weight: float) -> int:
    """Pairs the complement stage generates when ``complement.n_pairs`` is 0 (auto)."""
    need = budget_pairs(n_real, share, weight)
    if need == 0:
        raise FacebalanceError(
            "complement.n_pairs: 0 (auto) needs augment.synthetic_share > 0; set one or both")
    return int(np.ceil(PAIR_HEADROOM * need))


def select_pairs(pairs: pd.DataFrame, *, n_real: int, share: float, weight: float,
                 label_margin: float = 0.0, confirm_flip: bool = False
                 ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The pairs a GAN strategy trains on, and a report of what was dropped and why.

    Filters first, then the budget: pairs whose G(z) target score lies within
    ``label_margin`` of 0.5 are dropped (their label is a coin flip of a classifier that is
    itself biased), then, with ``confirm_flip``, those whose scores do not confirm the flip;
    of the rest the first :func:`budget_pairs` are kept (pairs are in random order).

    Parameters
    ----------
    pairs
        ``pairs.parquet`` rows (``target_z``, ``flip_ok``, ...), in their written order.
    n_real
        Real training images (each weighs 1).
    share, weight
        ``augment.synthetic_share`` and ``augment.synthetic_weight``.
    label_margin, confirm_flip
        The filters.
    """
    report: dict[str, Any] = {"n_real": int(n_real), "pairs_available": len(pairs)}
    keep = np.ones(len(pairs), dtype=bool)
    if label_margin > 0:
        keep &= np.abs(pairs["target_z"].to_numpy(np.float64) - 0.5) >= label_margin
        report["label_margin_kept"] = float(keep.mean()) if len(keep) else 0.0
    if confirm_flip:
        ok = pairs["flip_ok"].to_numpy(bool)
        report["confirm_flip_kept"] = float(ok[keep].mean()) if keep.any() else 0.0
        keep &= ok
    chosen = pairs[keep]
    if len(pairs) and chosen.empty:  # training on no synthetic image is not this strategy
        raise FacebalanceError(
            f"augment: none of the {len(pairs)} z/z' pairs passes the filters "
            f"(label_margin {label_margin:g}, confirm_flip {confirm_flip}); lower "
            "augment.label_margin or set augment.confirm_flip: false")
    need = budget_pairs(n_real, share, weight)
    if need:
        if len(chosen) < need:
            log.warning("augment: %d pairs pass the filters, the budget asks for %d "
                        "(synthetic_share %.3g of %d real images); using all of them",
                        len(chosen), need, share, n_real)
        chosen = chosen.iloc[:need]
    report["pairs_used"] = len(chosen)
    return chosen, report


def synthetic_summary(index: pd.DataFrame) -> dict[str, Any]:
    """Generated rows of a training set index and their share of the real rows' weight."""
    gen = (index["source"] != "real").to_numpy()
    w = index["weight"].to_numpy(np.float64)
    return {"synthetic_images": int(gen.sum()),
            "synthetic_share": float(w[gen].sum() / max(w[~gen].sum(), 1e-12))}


def pair_rows(pairs: pd.DataFrame, refs: pd.DataFrame, *, confirm_flip: bool = False
              ) -> pd.DataFrame:
    """Index rows of the images of a z/z' pair set (``member`` is ``z`` or ``zp``).

    Both images of a pair get the target label of ``G(z)``; ``group`` is the protected
    prediction of each image. ``confirm_flip`` keeps only pairs whose classifier scores
    show the protected attribute flipped and the target kept.

    Parameters
    ----------
    pairs
        ``pairs.parquet`` of the complement stage (without latents).
    refs
        Image references (``path``, ``_file``, ``_row``, ``id``) of every shard directory
        holding the pair images.
    """
    if confirm_flip:
        pairs = pairs[pairs["flip_ok"]]
    where = refs.drop_duplicates("id").set_index("id")[["path", "_file", "_row"]]
    rows = []
    for member, id_col, score_col in (("z", "id_z", "protected_z"),
                                      ("zp", "id_zp", "protected_zp")):
        ids = pairs[id_col].to_numpy()
        missing = ~pd.Index(ids).isin(where.index)
        if missing.any():
            raise FacebalanceError(
                f"pair image {ids[missing][0]!r} is in pairs.parquet but in no image shard")
        part = where.loc[ids].reset_index()
        part["label"] = pairs["label"].to_numpy()
        part["group"] = (pairs[score_col].to_numpy() >= 0.5).astype(np.int8)
        part["member"] = member
        rows.append(part)
    return pd.concat(rows, ignore_index=True)


def _with_synthetic(frame: pd.DataFrame, synth: pd.DataFrame, weight: float) -> pd.DataFrame:
    synth = synth[[c for c in INDEX_COLUMNS if c not in ("weight", "source")]]
    return pd.concat([frame.assign(weight=np.float32(1.0)),
                      synth.assign(weight=np.float32(weight), source="generated")],
                     ignore_index=True)


def _pairs(frame: pd.DataFrame, added: pd.DataFrame | None, task: TaskSpec, seed: int,
           options: dict[str, Any]) -> pd.DataFrame:
    return _with_synthetic(frame, added, options["synthetic_weight"])


def _pairs_z(frame: pd.DataFrame, added: pd.DataFrame | None, task: TaskSpec, seed: int,
             options: dict[str, Any]) -> pd.DataFrame:
    # Control: the G(z) of the same pairs at twice the weight, so the total synthetic
    # weight equals gan_complement's; only the complements are missing.
    return _with_synthetic(frame, added[added["member"] == "z"],
                           2 * options["synthetic_weight"])


def added_rows(plan: pd.DataFrame, refs: pd.DataFrame, source: str = "plan.parquet"
                      ) -> pd.DataFrame:
    """Index rows of added images: a latent_smote / pixel_smote set, or the guided images.

    Parameters
    ----------
    plan
        ``plan.parquet`` of the interpolate stage, or ``guided.parquet`` (without ``z``):
        ``id``, ``label``..., ``group``.
    refs
        Image references (``path``, ``_file``, ``_row``, ``id``) of the chosen image set.
    source
        The table's file, for the error message.
    """
    where = refs.drop_duplicates("id").set_index("id")[["path", "_file", "_row"]]
    ids = plan["id"].to_numpy()
    missing = ~pd.Index(ids).isin(where.index)
    if missing.any():
        raise FacebalanceError(
            f"image {ids[missing][0]!r} is in {source} but in no image shard of "
            f"{sorted(set(refs['path'].astype(str))) or 'its (empty) image folder'}")
    return pd.concat([where.loc[ids].reset_index(), plan.drop(columns="id").reset_index(
        drop=True)], axis=1)


def _with_rows(frame: pd.DataFrame, rows: pd.DataFrame, source: str) -> pd.DataFrame:
    # New samples weigh 1 like the real ones: the groups are filled by count (both papers).
    cols = [c for c in frame.columns if c not in ("weight", "source")]
    return pd.concat([frame.assign(weight=np.float32(1.0)),
                      rows[cols].assign(weight=np.float32(1.0), source=source)],
                     ignore_index=True)


def _interpolated(frame: pd.DataFrame, added: pd.DataFrame | None, task: TaskSpec,
                  seed: int, options: dict[str, Any]) -> pd.DataFrame:
    return _with_rows(frame, added, "interpolated")


def _guided(frame: pd.DataFrame, added: pd.DataFrame | None, task: TaskSpec, seed: int,
            options: dict[str, Any]) -> pd.DataFrame:
    return _with_rows(frame, added, "generated")


def _partners(frame: pd.DataFrame, added: pd.DataFrame | None, task: TaskSpec, seed: int,
              options: dict[str, Any]) -> pd.DataFrame:
    # G(z') of inverted real faces, each with its real face's target label.
    return _with_synthetic(frame, added, options["synthetic_weight"])


#: Index builders by :attr:`facebalance.balance.registry.Strategy.index`: each gets the real
#: rows, the added rows (or None), the task, the seed and the strategy's declared options.
INDEX_BUILDERS: dict[str, Callable[..., pd.DataFrame]] = {
    "real": _real,
    "reweight": _reweight,
    "oversample": _oversample,
    "pairs": _pairs,
    "pairs_z": _pairs_z,
    "partners": _partners,
    "interpolated": _interpolated,
    "guided": _guided,
}
#: What each added table is, for the error when it is missing.
_ADDED = {"pairs": "the z/z' pairs (--pairs)",
          "partners": "the complements of the real images (--partners)",
          "interpolated": "the interpolated images (--interpolated)",
          "guided": "the guided images (--guided)"}


def strategy_options(spec: Strategy, names: tuple[str, ...], given: dict[str, Any],
                     augment: AugmentParams | None) -> dict[str, Any]:
    """The values of a strategy's declared ``augment.*`` options: given ones first, then
    ``augment`` (the params), then the params' defaults; an undeclared name is an error."""
    unknown = [k for k in given if k not in names]
    if unknown:
        raise FacebalanceError(
            f"strategy {spec.name!r} takes no option {unknown[0]!r}; its options: "
            f"{', '.join(names) or 'none'}")
    source = augment if augment is not None else AugmentParams()
    return {k: given[k] if k in given else getattr(source, k) for k in names}


def training_options(name: str, augment: AugmentParams | None = None, **given: Any
                     ) -> dict[str, object]:
    """How a strategy changes the training loop (``TrainConfig`` fields), beyond its index.

    ``mixup`` / ``cutmix`` mix every batch (FairFace transfer-learning study);
    ``val_attention`` weights cells by their validation error (and needs the val split:
    :attr:`~facebalance.balance.registry.Strategy.needs_val`); the others train as the
    baseline does.

    Parameters
    ----------
    name
        The strategy.
    augment
        The ``augment`` params (default: params.yaml's defaults).
    **given
        Overrides of the strategy's loop options (``mixup_alpha=0.2``).
    """
    spec = strategy(name)
    opts = strategy_options(spec, spec.loop_options, given, augment)
    if spec.loop in ("mixup", "cutmix"):
        return {"mix": spec.loop, "mix_alpha": opts[f"{spec.loop}_alpha"]}
    if spec.loop == "attention":
        return {"attention_max": opts["attention_max"]}
    return {}


def build_training_index(name: str, real: pd.DataFrame, *, task: TaskSpec = BINARY_TASK,
                         seed: int = 0, augment: AugmentParams | None = None,
                         **given: Any) -> pd.DataFrame:
    """The training set index of a strategy built from the real training rows.

    Parameters
    ----------
    name
        A strategy of :data:`facebalance.balance.registry.REGISTRY`.
    real
        Real training rows with ``path``, ``_file``, ``_row``, ``id``, ``group`` and the
        task's label columns (``label``, ``label1``...; see
        :func:`facebalance.task.task_labels`).
    task
        What the labels are; regression balances the age bins (``group``) alone.
    seed
        Random draws (oversampling).
    augment
        The ``augment`` params the strategy's options come from (default: params.yaml's
        defaults).
    **given
        The added rows the strategy declares (``pairs`` from :func:`pair_rows`,
        ``interpolated`` / ``guided`` / ``partners`` from :func:`added_rows`) and overrides
        of its declared options (``reweight_mode="independence"``). Anything else is an
        error, so a misspelled option is never ignored.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`INDEX_COLUMNS` (and ``label1``... for multitask).
    """
    spec = strategy(name)
    added = given.pop(spec.adds, None) if spec.adds else None
    if spec.adds and added is None:
        raise FacebalanceError(f"strategy {name!r} needs {_ADDED[spec.adds]}")
    options = strategy_options(spec, spec.options, given, augment)
    extra = label_keys(task)[1:]
    needed = [c for c in INDEX_COLUMNS if c not in ("weight", "source")] + extra
    missing = [c for c in needed if c not in real.columns]
    if missing:
        raise FacebalanceError(f"training rows lack columns {missing}")
    out = INDEX_BUILDERS[spec.index](real[needed].assign(source="real"), added, task, seed,
                                     options)
    out["weight"] = out["weight"].astype(np.float32)
    return out[list(INDEX_COLUMNS) + extra]
