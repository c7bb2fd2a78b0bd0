"""The task spec: what the target classifier predicts, from which columns, in which groups.

One :class:`TaskSpec` describes every task facebalance trains and judges:

- ``binary``: one 0/1 target (one logit, BCE); groups are the protected column (2..K).
- ``multiclass``: one target with classes ``0..C-1`` (C logits, cross-entropy).
- ``multitask``: several targets (binary or classes) from one backbone, one head each,
  the loss summed over heads; the first target is the one balancing and metrics follow.
- ``regression``: one number (age); the head predicts ``(y - center) / scale`` and the
  loss is L1 or smooth L1 on that scale; groups are the target's ``age_bins``.

The spec is resolved once from params and the training labels (class counts, the
regression scale) and stored in every target checkpoint, so a model knows its heads.

*Groups* are the protected column's values ``0..K-1`` (K from the training split), or the
target's ``age_bins`` (regression); *cells* are what balancing equalizes and val_attention
weights: (primary label x group) for classification, the groups for regression. The spec
carries K (:attr:`TaskSpec.n_groups`), so no caller counts them again; :func:`cell_ids`
is the one place cells are numbered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facebalance.errors import FacebalanceError


@dataclass(frozen=True)
class Head:
    """One prediction head.

    Attributes
    ----------
    column
        The label column it predicts.
    kind
        ``binary`` (one logit), ``multiclass`` (``n_classes`` logits) or ``regression``.
    n_classes
        Classes of a ``multiclass`` head; 2 for ``binary``, 0 for ``regression``.
    center, scale
        Regression: the head outputs ``(y - center) / scale``.
    """

    column: str
    kind: str
    n_classes: int = 2
    center: float = 0.0
    scale: float = 1.0

    @property
    def width(self) -> int:
        """Number of network outputs of this head."""
        return self.n_classes if self.kind == "multiclass" else 1


@dataclass(frozen=True)
class TaskSpec:
    """A resolved task: its heads, the protected column, its groups and the regression
    bins. ``n_groups`` is K of the protected column (its values are ``0..K-1``), or
    ``len(age_bins) + 1`` for regression; 2 where there is no protected column."""

    kind: str = "binary"
    heads: tuple[Head, ...] = field(default_factory=lambda: (Head("label", "binary"),))
    protected: str = ""
    age_bins: tuple[float, ...] = ()
    loss: str = "l1"
    n_groups: int = 2

    def __post_init__(self) -> None:
        if self.kind == "regression":  # the groups are the bins, whatever was passed
            object.__setattr__(self, "n_groups", len(self.age_bins) + 1)

    @property
    def target(self) -> str:
        """The primary target column (balancing, attention and headline metrics)."""
        return self.heads[0].column

    @property
    def num_outputs(self) -> int:
        """Network outputs of all heads together."""
        return sum(h.width for h in self.heads)

    @property
    def columns(self) -> list[str]:
        """Label columns the task reads: every head's target, then the protected column."""
        cols = [h.column for h in self.heads]
        if self.protected and self.protected not in cols:
            cols.append(self.protected)
        return cols

    @property
    def n_cells(self) -> int:
        """How many cells :func:`cell_ids` numbers."""
        if self.kind == "regression":
            return self.n_groups
        return self.heads[0].n_classes * self.n_groups

    def group_names(self) -> list[str]:
        """Readable names of the groups ``0..n_groups-1`` (:func:`group_names`)."""
        return group_names(self, np.arange(self.n_groups))

    def cell_names(self) -> dict[int, str]:
        """Readable names of every cell: ``blond=1, male=0`` or the age bin."""
        groups = self.group_names()
        if self.kind == "regression":
            return dict(enumerate(groups))
        return {label * self.n_groups + g: f"{self.target}={label}, {groups[g]}"
                for label in range(self.heads[0].n_classes) for g in range(self.n_groups)}

    def slices(self) -> list[slice]:
        """Each head's columns of the network output."""
        out, start = [], 0
        for h in self.heads:
            out.append(slice(start, start + h.width))
            start += h.width
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint (loads with ``weights_only=True``)."""
        d = asdict(self)
        d["heads"] = [asdict(h) for h in self.heads]
        d["age_bins"] = list(self.age_bins)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], n_groups: int = 2) -> TaskSpec:
        """Rebuild a spec stored by :meth:`to_dict`; ``n_groups`` is K of a spec stored
        before specs carried it (the caller knows it from the data)."""
        return cls(kind=data["kind"], heads=tuple(Head(**h) for h in data["heads"]),
                   protected=data.get("protected", ""),
                   age_bins=tuple(data.get("age_bins", ())), loss=data.get("loss", "l1"),
                   n_groups=int(data.get("n_groups", n_groups)))


#: One binary head reading ``label`` (attribute classifiers, and the default task).
BINARY_TASK = TaskSpec()


def classifier_task(n_classes: int, column: str = "label") -> TaskSpec:
    """One binary head (``n_classes`` 2) or one ``n_classes``-way head: the task of an
    attribute classifier (a K-group protected classifier, an identity classifier)."""
    if n_classes == 2:
        return BINARY_TASK if column == "label" else TaskSpec(heads=(Head(column, "binary"),))
    return TaskSpec(kind="multiclass", heads=(Head(column, "multiclass", n_classes),))


def _classes(values: pd.Series, column: str) -> int:
    """Number of classes of an integer label column with values ``0..C-1``."""
    v = values.to_numpy()
    if not np.issubdtype(v.dtype, np.integer) or (len(v) and v.min() < 0):
        raise FacebalanceError(
            f"task: column {column!r} must hold class numbers 0, 1, ..., got {v.dtype} "
            f"values such as {v[:3].tolist()}")
    return int(v.max()) + 1 if len(v) else 0


def _head(column: str, kind: str, train: pd.DataFrame) -> Head:
    if column not in train.columns:
        raise FacebalanceError(
            f"task: the training split has no column {column!r}; columns: "
            f"{', '.join(c for c in train.columns if c not in ('image',))}")
    values = train[column]
    if kind == "regression":
        y = values.to_numpy(np.float64)
        return Head(column, "regression", 0, float(y.mean()), float(y.std()) or 1.0)
    n = _classes(values, column)
    if kind == "binary" or (kind == "any" and n <= 2):
        if n > 2:
            raise FacebalanceError(
                f"task: kind binary needs {column!r} to hold 0 and 1, it holds {n} classes; "
                "use task.kind: multiclass")
        return Head(column, "binary", 2)
    return Head(column, "multiclass", n)


def resolve_task(kind: str, target: str, protected: str, train: pd.DataFrame, *,
                 extra_targets: list[str] | tuple[str, ...] = (),
                 age_bins: list[float] | tuple[float, ...] = (),
                 loss: str = "l1") -> TaskSpec:
    """The task spec of params, with class counts and the regression scale from ``train``.

    Parameters
    ----------
    kind
        ``task.kind``.
    target, protected
        ``dataset.target`` and ``dataset.protected`` (empty for regression).
    train
        The training split's label columns.
    extra_targets
        ``task.extra_targets`` (multitask): a binary column gets one logit, others classes.
    age_bins, loss
        Regression groups and loss.

    Raises
    ------
    FacebalanceError
        When a column is missing or does not hold what the kind needs.
    """
    if kind == "regression":
        heads = (_head(target, "regression", train),)
        n_groups = len(age_bins) + 1
    else:
        if kind == "multitask":
            heads = tuple(_head(c, "any", train) for c in (target, *extra_targets))
        else:
            heads = (_head(target, kind, train),)
        n_groups = _groups(train, protected)
    return TaskSpec(kind=kind, heads=heads, protected=protected,
                    age_bins=tuple(float(b) for b in age_bins), loss=loss, n_groups=n_groups)


def _groups(train: pd.DataFrame, protected: str) -> int:
    """K of the protected column (values ``0..K-1``); 2 without one."""
    if not protected:
        return 2
    if protected not in train.columns:
        raise FacebalanceError(
            f"task: the training split has no column {protected!r} (dataset.protected); "
            f"columns: {', '.join(c for c in train.columns if c not in ('image',))}")
    groups = train[protected].to_numpy().astype(np.int64)  # as group_ids reads them
    if len(groups) and groups.min() < 0:
        raise FacebalanceError(
            f"task: column {protected!r} (dataset.protected) must hold group numbers 0, 1, "
            f"..., got {int(groups.min())}")
    return int(groups.max()) + 1 if len(groups) else 2


def param_columns(p: Any) -> list[str]:
    """The dataset columns a task of :class:`~facebalance.config.Params` reads: the target,
    the extra targets and the protected column, each once."""
    cols = [p.dataset.target, *p.task.extra_targets, p.dataset.protected]
    return list(dict.fromkeys(c for c in cols if c))


def task_from_params(p: Any, train: pd.DataFrame) -> TaskSpec:
    """:func:`resolve_task` from validated :class:`~facebalance.config.Params`."""
    return resolve_task(p.task.kind, p.dataset.target, p.dataset.protected, train,
                        extra_targets=p.task.extra_targets, age_bins=p.task.age_bins,
                        loss=p.task.loss)


def group_ids(task: TaskSpec, rows: pd.DataFrame) -> np.ndarray:
    """The group of each row: the protected column, or the target's age bin (regression)."""
    if task.kind == "regression":
        return np.digitize(rows[task.target].to_numpy(np.float64),
                           task.age_bins).astype(np.int64)
    return rows[task.protected].to_numpy().astype(np.int64)


def group_names(task: TaskSpec, groups: np.ndarray) -> list[str]:
    """Readable names of group values: ``male=1`` or ``age 30-39`` (regression)."""
    if task.kind != "regression":
        return [f"{task.protected}={g}" for g in groups]
    edges = list(task.age_bins)
    names = []
    for g in groups:
        lo = edges[g - 1] if g > 0 else None
        hi = edges[g] if g < len(edges) else None
        if lo is None:
            names.append(f"{task.target} <{hi:g}")
        elif hi is None:
            names.append(f"{task.target} {lo:g}+")
        else:
            names.append(f"{task.target} {lo:g}-{hi - 1:g}" if float(hi).is_integer()
                         and float(lo).is_integer() else f"{task.target} {lo:g}-{hi:g}")
    return names


def label_keys(task: TaskSpec) -> list[str]:
    """Names of the heads' label arrays in a training index: ``label``, ``label1``, ..."""
    return ["label"] + [f"label{k}" for k in range(1, len(task.heads))]


def task_labels(task: TaskSpec, rows: pd.DataFrame) -> pd.DataFrame:
    """``label`` (primary target), ``label1``... (further heads) and ``group`` of rows
    that carry the dataset's columns (the target may also be the protected column)."""
    out = {key: rows[h.column].to_numpy() for key, h in zip(label_keys(task), task.heads,
                                                            strict=True)}
    out["group"] = group_ids(task, rows)
    return pd.DataFrame(out, index=rows.index)


def cell_ids(task: TaskSpec, label: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The cell of each row: ``label * task.n_groups + group`` (classification) or the group
    (regression). Labels are the primary target's classes, groups from :func:`group_ids`.
    """
    group = np.asarray(group, dtype=np.int64)
    if task.kind == "regression":
        return group
    if len(group) and group.max() >= task.n_groups:
        raise FacebalanceError(
            f"task: group {int(group.max())} of {task.protected or 'the groups'} is not one "
            f"of the training split's 0..{task.n_groups - 1}")
    return np.asarray(label).astype(np.int64) * task.n_groups + group


def present_cells(label: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Dense numbers 0..k-1 of the (label, group) cells present, in :func:`cell_ids` order
    (label first, then group): what balancing counts rows in."""
    group = np.asarray(group, dtype=np.int64)
    ids = np.asarray(label).astype(np.int64) * (int(group.max(initial=0)) + 1) + group
    return np.unique(ids, return_inverse=True)[1].ravel()


IMAGE_REFS = ("path", "_file", "_row")


def task_rows(task: TaskSpec, refs: pd.DataFrame, keep: tuple[str, ...] = IMAGE_REFS
              ) -> pd.DataFrame:
    """Rows a training loop reads: the ``keep`` columns of shard references (image
    references, optionally ``id``) beside :func:`task_labels`."""
    return pd.concat([refs[list(keep)], task_labels(task, refs)], axis=1)


def read_task(p: Any, train_dir: str | Path, columns: Sequence[str] = ("id",)
              ) -> tuple[pd.DataFrame, TaskSpec]:
    """The prepared training split's references (``columns`` and the task's columns, with
    ``path``) and the task of :class:`~facebalance.config.Params` resolved from them
    (classes, regression scale, groups): what every stage that needs the task starts from."""
    from facebalance.data.shards import shard_refs

    train = shard_refs(train_dir, [*columns, *param_columns(p)])
    return train, task_from_params(p, train)
