"""Write a dataset's train/val/test image shards (the ``prepare`` stage)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from facebalance.config import DatasetParams, Params
from facebalance.data import synthfaces
from facebalance.data.shards import ShardWriter, atomic_directory, encode_png_batch
from facebalance.errors import FacebalanceError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def synthfaces_specs(p: DatasetParams) -> dict[str, synthfaces.SplitSpec]:
    """Split specs from params: skewed train; val and test balanced (equal cells, uniform
    ages) or, with ``eval_split: natural``, drawn like train."""
    common = {"target": p.target, "protected": p.protected,
              "images_per_identity": p.images_per_identity,
              "skin_shares": tuple(p.skin_shares), "age_profile": p.age_profile,
              "p_protected": p.p_protected, "blond_cue": p.blond_cue,
              "p_target_given": tuple(p.p_target_given_group)}
    balanced = p.eval_split == "balanced"
    return {
        "train": synthfaces.SplitSpec(n=p.n_train, **common),
        "val": synthfaces.SplitSpec(n=p.n_val, balanced=balanced, **common),
        "test": synthfaces.SplitSpec(n=p.n_test, balanced=balanced, **common),
    }


def write_synthfaces(p: DatasetParams, out: Path, *, seed: int, image_size: int,
                     progress: bool = True, device: str = "cpu", **_: Any) -> dict[str, Any]:
    """Render synthfaces splits into ``out/{train,val,test}`` shard directories.

    Parameters
    ----------
    p
        Dataset params (sizes, skew, target/protected, shard layout).
    out
        Parent directory of the three split directories.
    seed
        ``base.seed``; each split and each row group get their own derived stream, so the
        output does not depend on chunking.
    image_size
        Image side in pixels.
    progress
        Show a tqdm bar.
    device
        Unused: the renderer is numpy (every loader takes the same arguments).

    Returns
    -------
    dict
        Summary for ``metrics/prepare.json``: rows and target x protected cell counts per
        split.
    """
    summary: dict[str, Any] = {}
    tables = {split: synthfaces.sample_attributes(spec, np.random.SeedSequence([seed, k]), split)
              for k, (split, spec) in enumerate(synthfaces_specs(p).items())}
    for split, table in tables.items():  # before rendering anything
        check_split_labels(table, p.target, p.protected, split, "synthfaces (dataset.p_*)")
    for k, (split, table) in enumerate(tables.items()):
        chunk = p.row_group_size
        bar = tqdm(total=len(table), desc=f"prepare {split}", disable=not progress,
                   unit="img", mininterval=2.0)
        with ShardWriter(out / split, p.rows_per_file, p.row_group_size) as writer:
            for c, start in enumerate(range(0, len(table), chunk)):
                part = table.iloc[start: start + chunk]
                images = synthfaces.render(part, image_size,
                                           np.random.SeedSequence([seed, k, c, 1]))
                frame = synthfaces.public_columns(part).copy()
                frame.insert(1, "image", encode_png_batch(images))
                frame.insert(2, "split", split)
                frame["source"] = "real"
                frame["weight"] = np.float32(1.0)
                writer.write(frame)
                bar.update(len(part))
        bar.close()
        summary[split] = split_summary(table, p.target, p.protected)
        log.info("prepare: %s: %d images", split, len(table))
    return summary


def check_split_labels(table: pd.DataFrame, target: str, protected: str, split: str,
                       where: str) -> None:
    """Fail when a split holds one target value or one protected group only.

    With a single class every stage would still exit 0 and the comparison would show
    AP 1.000 and undefined fairness metrics; this stops at ``prepare`` instead.
    ``protected`` empty (regression): only the target is checked.

    Raises
    ------
    FacebalanceError
        Naming the split, the column and its value counts.
    """
    for key, col in (("target", target), ("protected", protected)):
        if not col:
            continue
        counts = table[col].value_counts().sort_index()
        if len(counts) < 2:
            found = ", ".join(f"{col}={v}: {n}" for v, n in counts.items()) or "no rows"
            raise FacebalanceError(
                f"prepare: the {split} split of {where} has a single dataset.{key} value "
                f"({found}); every split needs at least two values of {col} (e.g. {col}=0 "
                f"and {col}=1) to train and measure fairness")


def split_summary(table: pd.DataFrame, target: str, protected: str) -> dict[str, Any]:
    """Row count and target x protected cell counts of a split (regression, ``protected``
    empty: counts per 10 years of the target)."""
    if not protected:
        decade = (table[target].to_numpy(np.float64) // 10 * 10).astype(int)
        counts = pd.Series(decade).value_counts().sort_index()
        return {"rows": len(table),
                "cells": {f"{target}={d}-{d + 9}": int(n) for d, n in counts.items()},
                f"mean_{target}": float(table[target].mean())}
    if protected == target:
        counts = table[target].value_counts().sort_index()
        return {"rows": len(table), "cells": {f"{target}={v}": int(n) for v, n in counts.items()}}
    cells = table.groupby([protected, target]).size()
    groups = sorted(table[protected].unique())
    return {
        "rows": len(table),
        "cells": {f"{protected}={g},{target}={t}": int(n) for (g, t), n in cells.items()},
        "p_target_given_protected": {
            f"{protected}={g}": float(table.loc[table[protected] == g, target].mean())
            for g in groups},
    }


def write_real(p: DatasetParams, out: Path, *, seed: int, image_size: int,
               progress: bool = True, device: str = "cpu", kind: str = "binary",
               extra_targets: Sequence[str] = ()) -> dict[str, Any]:
    """Convert a real dataset (``p.name`` in celeba, utkface, fairface, lfw, folder).

    Reads the label files first (a bad target/protected or label file fails before any
    image is decoded), then streams the images into ``out/{train,val,test}``. ``kind`` and
    ``extra_targets`` (the task) say which columns the target and groups must be.

    Returns
    -------
    dict
        Summary for ``metrics/prepare.json``: per split rows and cells, and ``errors``
        (counts of missing, corrupt, no-face images, malformed names) with ``examples``.
    """
    from facebalance.data.convert import ConvertOptions, MtcnnDetector, convert_dataset
    from facebalance.data.loaders import index_dataset

    index = index_dataset(p, seed, kind, extra_targets)
    if index.needs_attributes:  # before decoding any image
        for split, rows in index.records.groupby("split"):
            check_split_labels(rows, p.target, p.protected, str(split), index.label_file)
    log.info("prepare: %s: %d images indexed from %s", p.name, len(index.records),
             index.label_file)
    opts = ConvertOptions(image_size=image_size, crop=p.crop, workers=p.workers,
                          on_error=p.on_error, row_group_size=p.row_group_size,
                          rows_per_file=p.rows_per_file, align_margin=p.align_margin,
                          max_pixels=p.max_pixels, progress=progress)
    detector = MtcnnDetector(device=device) if p.align == "mtcnn" else None
    stats = convert_dataset(index, out, opts, detector)
    summary: dict[str, Any] = {}
    for split, kept in stats.kept.items():
        if index.needs_attributes:  # skipped images may have emptied a class
            check_split_labels(kept, p.target, p.protected, split,
                               f"{index.label_file} (images written)")
            summary[split] = split_summary(kept, p.target, p.protected)
        else:
            summary[split] = {"rows": len(kept), "identities": int(kept["identity"].nunique())}
    if "pairs" in stats.tables:
        pairs = stats.tables["pairs"]
        summary["pairs"] = {s: int((pairs["split"] == s).sum()) for s in SPLITS}
    if index.classes:  # code k of a text column = its k-th name
        summary["classes"] = index.classes
    if index.left_out:
        summary["columns_left_out"] = index.left_out
    summary["errors"] = dict(stats.errors)
    summary["warnings"] = {"small": stats.warnings.get("small", 0)}
    summary["error_examples"] = stats.examples
    return summary


PrepareFn = Callable[..., dict[str, Any]]
LOADERS: dict[str, PrepareFn] = {"synthfaces": write_synthfaces, "celeba": write_real,
                                 "utkface": write_real, "fairface": write_real,
                                 "lfw": write_real, "folder": write_real}


def prepare_from_params(p: Params, out: str | Path, *, device: str = "cpu",
                        progress: bool = True) -> dict[str, Any]:
    """:func:`prepare_dataset` with everything it reads from the params (``dataset``, the
    task's label columns, ``base.seed`` and ``base.image_size``): the prepare stage."""
    return prepare_dataset(p.dataset, out, seed=p.base.seed, image_size=p.base.image_size,
                           progress=progress, device=device, kind=p.task.kind,
                           extra_targets=p.task.extra_targets)


def prepare_dataset(p: DatasetParams, out: str | Path, *, seed: int, image_size: int,
                    progress: bool = True, device: str = "cpu", kind: str = "binary",
                    extra_targets: Sequence[str] = ()) -> dict[str, Any]:
    """Write the train/val/test shards of the dataset named in ``p.name``.

    ``kind`` and ``extra_targets`` (``task``) say which label columns a real dataset needs.

    Everything goes to a temporary sibling of ``out`` that replaces ``out`` only when the
    whole dataset is written: a failure leaves the previous output as it was.
    """
    try:
        fn = LOADERS[p.name]
    except KeyError:
        raise FacebalanceError(
            f"params: dataset.name = {p.name!r} has no loader; valid: {', '.join(LOADERS)}"
        ) from None
    with atomic_directory(out) as tmp:
        return fn(p, tmp, seed=seed, image_size=image_size, progress=progress, device=device,
                  kind=kind, extra_targets=extra_targets)
