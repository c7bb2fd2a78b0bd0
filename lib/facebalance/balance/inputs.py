"""A strategy's training set from the augment stage's inputs: the real training rows
(:func:`real_rows`), the rows the strategy adds, read from its upstream stages
(:func:`read_added_rows`), and the index built from both (:func:`strategy_index`).

Which inputs a strategy reads is declared in :mod:`facebalance.balance.registry`
(:attr:`~facebalance.balance.registry.Strategy.inputs`, written by
:data:`~facebalance.balance.registry.INPUT_STAGES`); this module reads them into the added
rows :func:`facebalance.balance.strategies.build_training_index` takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from facebalance.balance.registry import Strategy
from facebalance.balance.registry import strategy as strategy_spec
from facebalance.balance.strategies import (
    added_rows,
    build_training_index,
    pair_rows,
    select_pairs,
)
from facebalance.config import AugmentParams, Params
from facebalance.data.shards import read_parquet, shard_refs
from facebalance.errors import FacebalanceError
from facebalance.runtime import derive_seed
from facebalance.task import TaskSpec, read_task, task_rows

#: The table each added-rows input holds, and its columns.
_TABLES = {
    "interpolated": ("plan.parquet", None),
    "partners": ("partners.parquet", ["id", "label", "group"]),
    "guided": ("guided.parquet", ["id", "label", "group", "agrees"]),
}
_PAIR_COLUMNS = ["id_z", "id_zp", "label", "target_z", "protected_z", "protected_zp",
                 "flip_ok"]


@dataclass
class AddedRows:
    """What a strategy adds to the real rows.

    Attributes
    ----------
    rows
        The added rows (index columns), or None for a strategy of real rows only.
    image_dirs
        The shard folders their images are in (their digest goes into the index file, so
        new pixels under the same ids retrain).
    report
        The synthetic budget of the GAN pair strategies (pairs available, kept, used).
    """

    rows: pd.DataFrame | None = None
    image_dirs: list[Path] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def _refs(table: pd.DataFrame, images: Path) -> pd.DataFrame:
    """Image references of a folder; an empty table has no shards to read."""
    if not len(table):
        return pd.DataFrame(columns=["path", "_file", "_row", "id"])
    return shard_refs(images, ["id"])


def read_added_rows(spec: Strategy, paths: dict[str, Path | None], *, n_real: int,
                    augment: AugmentParams) -> AddedRows:
    """The rows ``spec`` adds, read from its inputs.

    Parameters
    ----------
    spec
        The strategy's registry entry.
    paths
        The augment stage's input folders by input name (``pairs``, ``generated``...);
        every input the strategy declares must be given.
    n_real
        Real training images (the GAN pairs' budget is a share of them).
    augment
        The ``augment`` params (the pair budget and filters).
    """
    missing = [i for i in spec.inputs if paths.get(i) is None]
    if missing:
        raise FacebalanceError(
            f"augment: {spec.name} needs " + " and ".join(f"--{i}" for i in missing))
    if not spec.adds:
        return AddedRows()
    if spec.adds == "pairs":
        pairs, generated = paths["pairs"], paths["generated"]
        dirs = [d for d in (generated, pairs / "images", pairs / "images_z") if d.exists()]
        refs = pd.concat([shard_refs(d, ["id"]) for d in dirs], ignore_index=True)
        table = read_parquet(pairs / "pairs.parquet", columns=_PAIR_COLUMNS)
        chosen, report = select_pairs(table, n_real=n_real, share=augment.synthetic_share,
                                      weight=augment.synthetic_weight,
                                      label_margin=augment.label_margin,
                                      confirm_flip=augment.confirm_flip)
        return AddedRows(pair_rows(chosen, refs), dirs, report)
    root = paths[spec.adds]
    name, columns = _TABLES[spec.adds]
    table = read_parquet(root / name, columns=columns)
    if spec.adds == "guided":
        # Only faces the group classifier still puts in their group as stored (PNG).
        table = table[table["agrees"]].drop(columns="agrees")
    images = root / (spec.images or "images")
    return AddedRows(added_rows(table, _refs(table, images), str(root / name)), [images])


def real_rows(p: Params, train_dir: str | Path) -> tuple[pd.DataFrame, TaskSpec]:
    """The real training split as index rows (image references, ``id``, labels, ``group``)
    and the task resolved from it (classes, groups): what every strategy starts from."""
    train, task = read_task(p, train_dir)
    return task_rows(task, train, ("path", "_file", "_row", "id")), task


def strategy_index(strategy: str, real: pd.DataFrame, task: TaskSpec, p: Params,
                   added: AddedRows | None = None) -> pd.DataFrame:
    """A strategy's training set index (:func:`build_training_index`) from the real rows
    (:func:`real_rows`), the rows its inputs add (:func:`read_added_rows`) and the params'
    ``augment`` options, with the pipeline's seed."""
    spec = strategy_spec(strategy)
    extra = {spec.adds: added.rows} if spec.adds and added is not None else {}
    return build_training_index(strategy, real, task=task, seed=derive_seed(p.base.seed, 3),
                                augment=p.augment, **extra)
