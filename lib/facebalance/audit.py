"""Audit a model you already have: fairness reports from its per-image predictions.

The pipeline measures the models it trains; most users already have one. This module reads
a table of that model's predictions — one row per test image with a score (or a predicted
class or value), the true label and one or more protected columns — and builds the report
``evaluate`` writes for a strategy, with the same functions
(:func:`~facebalance.metrics.report.fairness_report`,
:func:`~facebalance.metrics.report.task_report`), so the numbers mean exactly what they
mean in the pipeline:

- binary: AP, accuracy, DEO, BA, KL, group-accuracy std, DP and EO differences at a
  threshold calibrated on validation rows so that #predicted positives = #true positives
  (the pipeline's rule); a given ``threshold`` instead, or, with neither, calibrated on the
  test rows themselves (the report says which);
- multiclass: accuracy, macro-F1, per-class and per-group accuracy spreads;
- regression: MAE, RMSE, WMAE (mean of the groups' MAEs), worst / best group MAE.

Groups keep the names people give them: ``gender=female``, not ``gender=0``. Values are
numbered in sorted order (numerically when every value is a number) for the metric
functions and named back in the report. A missing, blank or ``unknown`` group value counts
as the group ``unknown``: its rates are reported, but it takes no part in the gaps, ratios
and differences (the fairness metrics are over the rows of known group), unless ``strict``
asks for full coverage. Several score columns (several training seeds) give seed means and
seed standard deviations as in the pipeline; two predictions tables on the same test ids
give paired differences (:func:`facebalance.metrics.paired.paired_differences`).

:func:`audit_pairs` does the same for face verification from a pairs table.

Everything here is pandas in, dicts out; :func:`write_audit` and :func:`write_pair_audit`
write the JSON, markdown and figures atomically. Errors are one-line
:class:`~facebalance.errors.FacebalanceError` messages (the constants below).
"""

from __future__ import annotations

import difflib
import io
import itertools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facebalance.config import parse_yaml
from facebalance.data.shards import atomic_write_bytes
from facebalance.errors import FacebalanceError, first_line
from facebalance.gallery import (
    DEFAULT_PER_KIND,
    draw_gallery,
    images_from_shards,
    load_image_file,
    pick_mistakes,
)
from facebalance.metrics.bootstrap import bootstrap_weights, summarize
from facebalance.metrics.compare import comparison_frame, fmt, plot_comparison, to_markdown
from facebalance.metrics.fairness import accuracy, average_precision, group_rates
from facebalance.metrics.paired import paired_differences, paired_json, paired_markdown
from facebalance.metrics.paired import paired_metrics as task_paired_metrics
from facebalance.metrics.report import default_metrics, fairness_report, task_report
from facebalance.metrics.tasks import group_accuracy, group_mae
from facebalance.metrics.verification import (
    best_threshold,
    group_rates_weighted,
    max_min_ratio,
    verifier_metrics,
)
from facebalance.runtime import write_json
from facebalance.task import Head, TaskSpec, group_names

log = logging.getLogger(__name__)

#: Task kinds an audit reads.
AUDIT_KINDS = ("binary", "multiclass", "regression")
#: The group of rows whose group value is missing, blank or ``unknown``.
UNKNOWN = "unknown"
#: File types of predictions and pairs tables.
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
#: Keys of an audit YAML file (``facebalance audit --config``).
CONFIG_KEYS = ("label", "score", "group", "kind", "id", "split", "threshold", "val", "train",
               "compare", "strict", "name", "bootstrap", "seed", "kl_bins", "age_bins",
               "images", "shards", "gallery")
#: Keys of a pairs audit YAML file (``facebalance audit-pairs --config``).
PAIR_CONFIG_KEYS = ("score", "same", "id_a", "id_b", "group", "identity_a",
                    "split", "threshold", "far", "strict", "bootstrap", "seed")
#: ``split`` values of a predictions table.
SPLITS = ("test", "val", "train")

ERR_SUFFIX = "audit: {path}: unknown file type {suffix!r}; valid: .csv, .parquet"
ERR_READ = "audit: cannot read {path}: {reason}"
ERR_COLUMN = "audit: {source} has no {role} column {column!r}{hint}; its columns: {columns}"
ERR_KIND = "audit: kind {kind!r} is invalid; valid values: binary, multiclass, regression"
ERR_NO_SCORES = ("audit: {source} has no {pattern} columns and none was named; name the "
                 "score columns (--score)")
ERR_ONE_COLUMN = ("audit: a {kind} audit takes one {what} column per model, got {spec!r}; "
                  "several probability columns (a,b,c) are for multiclass")
ERR_NOT_NUMERIC = "audit: {role} column {column!r} holds {value!r} in {where}; expected numbers"
ERR_NAN = "audit: {role} column {column!r} has no value in {where}; every row needs one"
ERR_SCORE_RANGE = ("audit: score column {column!r} holds {value:g} in {where}, outside [0, 1]; "
                   "probabilities are expected (apply a sigmoid or softmax to logits)")
ERR_BINARY_LABEL = ("audit: label column {column!r} holds {value!r} in {where}; a binary "
                    "audit expects 0 or 1 (--kind multiclass for classes)")
ERR_CLASS_LABEL = ("audit: label column {column!r} holds {value!r} in {where}; probability "
                   "columns need class numbers 0..{last}, one per column")
ERR_DUPLICATE_ID = "audit: id {id!r} occurs twice in {source} ({first} and {second})"
ERR_IDS_NOT_SHARED = ("audit: {n} test ids of {a} are not in {b} (first: {id!r}); paired "
                      "differences need predictions on the same test images")
ERR_LABELS_DIFFER = ("audit: id {id!r} has label {a_value!r} in {a} and {b_value!r} in {b}; "
                     "paired differences need the same true labels")
ERR_NO_ID = ("audit: paired differences match rows by id, and {source} has no id column "
             "{column!r}")
ERR_SHARDS_NO_ID = ("audit: --shards finds the test images by id, and {source} has no id "
                    "column {column!r}")
ERR_STRICT = ("audit: {where} has no {column!r} group; --strict needs one in every row "
              "(without it such rows count as 'unknown')")
ERR_FEW_GROUPS = ("audit: {column!r} has {n} known group(s) among the test rows ({names}); "
                  "a fairness audit needs at least two")
ERR_SPLIT = ("audit: split column {column!r} holds {value!r} in {where}; valid values: "
             "test, val, train")
ERR_NO_TEST = "audit: {source} has no test rows"
ERR_VAL_POSITIVES = ("audit: the validation rows hold no positive label, so no threshold can "
                     "be calibrated on them; give --threshold")
ERR_THRESHOLD = "audit: threshold {value!r} is invalid; expected a number in [0, 1]"
ERR_CONFIG = "audit: {path}: {reason}"
ERR_CONFIG_KEY = "audit: {path}: unknown key {key!r}; valid keys: {keys}"
ERR_PAIRS_SAME = ("audit: same column {column!r} holds {value!r} in {where}; expected 1 "
                  "(genuine pair) or 0 (impostor pair)")
ERR_PAIRS_BOTH = ("audit: the {split} pairs hold {genuine} genuine and {impostor} impostor "
                  "pairs; rates need both")
ERR_DUPLICATE_PAIR = "audit: pair {a!r} / {b!r} occurs twice in {source} ({first} and {second})"


# ---------------------------------------------------------------------------------- input


def read_table(path: str | Path, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """A predictions or pairs table from a CSV or Parquet file.

    Parameters
    ----------
    path
        ``.csv``, ``.parquet`` or ``.pq`` file.
    text_columns
        CSV columns read as text (groups, ids): ``0``/``1`` groups with blanks would
        otherwise become ``0.0``/``1.0`` and ids lose leading zeros.

    Raises
    ------
    FacebalanceError
        For another file type, or a file that cannot be read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise FacebalanceError(ERR_SUFFIX.format(path=path, suffix=path.suffix))
    try:
        if suffix == ".csv":
            header = pd.read_csv(path, nrows=0).columns
            return pd.read_csv(path, dtype={c: str for c in text_columns if c in header})
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pandas' and Arrow's parse errors are ValueErrors
        raise FacebalanceError(ERR_READ.format(path=path, reason=first_line(err))) from None


def load_config(path: str | Path, keys: Sequence[str] = CONFIG_KEYS) -> dict[str, Any]:
    """The options of an audit YAML file (keys as the command's options, ``kl_bins`` with an
    underscore); an unknown key is an error naming the valid ones."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FacebalanceError(ERR_CONFIG.format(path=path, reason=first_line(err))) from None
    data = parse_yaml(text, path) or {}  # one line with line and column; no aliases
    if not isinstance(data, dict):
        raise FacebalanceError(ERR_CONFIG.format(
            path=path, reason=f"expected a mapping of options, got a {type(data).__name__}"))
    for key in data:
        if key not in keys:
            raise FacebalanceError(ERR_CONFIG_KEY.format(path=path, key=key,
                                                         keys=", ".join(keys)))
    return data


def parse_groups(groups: str | Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """``{column: name in the report}`` from ``["gender", "group:male"]`` (``COLUMN:NAME``
    renames) or a mapping."""
    if isinstance(groups, Mapping):
        return {str(k): str(v) for k, v in groups.items()}
    if isinstance(groups, str):
        groups = [groups]
    out: dict[str, str] = {}
    files: dict[str, str] = {}
    for g in groups:
        column, _, name = str(g).partition(":")
        name = name or column
        file = _file_name(name).casefold()  # one file on a case-insensitive disk too
        if column in out:
            raise FacebalanceError(f"audit: --group {g}: the column {column!r} is given twice")
        if file in files:
            # Two reports under one name: the second would replace the first's file.
            raise FacebalanceError(
                f"audit: --group {g} and --group {files[file]} would both be reported as "
                f"{_file_name(name)}.json; give each its own name (COLUMN:NAME)")
        files[file], out[column] = str(g), name
    return out


def _require(frame: pd.DataFrame, column: str, role: str, source: str) -> None:
    if column in frame.columns:
        return
    columns = [str(c) for c in frame.columns]
    close = difflib.get_close_matches(column, columns, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise FacebalanceError(ERR_COLUMN.format(source=source, role=role, column=column,
                                             hint=hint, columns=", ".join(columns)))


def _cell(values: pd.Series, i: int) -> Any:
    """Value ``i`` of a column as a plain Python value (messages show ``2``, not
    ``np.int64(2)``)."""
    v = values.iloc[i]
    return v.item() if isinstance(v, np.generic) else v


def _where(rows: pd.DataFrame, i: int, id_column: str | None) -> str:
    """``row 7 (id 'a7')``: the 1-based data row of the file, and its id."""
    row = f"row {int(rows['_row'].iloc[i])}"
    if id_column and id_column in rows.columns:
        row += f" (id {_cell(rows[id_column], i)!r})"
    return row


def _numbers(rows: pd.DataFrame, column: str, role: str, id_column: str | None) -> np.ndarray:
    """A column as numbers (float32 stays float32, so a Parquet table of the pipeline's
    float32 scores is scored bit for bit as ``evaluate`` scored it)."""
    values = rows[column]
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(np.int64)
    if not pd.api.types.is_numeric_dtype(values):
        parsed = pd.to_numeric(values, errors="coerce")
        bad = parsed.isna() & values.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise FacebalanceError(ERR_NOT_NUMERIC.format(
                role=role, column=column, value=_cell(values, i), where=_where(rows, i,
                                                                             id_column)))
        values = parsed
    out = values.to_numpy()
    if out.dtype != np.float32:
        out = out.astype(np.float64)
    nan = np.isnan(out)
    if nan.any():
        raise FacebalanceError(ERR_NAN.format(role=role, column=column,
                                              where=_where(rows, int(np.argmax(nan)),
                                                           id_column)))
    return out


def _probabilities(rows: pd.DataFrame, column: str, id_column: str | None) -> np.ndarray:
    s = _numbers(rows, column, "score", id_column)
    bad = (s < 0) | (s > 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise FacebalanceError(ERR_SCORE_RANGE.format(column=column, value=float(s[i]),
                                                      where=_where(rows, i, id_column)))
    return s


def _group_text(value: Any) -> str | None:
    """A group value as text: None when missing, blank or ``unknown``; ``1.0`` read from a
    column with blanks is ``1``."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    if re.fullmatch(r"-?\d+\.0+", text):  # 1.0 written as text by a CSV with blanks
        text = text.split(".")[0]
    return None if not text or text.casefold() == UNKNOWN else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def group_codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes 0..K-1 of the known group values (``-1`` for unknown rows) and the names of the
    codes: sorted numerically when every value is a number, else as text.

    Examples
    --------
    >>> group_codes(pd.Series(["male", "female", None, " ", "female"]))
    (array([ 1,  0, -1, -1,  0]), ['female', 'male'])
    """
    text = [_group_text(v) for v in values]
    known = sorted({t for t in text if t is not None})
    if known and all(_is_number(t) for t in known):
        known.sort(key=float)
    code = {name: i for i, name in enumerate(known)}
    return np.array([-1 if t is None else code[t] for t in text], dtype=np.int64), known


# -------------------------------------------------------------------------------- columns


@dataclass(frozen=True)
class ScoreColumns:
    """Each model's (training seed's) prediction columns.

    Attributes
    ----------
    seeds
        The seed numbers of the report's ``per_seed`` keys (``seed<N>``).
    columns
        Per seed: one column (a score, a predicted class or value) or several (class
        probabilities, in class order).
    """

    seeds: tuple[int, ...]
    columns: tuple[tuple[str, ...], ...]


def score_columns(frame: pd.DataFrame, scores: str | Sequence[str] | None, kind: str,
                  source: str = "the predictions") -> ScoreColumns:
    """The score columns named, or the pipeline's own (``score_seed<N>`` of a binary task,
    ``pred_seed<N>`` of the others) when none is named.

    A named column ``a,b,c`` is a multiclass model's class probabilities. Columns named
    ``score_seed<N>`` / ``pred_seed<N>`` keep their seed numbers, others are seeds 0, 1, ...
    """
    pattern = r"score_seed(\d+)" if kind == "binary" else r"pred_seed(\d+)"
    if not scores:
        found = [c for c in frame.columns if re.fullmatch(pattern, str(c))]
        if not found:
            raise FacebalanceError(ERR_NO_SCORES.format(
                source=source, pattern=pattern.replace(r"(\d+)", "<N>")))
        scores = found
    elif isinstance(scores, str):
        scores = [scores]
    specs = [tuple(c.strip() for c in str(s).split(",") if c.strip()) for s in scores]
    for spec in specs:
        if len(spec) > 1 and kind != "multiclass":
            raise FacebalanceError(ERR_ONE_COLUMN.format(
                kind=kind, what="score" if kind == "binary" else "prediction",
                spec=",".join(spec)))
        for c in spec:
            _require(frame, c, "score", source)
    numbers = [re.fullmatch(pattern, s[0]) if len(s) == 1 else None for s in specs]
    if all(numbers) and len({m.group(1) for m in numbers}) == len(numbers):
        seeds = tuple(int(m.group(1)) for m in numbers)
    else:
        seeds = tuple(range(len(specs)))
    return ScoreColumns(seeds=seeds, columns=tuple(specs))


# ---------------------------------------------------------------------------------- rows


@dataclass
class Prepared:
    """Validated rows of one predictions table, ready for the metric functions.

    Attributes
    ----------
    test, val, train
        The rows of each split (``val``/``train`` may be empty); ``_row`` is the 1-based
        row in the file.
    y, val_y
        Test and validation labels (class numbers for multiclass).
    preds, val_preds
        Per seed: binary scores, predicted classes or predicted values.
    groups
        ``{column: (codes of the test rows, names)}``; code ``-1`` is unknown.
    class_names
        Multiclass: the name of each class number.
    """

    test: pd.DataFrame
    val: pd.DataFrame
    train: pd.DataFrame
    y: np.ndarray
    val_y: np.ndarray
    preds: list[np.ndarray]
    val_preds: list[np.ndarray]
    groups: dict[str, tuple[np.ndarray, list[str]]]
    class_names: list[str]
    #: Groupings whose names are whole ``by_group`` keys (the label's bins: ``age 30-44``).
    named_bins: tuple[str, ...] = ()


def _numbered(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``_row``, the 1-based data row of its file that messages name (kept
    when it has one: a reference realigned, validation rows chosen by their split)."""
    rows = frame.reset_index(drop=True)
    return rows if "_row" in rows.columns else rows.assign(_row=np.arange(1, len(rows) + 1))


def _split_values(rows: pd.DataFrame, split: str) -> pd.Series:
    """A split column as ``test`` / ``val`` / ``train`` (case and spaces ignored)."""
    return rows[split].astype(str).str.strip().str.lower()


def _split_rows(frame: pd.DataFrame, split: str | None, id_column: str | None,
                source: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rows = _numbered(frame)
    if not split or split not in rows.columns:
        return rows, rows.iloc[:0], rows.iloc[:0]
    values = _split_values(rows, split)
    bad = ~values.isin(SPLITS)
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise FacebalanceError(ERR_SPLIT.format(column=split, value=_cell(rows[split], i),
                                                where=_where(rows, i, id_column)))
    parts = [rows[values.to_numpy() == s].reset_index(drop=True) for s in SPLITS]
    if not len(parts[0]):
        raise FacebalanceError(ERR_NO_TEST.format(source=source))
    return parts[0], parts[1], parts[2]


def _check_ids(rows: pd.DataFrame, id_column: str | None, source: str) -> None:
    if not id_column or id_column not in rows.columns or not len(rows):
        return
    ids = rows[id_column]
    dup = (ids.notna() & ids.duplicated(keep=False)).to_numpy()
    if dup.any():
        first = _cell(rows[id_column], int(np.argmax(dup)))
        where = np.flatnonzero((rows[id_column] == first).to_numpy())[:2]
        raise FacebalanceError(ERR_DUPLICATE_ID.format(
            id=first, source=source, first=_where(rows, int(where[0]), None),
            second=_where(rows, int(where[1]), None)))


def _finite(rows: pd.DataFrame, column: str, role: str, id_column: str | None) -> np.ndarray:
    """A column of finite numbers (a regression's labels and predictions)."""
    out = _numbers(rows, column, role, id_column)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        raise FacebalanceError(f"audit: {role} column {column!r} holds {float(out[i])!r} in "
                               f"{_where(rows, i, id_column)}; expected a finite number")
    return out


def _labels(rows: pd.DataFrame, label: str, kind: str, id_column: str | None,
            n_proba: int) -> np.ndarray:
    if kind == "regression":
        return _finite(rows, label, "label", id_column)
    values = rows[label]
    if kind == "binary":
        y = _numbers(rows, label, "label", id_column)
        bad = (y != 0) & (y != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise FacebalanceError(ERR_BINARY_LABEL.format(column=label, value=_cell(values, i),
                                                           where=_where(rows, i, id_column)))
        return y.astype(np.int64)
    if values.isna().any():
        raise FacebalanceError(ERR_NAN.format(
            role="label", column=label,
            where=_where(rows, int(np.argmax(values.isna().to_numpy())), id_column)))
    if n_proba:
        y = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
        bad = ~np.isin(y, np.arange(n_proba))
        if bad.any():
            i = int(np.argmax(bad))
            raise FacebalanceError(ERR_CLASS_LABEL.format(
                column=label, value=_cell(values, i), where=_where(rows, i, id_column),
                last=n_proba - 1))
        return y.astype(np.int64)
    return values.to_numpy()


def _check_predicted_classes(test: pd.DataFrame, val: pd.DataFrame, y: np.ndarray,
                             val_y: np.ndarray, preds: list[np.ndarray],
                             val_preds: list[np.ndarray], scores: ScoreColumns,
                             id_column: str | None) -> None:
    """Predicted classes must be of the labels' kind: whole numbers when the labels are
    (a model may predict a class no test label has: its argmax runs over every class), text
    that is not a number when they are text. A probability, or several in one cell, would
    otherwise count as a wrong prediction, silently."""
    classes = {_group_text(v) for v in (*y, *val_y)} - {None, ""}
    numbered = bool(classes) and all(re.fullmatch(r"\d+", c) for c in classes)
    shown = ", ".join(sorted(classes)[:10]) + (", ..." if len(classes) > 10 else "")
    for rows, arrays in ((test, preds), (val, val_preds)):
        for spec, pred in zip(scores.columns, arrays, strict=True):
            text = [_group_text(v) or "" for v in pred]
            bad = np.array([not re.fullmatch(r"\d+", t) if numbered
                            else t not in classes and all(_is_number(x) for x in t.split(","))
                            for t in text], dtype=bool)
            if bad.any():
                i = int(np.argmax(bad))
                raise FacebalanceError(
                    f"audit: prediction column {spec[0]!r} holds {_cell(rows[spec[0]], i)!r} "
                    f"in {_where(rows, i, id_column)}, which is no class (the labels' "
                    f"classes: {shown}); give the predicted class, or class probabilities "
                    "as one column per class (--score p0,p1,p2)")


def _class_numbers(y_test: np.ndarray, y_val: np.ndarray, preds: list[np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[str]]:
    """Multiclass labels and predicted classes as numbers 0..C-1 and the class names
    (integers keep their numbers; text classes are numbered in sorted order)."""
    texts = [np.asarray([_group_text(v) or "" for v in a], dtype=object)
             for a in (y_test, y_val, *preds)]
    values = sorted(set().union(*[set(t) for t in texts]) - {""})
    if values and all(re.fullmatch(r"\d+", v) for v in values):
        n = max(int(v) for v in values) + 1
        names = [str(i) for i in range(n)]
    else:
        names = values
    code = {name: i for i, name in enumerate(names)}
    num = [np.array([code[v] for v in t], dtype=np.int64) for t in texts]
    return num[0], num[1], num[2:], names


def _seed_predictions(rows: pd.DataFrame, cols: ScoreColumns, kind: str,
                      id_column: str | None) -> list[np.ndarray]:
    out = []
    for spec in cols.columns:
        if kind == "binary":
            out.append(_probabilities(rows, spec[0], id_column))
        elif kind == "regression":
            out.append(_finite(rows, spec[0], "prediction", id_column))
        elif len(spec) > 1:  # class probabilities: the predicted class is the largest
            proba = np.stack([_probabilities(rows, c, id_column) for c in spec], axis=1)
            out.append(proba.argmax(axis=1).astype(np.int64))
        else:
            col = rows[spec[0]]
            if col.isna().any():
                raise FacebalanceError(ERR_NAN.format(
                    role="prediction", column=spec[0],
                    where=_where(rows, int(np.argmax(col.isna().to_numpy())), id_column)))
            out.append(col.to_numpy())
    return out


def prepare_predictions(frame: pd.DataFrame, *, label: str, scores: ScoreColumns,
                        groups: Mapping[str, str], kind: str, id_column: str | None,
                        split: str | None, strict: bool, source: str,
                        val: pd.DataFrame | None = None,
                        age_bins: Sequence[float] = (), val_source: str = "") -> Prepared:
    """Validate a predictions table and turn it into arrays (see :func:`audit_predictions`
    for the parameters); every bad input is a one-line error naming the row."""
    if kind not in AUDIT_KINDS:
        raise FacebalanceError(ERR_KIND.format(kind=kind))
    _require(frame, label, "label", source)
    for column in groups:
        _require(frame, column, "group", source)
    test, val_rows, train = _split_rows(frame, split, id_column, source)
    if val is not None:
        _require(val, label, "label", val_source or "the validation rows")
        val_rows = pd.concat([val_rows, _numbered(val)], ignore_index=True)
    val_where = f"{source} and {val_source}" if val is not None and val_source else source
    _check_ids(test, id_column, source)
    _check_ids(val_rows, id_column, f"the validation rows ({val_where})")
    n_proba = max(len(c) for c in scores.columns) if kind == "multiclass" else 0
    n_proba = n_proba if n_proba > 1 else 0
    y = _labels(test, label, kind, id_column, n_proba)
    preds = _seed_predictions(test, scores, kind, id_column)
    val_y = _labels(val_rows, label, kind, id_column, n_proba) if len(val_rows) else y[:0]
    try:
        val_preds = (_seed_predictions(val_rows, scores, kind, id_column) if len(val_rows)
                     else [p[:0] for p in preds])
    except FacebalanceError as err:
        raise FacebalanceError(f"{err} (in the validation rows of {val_where})") from None
    class_names: list[str] = []
    if kind == "multiclass":
        if n_proba:
            class_names = [str(i) for i in range(n_proba)]
        else:
            _check_predicted_classes(test, val_rows, y, val_y, preds, val_preds, scores,
                                     id_column)
            y, val_y, both, class_names = _class_numbers(y, val_y, preds + val_preds)
            preds, val_preds = both[:len(preds)], both[len(preds):]
    coded: dict[str, tuple[np.ndarray, list[str]]] = {}
    for column, name in groups.items():
        codes, names = group_codes(test[column])
        if strict and (codes < 0).any():
            raise FacebalanceError(ERR_STRICT.format(
                where=_where(test, int(np.argmax(codes < 0)), id_column), column=column))
        if len(names) < 2:
            raise FacebalanceError(ERR_FEW_GROUPS.format(column=column, n=len(names),
                                                         names=", ".join(names) or "none"))
        coded[name] = (codes, names)
    if age_bins:  # regression: the label's bins as one more grouping, as the pipeline's
        edges = tuple(float(b) for b in age_bins)
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise FacebalanceError(f"audit: age bins {list(age_bins)} must increase, such as "
                                   "20,30,40")
        task = TaskSpec(kind="regression", heads=(Head(label, "regression", 0),),
                        age_bins=edges)
        codes = np.digitize(y, task.age_bins).astype(np.int64)
        present = np.unique(codes)
        if len(present) < 2:
            raise FacebalanceError(
                f"audit: every test label of {source} falls in one age bin "
                f"({group_names(task, present)[0]}; the labels run from {y.min():g} to "
                f"{y.max():g}); give --age-bins edges inside that range")
        names = group_names(task, present)
        coded[f"{label} bins"] = (np.searchsorted(present, codes), names)
    return Prepared(test=test, val=val_rows, train=train, y=y, val_y=val_y, preds=preds,
                    val_preds=val_preds, groups=coded, class_names=class_names,
                    named_bins=(f"{label} bins",) if age_bins else ())


# ------------------------------------------------------------------------------- reports


def _null(entry: dict[str, Any]) -> None:
    """Mark a metric entry undefined (NaN, written as JSON null)."""
    nan = float("nan")
    entry.update(value=nan, std=nan, median=nan, ci95={"lo": nan, "hi": nan},
                 per_seed=dict.fromkeys(entry.get("per_seed", {}), nan))


def _renamed(entries: Mapping[str, Any], attr: str, names: Sequence[str]) -> dict[str, Any]:
    """``by_group`` keyed ``<attr>=<name>``: the reports list groups in code order."""
    return {f"{attr}={name}": v for name, v in zip(names, entries.values(), strict=True)}


def _threshold_inputs(prep: Prepared, threshold: float | None
                      ) -> tuple[np.ndarray, list[np.ndarray], dict[str, Any]]:
    """The validation labels and scores :func:`fairness_report` calibrates each seed's
    threshold on (empty with a given ``threshold``, which it then uses as it is), and how
    the threshold was chosen."""
    if threshold is not None:
        t = float(threshold)
        if not 0 <= t <= 1:
            raise FacebalanceError(ERR_THRESHOLD.format(value=threshold))
        return (prep.y[:0], [p[:0] for p in prep.preds],
                {"source": "given", "text": f"given: {t:g} for every model"})
    if len(prep.val):
        if not (prep.val_y == 1).any():
            raise FacebalanceError(ERR_VAL_POSITIVES)
        return prep.val_y, prep.val_preds, {
            "source": "validation",
            "text": f"calibrated on the {len(prep.val)} validation rows (#predicted "
                    "positives = #true positives), as the pipeline does"}
    if not (prep.y == 1).any():
        raise FacebalanceError(
            "audit: the test rows hold no positive label, so no threshold can be calibrated "
            "on them (as many predicted positives as true ones); give one (--threshold) or "
            "validation rows with positives (--val, or a split column)")
    return prep.y, prep.preds, {
        "source": "test",
        "text": f"calibrated on the {len(prep.y)} test rows themselves (#predicted positives "
                "= #true positives): no validation rows or threshold were given, so the "
                "threshold has seen the test labels' count"}


def cell_counts(y: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """``(2, n_groups)`` counts of label 0/1 x group code (codes ``-1``, unknown, left out):
    :func:`facebalance.models.evaluate.training_cell_counts` on coded groups, without
    importing the model code (torch) into an audit."""
    y, groups = np.asarray(y), np.asarray(groups)
    return np.array([[int(((y == t) & (groups == g)).sum()) for g in range(n_groups)]
                     for t in (0, 1)])


def _train_counts(train: pd.DataFrame | None, label: str, column: str, attr: str,
                  names: Sequence[str]) -> tuple[np.ndarray | None, str]:
    """``(2, K)`` training label x group counts in the test groups' order (groups the test
    rows lack, and unknown training rows, are left out), or None and why: no training rows,
    or a test group without any."""
    if train is None or not len(train):
        return None, ("null: bias amplification needs the training split's label x group "
                      "counts (train rows in the table, or a training labels file); none "
                      "were given")
    _require(train, label, "label", "the training rows")
    _require(train, column, "group", "the training rows")
    rows = _numbered(train)
    y = _labels(rows, label, "binary", None, 0)  # one line for a text, NaN or 2 label
    codes, train_names = group_codes(rows[column])
    # The training rows' own codes, renumbered as the test rows' groups.
    to_test = np.array([names.index(n) if n in names else -1 for n in train_names] + [-1])
    counts = cell_counts(y, to_test[codes], len(names))
    missing = [n for k, n in enumerate(names) if not counts[:, k].any()]
    if len(names) - len(missing) < 2:  # one group's counts give no direction: BA would be 0
        return None, (f"null: training rows in {len(names) - len(missing)} of the test's "
                      f"{attr} groups (the training rows' groups: "
                      f"{', '.join(train_names) or 'none'}); bias amplification needs two")
    left_out = (f"; {attr}={', '.join(missing)} has no training rows and takes no part"
                if missing else "")
    return counts, (f"directions from the training label x group counts of "
                    f"{int(counts.sum())} training rows, as the pipeline{left_out}")


def _binary_report(prep: Prepared, column: str, attr: str, *, threshold: float | None,
                   train: pd.DataFrame | None, label: str, seeds: Sequence[int],
                   n_bootstrap: int, bootstrap_seed: int, kl_bins: int
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    codes, names = prep.groups[attr]
    known = codes >= 0
    val_y, val_scores, how = _threshold_inputs(prep, threshold)
    counts, ba_note = _train_counts(train, label, column, attr, names)
    report = fairness_report(val_y, val_scores, prep.y[known], codes[known],
                             [s[known] for s in prep.preds], seeds=list(seeds),
                             group_name=attr, reference_counts=counts,
                             n_bootstrap=n_bootstrap, bootstrap_seed=bootstrap_seed,
                             kl_bins=kl_bins,
                             threshold=None if threshold is None else float(threshold))
    report["by_group"] = _renamed(report["by_group"], attr, names)
    meta: dict[str, Any] = {"threshold": how, "warnings": []}
    if counts is None:
        _null(report["ba"])
    meta["bias_amplification"] = ba_note
    y = prep.y[known]
    g = codes[known]
    no_pos = [n for k, n in enumerate(names) if not (y[g == k] == 1).any()]
    no_neg = [n for k, n in enumerate(names) if not (y[g == k] == 0).any()]
    for grp in no_pos:
        meta["warnings"].append(f"{attr}={grp} has no positive label: its TPR and FNR are "
                                "undefined (null) and it takes no part in DEO and EO")
    for grp in no_neg:
        meta["warnings"].append(f"{attr}={grp} has no negative label: its FPR is undefined "
                                "(null) and it takes no part in EO")
    # A gap over fewer than two groups is undefined, not 0.
    tpr_defined = len(names) - len(no_pos) >= 2
    fpr_defined = len(names) - len(no_neg) >= 2
    if not tpr_defined:
        _null(report["deo"])
        report["group_gaps"]["tpr"] = dict.fromkeys(report["group_gaps"]["tpr"], float("nan"))
    if not fpr_defined:
        report["group_gaps"]["fpr"] = dict.fromkeys(report["group_gaps"]["fpr"], float("nan"))
    if not (tpr_defined and fpr_defined):
        _null(report["eo_diff"])
    if not known.all():  # the unknown rows' own rates, at the same thresholds
        frames = [group_rates(prep.y[~known], s[~known] >= t, np.zeros((~known).sum()))
                  .frame() for s, t in zip(prep.preds, report["threshold"].values(),
                                           strict=True)]
        mean = sum(frames[1:], frames[0]) / len(frames)
        report["by_group"][f"{attr}={UNKNOWN}"] = {k: float(v) for k, v in
                                                    mean.iloc[0].items()}
    all_rows = {"ap": float(np.mean([average_precision(prep.y, s) for s in prep.preds])),
                "accuracy": float(np.mean([
                    accuracy(prep.y, (s >= t).astype(np.int8)) for s, t in
                    zip(prep.preds, report["threshold"].values(), strict=True)]))}
    task = TaskSpec(kind="binary", heads=(Head(label, "binary"),), protected=attr)
    return {"task": task.to_dict(), **report}, meta, all_rows


def _other_report(prep: Prepared, attr: str, kind: str, *, label: str, seeds: Sequence[int],
                  n_bootstrap: int, bootstrap_seed: int
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    codes, names = prep.groups[attr]
    known = codes >= 0
    table = pd.DataFrame({"label": prep.y[known], "group": codes[known]})
    for s, p in zip(seeds, prep.preds, strict=True):
        table[f"pred_seed{s}"] = p[known]
    n_classes = len(prep.class_names) if kind == "multiclass" else 0
    head = Head(label, kind, n_classes)
    task = TaskSpec(kind=kind, heads=(head,), protected=attr)
    # task_report names regression groups by age bins: give it placeholder edges (the names
    # are replaced below) so that a protected column of K groups can be named at all.
    call_task = (TaskSpec(kind=kind, heads=(head,), protected=attr,
                          age_bins=tuple(float(b) for b in range(1, len(names))))
                 if kind == "regression" else task)
    report = task_report(call_task, table, list(seeds), n_bootstrap=n_bootstrap,
                         bootstrap_seed=bootstrap_seed)
    present = np.unique(table["group"])
    # Label bins carry their own names (``age 30-44``); other groups are ``<attr>=<value>``.
    report["by_group"] = {names[k] if attr in prep.named_bins else f"{attr}={names[k]}": v
                          for k, v in zip(present, report["by_group"].values(), strict=True)}
    if "by_class" in report:  # classes 0..C-1 in order (test labels are among them)
        report["by_class"] = {f"{label}={c}": v for c, v in zip(
            prep.class_names, report["by_class"].values(), strict=True)}
    if not known.all():
        y_u = prep.y[~known]
        g_u = np.zeros(len(y_u), dtype=np.int64)
        if kind == "regression":
            value = np.mean([group_mae(y_u, p[~known], g_u)[1][0] for p in prep.preds])
            key = "mae"
        else:
            value = np.mean([group_accuracy(y_u, p[~known], g_u)[1][0] for p in prep.preds])
            key = "accuracy"
        report["by_group"][f"{attr}={UNKNOWN}"] = {"n": len(y_u), key: float(value)}
    if kind == "regression":
        all_rows = {"mae": float(np.mean([np.abs(prep.y - p).mean() for p in prep.preds]))}
    else:
        all_rows = {"accuracy": float(np.mean([(prep.y == p).mean() for p in prep.preds]))}
    meta = {"threshold": {"source": "none", "text": f"a {kind} audit has no threshold"},
            "warnings": []}
    return {"task": task.to_dict(), **report}, meta, all_rows


def _paired(prep: Prepared, other: Prepared, attr: str, kind: str, seeds: Sequence[int],
            other_seeds: Sequence[int], thresholds: Mapping[str, Mapping[str, float]],
            names: tuple[str, str], id_column: str, n_bootstrap: int,
            bootstrap_seed: int) -> dict[str, Any]:
    codes, _ = prep.groups[attr]
    known = codes >= 0
    prefix = "score_" if kind == "binary" else "pred_"
    tables = {}
    for name, p, sd in ((names[0], prep, seeds), (names[1], other, other_seeds)):
        table = pd.DataFrame({"id": prep.test[id_column].to_numpy()[known],
                              "label": prep.y[known], "group": codes[known]})
        for s, pred in zip(sd, p.preds, strict=True):
            table[f"{prefix}seed{s}"] = pred[known]
        tables[name] = table
    n_classes = {"binary": 2, "multiclass": max(len(prep.class_names),
                                                len(other.class_names))}.get(kind, 0)
    task = TaskSpec(kind=kind, heads=(Head("label", kind, n_classes),), protected=attr)
    frame = paired_differences(tables, thresholds, task=task, references=[names[1]],
                               metrics=task_paired_metrics(task), n_bootstrap=n_bootstrap,
                               seed=bootstrap_seed)
    return {"json": paired_json(frame), "markdown": paired_markdown(frame)}


def _align(prep: Prepared, other: pd.DataFrame, *, id_column: str, label: str, kind: str,
           groups: Mapping[str, str], names: tuple[str, str], source: str,
           other_source: str) -> pd.DataFrame:
    """The other table's test rows in this table's id order, with this table's groups."""
    test = prep.test
    other = other.reset_index(drop=True)
    o_ids = other[id_column].astype(str)
    ids = test[id_column].astype(str)
    missing = ~ids.isin(set(o_ids))
    if missing.any():
        raise FacebalanceError(ERR_IDS_NOT_SHARED.format(
            n=int(missing.sum()), a=source, b=other_source, id=_cell(test[id_column][missing], 0)))
    index = pd.Series(np.arange(len(other)), index=o_ids.to_numpy())
    aligned = other.iloc[index.loc[ids.to_numpy()].to_numpy()].reset_index(drop=True)
    if label in aligned.columns and kind != "regression":
        a = test[label].astype(str).to_numpy()
        b = aligned[label].astype(str).to_numpy()
        if kind == "binary":  # 1 and 1.0 are one label
            a = pd.to_numeric(test[label], errors="coerce").to_numpy()
            b = pd.to_numeric(aligned[label], errors="coerce").to_numpy()
        differ = a != b
        if differ.any():
            i = int(np.argmax(differ))
            raise FacebalanceError(ERR_LABELS_DIFFER.format(
                id=_cell(test[id_column], i), a_value=_cell(test[label], i), a=source,
                b_value=_cell(aligned[label], i), b=other_source))
    for column in groups:
        aligned[column] = test[column].to_numpy()
    aligned[label] = test[label].to_numpy()
    return aligned


def _renumber_classes(other: Prepared, prep: Prepared) -> None:
    """Number ``other``'s classes as ``prep``'s (a class only ``other`` predicts comes
    after them), so that paired metrics compare like with like."""
    names = list(prep.class_names)
    for n in other.class_names:
        if n not in names:
            names.append(n)
    to_prep = np.array([names.index(n) for n in other.class_names], dtype=np.int64)
    other.y, other.val_y = to_prep[other.y], to_prep[other.val_y]
    other.preds = [to_prep[p] for p in other.preds]
    other.val_preds = [to_prep[p] for p in other.val_preds]
    other.class_names = names


def audit_predictions(frame: pd.DataFrame, *, label: str = "label",
                      scores: str | Sequence[str] | None = None,
                      groups: str | Sequence[str] | Mapping[str, str] = ("group",),
                      kind: str = "binary", id_column: str | None = "id",
                      split: str | None = "split", val: pd.DataFrame | None = None,
                      threshold: float | None = None, train: pd.DataFrame | None = None,
                      strict: bool = False, name: str = "model",
                      reference: pd.DataFrame | None = None,
                      reference_name: str = "reference", age_bins: Sequence[float] = (),
                      n_bootstrap: int = 500, bootstrap_seed: int = 0, kl_bins: int = 50,
                      source: str = "the predictions",
                      reference_source: str = "the reference predictions",
                      val_source: str = "") -> dict[str, dict[str, Any]]:
    """Fairness reports of a model from its per-image predictions.

    Parameters
    ----------
    frame
        One row per image: the true label, the score column(s) and the group column(s);
        optionally an ``id`` and a ``split`` column (``test``, ``val``: calibrates the
        threshold; ``train``: label x group counts for bias amplification). Without a split
        column every row is a test row.
    label
        The true label column: 0/1 (binary), classes (multiclass: numbers or text) or a
        number (regression).
    scores
        Score columns, one per model (several training seeds give seed means): binary
        probabilities of the positive class in [0, 1]; multiclass predicted classes or
        ``"p0,p1,p2"`` class probabilities; regression predicted values. Default: the
        pipeline's ``score_seed<N>`` (binary) / ``pred_seed<N>`` columns.
    groups
        Protected columns, each reported on its own; ``"column:name"`` or a mapping
        ``{column: name}`` names the attribute in the report.
    kind
        ``binary``, ``multiclass`` or ``regression``.
    id_column, split
        Names of the id and split columns (used when present; ids must be unique).
    val
        Validation rows as a separate table (same columns), added to the ``val`` rows.
    threshold
        The binary decision threshold of every model; default: calibrated on the
        validation rows, or, without any, on the test rows (the report says which).
    train
        Training rows (label and group columns) for bias amplification; without them (and
        without ``train`` rows in ``frame``) BA is null and the report says why.
    strict
        A missing group value is an error naming the row, not the group ``unknown``.
    name
        The model's name in the report (``strategy``).
    reference, reference_name
        A second predictions table on the same test ids (e.g. the model before a fix):
        paired differences ``name - reference_name`` on shared bootstrap resamples.
    age_bins
        Regression: also group by these bins of the label, as the pipeline's age tasks.
    n_bootstrap, bootstrap_seed, kl_bins
        Bootstrap resamples and their seed; KL histogram bins (as ``evaluate.*``).
    source, reference_source, val_source
        How error messages name the tables (their file names).

    Returns
    -------
    dict
        ``{attribute: report}``, each report in the layout of ``evaluate``'s
        ``metrics/reports/<strategy>.json`` (``strategy``, ``task``, the task's metrics
        with ``value``/``std``/``median``/``ci95``/``per_seed``, ``by_group`` keyed
        ``<attribute>=<value>``, ...) plus ``audit`` (threshold and BA provenance, unknown
        rows, warnings, overall metrics of all rows) and, with a reference, ``paired``.

    Raises
    ------
    FacebalanceError
        One line for each kind of bad input: a missing column (naming the valid ones),
        NaN or out-of-range scores, a bad label, duplicate ids, fewer than two groups, a
        missing group value with ``strict``, ids not shared with the reference.
    """
    group_map = parse_groups(groups)
    bins_file = _file_name(f"{label} bins")
    if age_bins and bins_file.casefold() in {_file_name(n).casefold() for n in group_map.values()}:
        raise FacebalanceError(f"audit: a group is reported as {bins_file}.json, which the label "
                               "bins (--age-bins) write; name the group otherwise (COLUMN:NAME)")
    cols = score_columns(frame, scores, kind, source)
    id_column = id_column if id_column and id_column in frame.columns else None
    prep = prepare_predictions(frame, label=label, scores=cols, groups=group_map, kind=kind,
                               id_column=id_column, split=split, strict=strict,
                               source=source, val=val, age_bins=age_bins,
                               val_source=val_source)
    _check_bootstrap_size(n_bootstrap, len(prep.test))
    train_rows = train if train is not None else (prep.train if len(prep.train) else None)
    other = other_cols = None
    if reference is not None:
        if id_column is None:
            raise FacebalanceError(ERR_NO_ID.format(source=source, column="id"))
        _require(reference, id_column, "id", reference_source)
        if name == reference_name:
            reference_name = f"{reference_name} (reference)"
        other_cols = score_columns(reference, None if scores is None else scores, kind,
                                   reference_source)
        ref_test, ref_val, _ = _split_rows(reference, split, id_column, reference_source)
        _check_ids(ref_test, id_column, reference_source)
        aligned = _align(prep, ref_test, id_column=id_column, label=label, kind=kind,
                         groups=group_map, names=(name, reference_name), source=source,
                         other_source=reference_source)
        ref_frame = aligned.drop(columns=[c for c in (split,) if c in aligned])
        try:
            other = prepare_predictions(ref_frame, label=label, scores=other_cols,
                                        groups=group_map, kind=kind, id_column=id_column,
                                        split=None, strict=False, source=reference_source,
                                        val=ref_val.drop(columns=["_row"]) if len(ref_val)
                                        else None, age_bins=age_bins)
        except FacebalanceError as err:  # its rows are in this table's order: the id says
            if reference_source in str(err):
                raise
            raise FacebalanceError(f"{err} (in the reference {reference_source})") from None
        if kind == "multiclass" and other.class_names != prep.class_names:
            _renumber_classes(other, prep)
    reports: dict[str, dict[str, Any]] = {}
    columns = {**{v: k for k, v in group_map.items()}, **{
        a: a for a in prep.groups if a not in group_map.values()}}
    for attr in prep.groups:
        codes, names = prep.groups[attr]
        if kind == "binary":
            body, meta, all_rows = _binary_report(
                prep, columns[attr], attr, threshold=threshold, train=train_rows,
                label=label, seeds=cols.seeds, n_bootstrap=n_bootstrap,
                bootstrap_seed=bootstrap_seed, kl_bins=kl_bins)
        else:
            body, meta, all_rows = _other_report(
                prep, attr, kind, label=label, seeds=cols.seeds, n_bootstrap=n_bootstrap,
                bootstrap_seed=bootstrap_seed)
        folded: dict[str, list[str]] = {}
        for n in names:
            folded.setdefault(n.strip().casefold(), []).append(n)
        for same in (v for v in folded.values() if len(v) > 1):
            meta["warnings"].append(
                f"{attr} values {', '.join(repr(v) for v in same)} differ only in case and are "
                "separate groups; if they are one, write them alike in the file")
        n_unknown = int((codes < 0).sum())
        if n_unknown:
            meta["warnings"].append(
                f"{n_unknown} of {len(codes)} test rows have no {attr} value: counted as "
                f"{attr}={UNKNOWN}, left out of the metrics, gaps and differences")
        meta.update({
            "source": source, "kind": kind, "label": label, "group_column": columns[attr],
            "scores": {f"seed{s}": ",".join(c) for s, c in zip(cols.seeds, cols.columns,
                                                                strict=True)},
            "groups": names, "n_test": len(codes), "n_known": int(len(codes) - n_unknown),
            "n_unknown": n_unknown, "n_val": len(prep.val),
            "all_test_rows": all_rows})
        report = {"strategy": name, **body, "audit": meta}
        if other is not None and other_cols is not None:
            thresholds = {name: report.get("threshold", {})}
            if kind == "binary":
                ref_body, _, _ = _binary_report(
                    other, columns[attr], attr, threshold=threshold, train=None, label=label,
                    seeds=other_cols.seeds, n_bootstrap=1, bootstrap_seed=bootstrap_seed,
                    kl_bins=kl_bins)
                thresholds[reference_name] = ref_body["threshold"]
            else:
                thresholds[reference_name] = {}
            report["paired"] = _paired(prep, other, attr, kind, cols.seeds, other_cols.seeds,
                                       thresholds, (name, reference_name), id_column,
                                       n_bootstrap, bootstrap_seed)
        reports[attr] = report
    return reports


# ------------------------------------------------------------------------------- outputs


def audit_markdown(reports: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown page of the audit: per attribute, the headline table (seed mean ± std
    [95% interval], as ``compare.md``), the per-group table, notes and paired differences."""
    parts = []
    for attr, rep in reports.items():
        meta = rep["audit"]
        metrics = default_metrics(rep)
        frame = comparison_frame({rep["strategy"]: dict(rep)}, metrics)
        lines = [f"## {rep['strategy']}: {attr}", "",
                 f"{meta['n_test']} test rows ({meta['n_unknown']} with unknown {attr}), "
                 f"{rep.get('n_seeds', 1)} model(s); {meta['kind']} task, label "
                 f"`{meta['label']}`" + (f"; threshold {meta['threshold']['text']}"
                                         if meta["kind"] == "binary" else "") + ".", "",
                 to_markdown(frame, baseline="").rstrip().replace(
                     "; (±%) change against the baseline mean.", "."), ""]
        by_group = rep["by_group"]
        keys = list(next(iter(by_group.values())))
        lines += ["| group | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
        for group, row in by_group.items():
            cells = [f"{row[k]:.0f}" if k == "n" else fmt(row[k]) for k in keys]
            lines.append(f"| {group} | " + " | ".join(cells) + " |")
        lines.append("")
        notes = list(meta["warnings"])
        if "gallery" in meta:
            notes.append(f"Gallery: {meta['gallery']}.")
        if meta["kind"] == "binary":
            notes.append(f"BA: {meta['bias_amplification']}.")
            notes.append("n/a: undefined (a rate of a group without positives or negatives, "
                         "a metric without training counts), never 0.")
        lines += [f"- {n}" for n in notes] + [""]
        if "paired" in rep:
            lines += [rep["paired"]["markdown"].rstrip(), ""]
        parts.append("\n".join(lines))
    return "# Fairness audit\n\n" + "\n".join(parts)


def plot_group_scores(prep: Prepared, attr: str, kind: str,
                      threshold: float | None = None) -> bytes:
    """PNG bytes: each group's score histogram within each true class (binary; a dashed
    line at the ``threshold``), or each group's error histogram (regression), for the
    first model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes, names = prep.groups[attr]
    labelled = [(k, n) for k, n in enumerate(names)] + ([(-1, UNKNOWN)]
                                                         if (codes < 0).any() else [])
    if kind == "binary":
        panels = [("true label 1", prep.y == 1), ("true label 0", prep.y == 0)]
        values, bins, xlabel = prep.preds[0], np.linspace(0, 1, 26), "score"
    else:
        err = np.asarray(prep.preds[0], np.float64) - prep.y
        panels = [("all rows", np.ones(len(err), dtype=bool))]
        lim = float(np.abs(err).max()) or 1.0
        values, bins, xlabel = err, np.linspace(-lim, lim, 31), "prediction - label"
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (title, mask) in zip(axes[0], panels, strict=True):
        for k, n in labelled:
            sel = mask & (codes == k)
            if sel.any():
                ax.hist(values[sel], bins=bins, histtype="step", density=True, linewidth=1.4,
                        label=f"{n} ({int(sel.sum())})")
        if threshold is not None:
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{attr}: {title}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _file_name(attr: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", attr).strip("_") or "group"


def report_file(attr: str) -> str:
    """The file name of a protected column's report (``<name>.json``, made safe)."""
    return f"{_file_name(attr)}.json"


def write_audit(out: str | Path, reports: Mapping[str, Mapping[str, Any]],
                figures: Mapping[str, bytes] | None = None,
                galleries: Mapping[str, bytes] | None = None) -> list[Path]:
    """Write an audit's files into ``out``: ``<attribute>.json`` (the report, NaN as
    null), ``audit.md``, ``<attribute>_metrics.png`` (headline metrics with intervals),
    the ``figures`` given (``<attribute>_scores.png``) and ``galleries``
    (``<attribute>_gallery.png``). Returns the paths written."""
    out = Path(out)
    written = []
    pngs = {f"{_file_name(a)}_metrics.png": plot_comparison(comparison_frame(
        {r["strategy"]: dict(r)}, default_metrics(r))) for a, r in reports.items()}
    pngs.update({f"{_file_name(a)}_scores.png": png for a, png in (figures or {}).items()})
    pngs.update({f"{_file_name(a)}_gallery.png": png for a, png in (galleries or {}).items()})
    markdown = audit_markdown(reports)  # everything computed before the first file
    earlier = _manifest(out)
    for attr, rep in reports.items():
        body = {k: v for k, v in rep.items() if k != "paired"}
        if "paired" in rep:
            body["paired"] = rep["paired"]["json"]
        path = out / report_file(attr)
        write_json(path, body)
        written.append(path)
    atomic_write_bytes(out / "audit.md", markdown.encode())
    written.append(out / "audit.md")
    for fname, png in pngs.items():
        atomic_write_bytes(out / fname, png)
        written.append(out / fname)
    # An earlier audit's files that this one did not write again (another group, a gallery)
    # would read as part of this report: removed; files audit never wrote are left alone.
    names = {p.name for p in written}
    for name in earlier - names:
        (out / name).unlink(missing_ok=True)
    atomic_write_bytes(out / MANIFEST, "\n".join(sorted(names)).encode() + b"\n")
    return written


#: The list of files the last audit wrote into its folder (replaced by the next one).
MANIFEST = ".audit-files"


def _manifest(out: Path) -> set[str]:
    """The file names an earlier audit wrote into ``out`` (plain names only)."""
    try:
        lines = (out / MANIFEST).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return set()
    return {n for n in lines if n and n == Path(n).name and not n.startswith(".")}


def audit_files(predictions: str | Path, out: str | Path, *, groups: Sequence[str] |
                Mapping[str, str] = ("group",), val: str | Path | None = None,
                train: str | Path | None = None, compare: str | Path | None = None,
                name: str | None = None, images: str | None = None,
                shards: str | Path | None = None, gallery_k: int = DEFAULT_PER_KIND,
                required: Sequence[tuple[str, str]] = (), **options: Any
                ) -> dict[str, dict[str, Any]]:
    """:func:`audit_predictions` of files, writing :func:`write_audit`'s outputs.

    ``predictions``, ``val``, ``train`` and ``compare`` (the reference) are CSV or Parquet
    files; the model is named after its file unless ``name`` is given, the reference after
    its file. ``images`` (a column of image paths, relative to the predictions file) and
    ``shards`` (a shard folder holding the test images under the table's ids) are the
    gallery's image sources (:func:`audit_frame`). ``required``: (column, role) pairs the
    predictions must hold (an ``--id`` or ``--split`` the user named, optional otherwise).
    ``options`` go to :func:`audit_predictions`.
    """
    group_map = parse_groups(groups)
    text = [*group_map, options.get("id_column") or "id", *([images] if images else [])]
    frame = read_table(predictions, text)
    if not len(frame):
        raise FacebalanceError(f"audit: {predictions} has no rows")
    for column, role in required:
        _require(frame, column, role, str(predictions))
    kwargs: dict[str, Any] = dict(options)
    if val is not None:
        rows = _numbered(read_table(val, text))  # row numbers of the file, before the split
        split = options.get("split")
        if split and split in rows.columns:
            # A file with a split column (the predictions file itself, say): its val rows
            # only; its test rows must not calibrate the threshold.
            rows = rows[_split_values(rows, split) == "val"]
            if not len(rows):
                raise FacebalanceError(f"audit: the validation file {val} has a {split!r} "
                                       "column and no 'val' row in it")
        if not len(rows):
            raise FacebalanceError(f"audit: the validation file {val} has no rows")
        kwargs["val"], kwargs["val_source"] = rows.drop(columns=[split] if split in rows
                                                        else []), str(val)
    if train is not None:
        kwargs["train"] = read_table(train, text)
    if compare is not None:
        kwargs["reference"] = read_table(compare, text)
        kwargs["reference_name"] = Path(compare).stem
        kwargs["reference_source"] = str(compare)
    return audit_frame(frame, out, groups=group_map, name=name or Path(predictions).stem,
                       source=str(predictions), images=images,
                       image_root=Path(predictions).parent, shards=shards,
                       gallery_k=gallery_k, **kwargs)


def audit_frame(frame: pd.DataFrame, out: str | Path, *,
                groups: Sequence[str] | Mapping[str, str] = ("group",),
                source: str = "the predictions", images: str | None = None,
                image_root: str | Path = ".", shards: str | Path | None = None,
                gallery_k: int = DEFAULT_PER_KIND, extra_meta: Mapping[str, Any] | None = None,
                **options: Any) -> dict[str, dict[str, Any]]:
    """:func:`audit_predictions` of a table, writing :func:`write_audit`'s outputs: the
    reports, ``audit.md``, the metric and score figures and, with an image source, each
    attribute's gallery of most confident mistakes (:mod:`facebalance.gallery`).

    Parameters
    ----------
    frame, groups, source
        As :func:`audit_predictions`; ``options`` are its other arguments.
    out
        Folder to write into.
    images
        A column of image file paths (relative to ``image_root``, or absolute).
    shards
        A shard folder holding the test images under the ids of the ``id`` column (a row
        with a blank ``images`` cell is looked up there too).
    gallery_k
        Faces per kind of mistake and group.
    extra_meta
        Entries added to each report's ``audit`` (``model``: how a model file was run).
    """
    group_map = parse_groups(groups)
    reports = audit_predictions(frame, groups=group_map, source=source, **options)
    for rep in reports.values():
        rep["audit"].update(extra_meta or {})
    kind = options.get("kind", "binary")
    label = options.get("label", "label")
    cols = score_columns(frame, options.get("scores"), kind, source)
    id_column = options.get("id_column", "id")
    id_column = id_column if id_column and id_column in frame.columns else None
    prep = prepare_predictions(
        frame, label=label, scores=cols, groups=group_map, kind=kind, id_column=id_column,
        split=options.get("split", "split"), strict=False, source=source,
        age_bins=options.get("age_bins", ()))
    thresholds = {attr: next(iter(rep.get("threshold", {}).values()), None)
                  for attr, rep in reports.items()}
    figures = {}
    if kind in ("binary", "regression"):
        figures = {attr: plot_group_scores(prep, attr, kind, thresholds[attr])
                   for attr in reports}
    galleries = {}
    if images is None and shards is None:
        for rep in reports.values():
            rep["audit"]["gallery"] = ("none: no image source was given (--images COLUMN or "
                                       "--shards DIR)")
    else:
        if images is not None:
            _require(prep.test, images, "image", source)
        if shards is not None and id_column is None:
            raise FacebalanceError(ERR_SHARDS_NO_ID.format(
                source=source, column=options.get("id_column") or "id"))
        galleries = _galleries(prep, reports, cols, kind=kind, thresholds=thresholds,
                               images=images, image_root=Path(image_root), shards=shards,
                               id_column=id_column, k=gallery_k)
    write_audit(out, reports, figures, galleries)
    return reports


def _galleries(prep: Prepared, reports: Mapping[str, dict[str, Any]], cols: ScoreColumns, *,
               kind: str, thresholds: Mapping[str, float | None], images: str | None,
               image_root: Path, shards: str | Path | None, id_column: str | None,
               k: int) -> dict[str, bytes]:
    """Each attribute's gallery PNG of the first model's most confident mistakes; only the
    faces shown are read (from the image column, else the shards)."""
    scores = y_pred = None
    if kind == "binary":
        scores = prep.preds[0]
    elif kind == "multiclass" and len(cols.columns[0]) > 1:
        scores = np.stack([_probabilities(prep.test, c, id_column) for c in cols.columns[0]],
                          axis=1)
    else:
        y_pred = prep.preds[0]
    picks = {attr: pick_mistakes(prep.y, prep.groups[attr][0], kind=kind, scores=scores,
                                 threshold=thresholds[attr], y_pred=y_pred, k=k,
                                 class_names=prep.class_names) for attr in reports}
    rows = np.unique(np.concatenate([p.shown() for p in picks.values()]))
    where = {int(r): _where(prep.test, int(r), id_column) for r in rows}
    faces: dict[int, np.ndarray] = {}
    from_shards = {}
    for r in rows:
        path = _group_text(prep.test[images].iloc[r]) if images else None
        if path is not None:
            full = Path(path) if Path(path).is_absolute() else image_root / path
            faces[int(r)] = load_image_file(full, where[int(r)])
        elif shards is not None:
            from_shards[int(r)] = str(prep.test[id_column].iloc[r])
        else:
            raise FacebalanceError(ERR_NAN.format(role="image", column=images,
                                                  where=where[int(r)]))
    if from_shards:
        faces.update(images_from_shards(shards, from_shards, where))
    out = {}
    for attr, rep in reports.items():
        names = prep.groups[attr][1]
        what = {"binary": f"threshold {fmt(thresholds[attr])}", "multiclass": "wrong class",
                "regression": "prediction - label"}[kind]
        title = (f"{rep['strategy']}, {attr}: the most confident mistakes of each group "
                 f"({what}; model {rep['audit']['scores'][f'seed{cols.seeds[0]}']})")
        labels = {i: n if attr in prep.named_bins else f"{attr}={n}"
                  for i, n in enumerate([*names, UNKNOWN])}
        labels[-1] = labels.pop(len(names))  # code -1: the rows without a group value
        out[attr] = draw_gallery(picks[attr], faces, labels, title=title, k=k)
        shown = sum(len(r) for per in picks[attr].rows.values() for r in per.values())
        rep["audit"]["gallery"] = (f"{_file_name(attr)}_gallery.png: {shown} faces, up to "
                                   f"{k} per kind of mistake and group, of the first model")
    return out


# ---------------------------------------------------------------------------------- pairs


def _stat(values: np.ndarray) -> dict[str, Any]:
    """Row 0 is the full test set (the value), rows 1.. the bootstrap resamples."""
    s = summarize(values[1:])
    return {"value": float(values[0]), "ci95": {"lo": s["lo"], "hi": s["hi"]}}


def _pair_group(frame: pd.DataFrame, column: str, strict: bool, id_column: str
                ) -> tuple[np.ndarray, list[str], int]:
    """The group of each pair (codes; ``-1`` when the faces differ or one is unknown), the
    names and how many pairs have an unknown face."""
    a_col, b_col = f"{column}_a", f"{column}_b"
    both = pd.concat([frame[a_col], frame[b_col]], ignore_index=True)
    codes, names = group_codes(both)
    a, b = codes[:len(frame)], codes[len(frame):]
    unknown = (a < 0) | (b < 0)
    if strict and unknown.any():
        i = int(np.argmax(unknown))
        raise FacebalanceError(ERR_STRICT.format(
            where=_where(frame, i, id_column), column=a_col if a[i] < 0 else b_col))
    return np.where((a == b) & ~unknown, a, -1), names, int(unknown.sum())


def audit_pairs(frame: pd.DataFrame, *, score: str = "score", same: str = "same",
                id_a: str = "id_a", id_b: str = "id_b", groups: Sequence[str] = (),
                identity_a: str | None = "identity_a", split: str | None = "split",
                threshold: float | None = None, fars: Sequence[float] = (0.01, 0.001),
                strict: bool = False, n_bootstrap: int = 500, bootstrap_seed: int = 0,
                source: str = "the pairs") -> dict[str, Any]:
    """Verification metrics of a face verifier from its scored pairs, as ``verify``
    reports them.

    Parameters
    ----------
    frame
        One row per pair: ``id_a``, ``id_b``, ``same`` (1 genuine, 0 impostor), ``score``
        (higher: more likely the same person) and, per group column ``g``, ``g_a`` and
        ``g_b`` (each face's group); optionally ``identity_a`` and a ``split`` column
        (``val`` pairs choose the threshold, ``test`` pairs are measured).
    score, same, id_a, id_b
        Column names.
    groups
        Group names ``g`` whose columns ``g_a`` / ``g_b`` the table holds. A pair counts
        in a group when both faces belong to it; pairs across groups or with an unknown
        face count in the overall rates only.
    identity_a
        Identity of the first face: the bootstrap resamples identities (pairs of one
        identity are not independent); without it, the first faces (``id_a``).
    split
        Split column, used when present.
    threshold
        The global threshold; default: the most accurate one on the val pairs, or, without
        them, on the test pairs (the report says which).
    fars
        False accept rates of the ``tar_at_far_<f>`` metrics.
    strict
        A missing group value is an error naming the pair.
    n_bootstrap, bootstrap_seed
        Bootstrap resamples and their seed.
    source
        How error messages name the table.

    Returns
    -------
    dict
        ``metrics`` (AUC, accuracy, F1, FMR, FNMR, EER, TAR@FAR and per group column
        ``fmr_ratio_<g>`` / ``fnmr_ratio_<g>``, each ``{"value", "ci95"}``), ``by_group``
        (``{g: {name: {"fmr", "fnmr", "n_genuine", "n_impostor"}}}``), ``threshold`` and
        ``audit`` (provenance, unknown pairs, warnings).
    """
    for column, role in ((id_a, "id"), (id_b, "id"), (same, "same"), (score, "score")):
        _require(frame, column, role, source)
    for g in groups:
        _require(frame, f"{g}_a", "group", source)
        _require(frame, f"{g}_b", "group", source)
    test, val, _ = _split_rows(frame, split, None, source)
    pair_key = test[id_a].astype(str) + "\0" + test[id_b].astype(str)
    dup = pair_key.duplicated(keep=False).to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        second = int(np.flatnonzero((pair_key == pair_key.iloc[i]).to_numpy())[1])
        raise FacebalanceError(ERR_DUPLICATE_PAIR.format(
            a=_cell(test[id_a], i), b=_cell(test[id_b], i), source=source,
            first=_where(test, i, None), second=_where(test, second, None)))

    def labels(rows: pd.DataFrame, split_name: str) -> tuple[np.ndarray, np.ndarray]:
        y = _numbers(rows, same, "same", id_a)
        bad = (y != 0) & (y != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise FacebalanceError(ERR_PAIRS_SAME.format(column=same, value=_cell(rows[same], i),
                                                         where=_where(rows, i, id_a)))
        if y.all() or not y.any():
            raise FacebalanceError(ERR_PAIRS_BOTH.format(
                split=split_name, genuine=int(y.sum()), impostor=int(len(y) - y.sum())))
        return _numbers(rows, score, "score", id_a).astype(np.float64), y.astype(bool)

    scores, is_same = labels(test, "test")
    if threshold is not None:
        thr = float(threshold)
        how = {"source": "given", "text": f"given: {thr:g}"}
    elif len(val):
        thr = best_threshold(*labels(val, "val"))
        how = {"source": "validation",
               "text": f"the most accurate on the {len(val)} validation pairs, as verify"}
    else:
        thr = best_threshold(scores, is_same)
        how = {"source": "test",
               "text": f"the most accurate on the {len(test)} test pairs themselves: no "
                       "validation pairs or threshold were given, so it has seen the test "
                       "labels"}
    cluster_col = identity_a if identity_a and identity_a in test.columns else id_a
    cluster = pd.factorize(test[cluster_col].astype(str))[0]
    _check_bootstrap_size(n_bootstrap, len(test))
    weights = np.vstack([np.ones(len(test)), bootstrap_weights(
        int(cluster.max()) + 1, n_bootstrap, bootstrap_seed)[:, cluster]])
    fars = tuple(float(f) for f in fars)
    metrics = dict(verifier_metrics(scores, is_same, thr, fars, weights))
    by_group: dict[str, Any] = {}
    what = "identities" if cluster_col == identity_a else "first faces"
    meta: dict[str, Any] = {"source": source, "threshold": how, "warnings": [],
                            "bootstrap": f"{n_bootstrap} resamples of the {what} "
                                         f"({cluster_col})", "n_unknown": {}}
    for g in groups:
        codes, names, n_unknown = _pair_group(test, g, strict, id_a)
        within = sorted({names[k] for k in codes[codes >= 0]})
        if len(within) < 2:
            # A max/min ratio of one group (or none) is 1 or n/a and would read as fair.
            raise FacebalanceError(
                f"audit: {len(within)} {g} group(s) have test pairs with both faces in them "
                f"({', '.join(within) or 'none'}; the faces' groups: {', '.join(names)}); "
                "per-group FMR/FNMR and their ratios need two or more")
        values, rates = group_rates_weighted(scores, is_same, codes, thr, weights)
        for rate in ("fmr", "fnmr"):
            metrics[f"{rate}_ratio_{g}"] = max_min_ratio(rates[rate])
        by_group[g] = {names[k]: {rate: _stat(rates[rate][:, j])
                                            for rate in ("fmr", "fnmr")}
                       | {"n_genuine": int((is_same & (codes == k)).sum()),
                          "n_impostor": int((~is_same & (codes == k)).sum())}
                       for j, k in enumerate(values)}
        meta["n_unknown"][g] = n_unknown
        if n_unknown:
            meta["warnings"].append(
                f"{n_unknown} pairs have a face without a {g} value ({UNKNOWN}): they count "
                "in the overall rates, in no group")
        for key, row in by_group[g].items():
            for rate, kind in (("fmr", "impostor"), ("fnmr", "genuine")):
                if row[f"n_{kind}"] == 0:
                    meta["warnings"].append(f"{g}={key} has no {kind} pair: its "
                                            f"{rate.upper()} is undefined (null)")
    return {"n_test_genuine": int(is_same.sum()), "n_test_impostor": int((~is_same).sum()),
            "threshold": {"value": thr, **how},
            "metrics": {k: _stat(np.asarray(v)) for k, v in metrics.items()},
            "by_group": by_group, "audit": meta}


def pairs_markdown(report: Mapping[str, Any]) -> str:
    """The pairs audit as markdown: metrics with intervals, then each group's rates."""

    def cell(m: Mapping[str, Any]) -> str:
        if not np.isfinite(m["value"] if m["value"] is not None else np.nan):
            return "n/a"
        return f"{fmt(m['value'])} [{fmt(m['ci95']['lo'])}, {fmt(m['ci95']['hi'])}]"

    lines = ["# Verification audit", "",
             f"{report['n_test_genuine']} genuine and {report['n_test_impostor']} impostor "
             f"test pairs; threshold {fmt(report['threshold']['value'])} "
             f"({report['threshold']['text']}); intervals: {report['audit']['bootstrap']}.",
             "", "| metric | value [95% interval] |", "|---|---|"]
    lines += [f"| {k} | {cell(m)} |" for k, m in report["metrics"].items()]
    for g, rows in report["by_group"].items():
        lines += ["", f"Per {g} group at the one global threshold:", "",
                  "| group | FMR | FNMR | genuine | impostor |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {cell(r['fmr'])} | {cell(r['fnmr'])} | {r['n_genuine']} | "
                  f"{r['n_impostor']} |" for k, r in rows.items()]
    lines += [""] + [f"- {w}" for w in report["audit"]["warnings"]]
    return "\n".join(lines) + "\n"


def write_pair_audit(out: str | Path, report: Mapping[str, Any]) -> list[Path]:
    """Write ``pairs.json`` (NaN as null) and ``pairs.md`` into ``out``."""
    out = Path(out)
    markdown = pairs_markdown(report)
    write_json(out / "pairs.json", report)
    atomic_write_bytes(out / "pairs.md", markdown.encode())
    return [out / "pairs.json", out / "pairs.md"]



# ------------------------------------------------------------------- command-line options


def _given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options given on the command line (typer passes None / [] for the others)."""
    return {k: v for k, v in options.items() if v is not None and v != [] and v != ()}


def _merged(config: str | Path | None, options: Mapping[str, Any],
            keys: Sequence[str]) -> dict[str, Any]:
    """YAML options, overridden by those given on the command line; file paths in the
    YAML are relative to its folder."""
    merged: dict[str, Any] = {}
    if config:
        merged = {k: v for k, v in load_config(config, keys).items() if v is not None}
        for key in ("val", "train", "compare", "shards"):
            if merged.get(key) and not Path(merged[key]).is_absolute():
                merged[key] = Path(config).parent / merged[key]
    merged.update(_given(options))
    return merged


def _listed(value: Any) -> list[Any]:
    """A YAML or command-line list: ``a``, ``[a, b]`` or ``"a, b"`` (numbers)."""
    if value is None:
        return []
    if isinstance(value, str | int | float):
        return [value]
    return list(value)


def _floats(value: Any, what: str, example: str = "20,30,40") -> list[float]:
    items = [p for v in _listed(value) for p in str(v).split(",") if p.strip()]
    try:
        numbers = [float(p) for p in items]
    except ValueError:
        raise FacebalanceError(f"audit: {what} {value!r}: expected numbers such as "
                               f"{example}") from None
    if not all(np.isfinite(numbers)):
        raise FacebalanceError(f"audit: {what} {value!r}: expected finite numbers such as "
                               f"{example}")
    return numbers


def _float_option(o: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    """A number option from the command line or the YAML (None when not given), or one
    clear error."""
    value = o.get(key)
    if value is None:
        return None
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not lo <= number <= hi:  # NaN fails too
        raise FacebalanceError(f"audit: {key} = {value!r}; expected a number in [{lo:g}, "
                               f"{hi:g}]")
    return number


def _bool_option(o: Mapping[str, Any], key: str) -> bool:
    """A yes/no option: YAML's booleans, or true/false/yes/no/1/0 as text."""
    value = o.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise FacebalanceError(f"audit: {key} = {value!r}; expected true or false")


def _check_out(out: str | Path) -> None:
    """The output folder may exist, but not as a file (checked before any work)."""
    for folder in (Path(out), *Path(out).parents):
        if folder.exists() and not folder.is_dir():
            raise FacebalanceError(f"audit: --out {out}: {folder} is a file; give a folder for "
                                   "the report")


#: Bootstrap resamples at most (as ``evaluate.bootstrap``); the resample weights are a dense
#: (resamples x rows) array.
MAX_BOOTSTRAP = 100_000
#: Resamples x rows at most (about 3.2 GB of weights and their temporaries).
MAX_BOOTSTRAP_CELLS = 400_000_000


def _int_option(o: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    """An integer option from the command line or the YAML, or one clear error."""
    value = o.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FacebalanceError(f"audit: {key} = {value!r}; expected an integer from {lo} to "
                               f"{hi}")
    try:
        number = int(value)
    except ValueError:
        raise FacebalanceError(f"audit: {key} = {value!r}; expected an integer from {lo} to "
                               f"{hi}") from None
    if not lo <= number <= hi:
        raise FacebalanceError(f"audit: {key} = {number}; expected an integer from {lo} to "
                               f"{hi}")
    return number


def _check_bootstrap_size(n_bootstrap: int, rows: int) -> None:
    if n_bootstrap * rows > MAX_BOOTSTRAP_CELLS:
        raise FacebalanceError(
            f"audit: {n_bootstrap} bootstrap resamples of {rows:,} rows need "
            f"{n_bootstrap * rows * 8 / 1e9:.0f} GB of resample weights; lower --bootstrap "
            f"(at most {MAX_BOOTSTRAP_CELLS // max(rows, 1):,} for this file)")


def audit_command(predictions: str | Path, out: str | Path, *,
                  config: str | Path | None = None, **options: Any
                  ) -> dict[str, dict[str, Any]]:
    """``facebalance audit``: the options (keys of :data:`CONFIG_KEYS`; None when not
    given) merged over the YAML ``config``, then :func:`audit_files`."""
    o = _merged(config, options, CONFIG_KEYS)
    _check_out(out)
    groups = o.get("group") or ["group"]
    if isinstance(groups, str):
        groups = [groups]
    # An --id or --split the user named must exist; the defaults are optional columns.
    required = [(str(o[k]), k) for k in ("id", "split") if k in o and str(o[k]) != k]
    return audit_files(
        predictions, out, groups=groups, val=o.get("val"), train=o.get("train"),
        required=required,
        compare=o.get("compare"), name=o.get("name"), label=str(o.get("label", "label")),
        scores=[str(s) for s in _listed(o.get("score"))] or None,
        kind=str(o.get("kind", "binary")), id_column=str(o.get("id", "id")),
        split=str(o.get("split", "split")),
        threshold=_float_option(o, "threshold", 0.0, 1.0), strict=_bool_option(o, "strict"),
        age_bins=_floats(o.get("age_bins"), "age_bins"),
        n_bootstrap=_int_option(o, "bootstrap", 500, 1, MAX_BOOTSTRAP),
        bootstrap_seed=_int_option(o, "seed", 0, 0, 2**31 - 1),
        kl_bins=_int_option(o, "kl_bins", 50, 2, 10_000),
        images=None if o.get("images") is None else str(o["images"]), shards=o.get("shards"),
        gallery_k=_int_option(o, "gallery", DEFAULT_PER_KIND, 1, 50))


def audit_pairs_command(pairs: str | Path, out: str | Path, *,
                        config: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """``facebalance audit-pairs``: the options (keys of :data:`PAIR_CONFIG_KEYS`) merged
    over the YAML ``config``; reads the pairs file, writes :func:`write_pair_audit`'s
    files."""
    o = _merged(config, options, PAIR_CONFIG_KEYS)
    _check_out(out)
    groups = [str(g) for g in _listed(o.get("group"))]
    text = [*(f"{g}_{s}" for g in groups for s in "ab"), o.get("id_a", "id_a"),
            o.get("id_b", "id_b"), o.get("identity_a", "identity_a")]
    frame = read_table(pairs, text)
    report = audit_pairs(
        frame, score=str(o.get("score", "score")), same=str(o.get("same", "same")),
        id_a=str(o.get("id_a", "id_a")), id_b=str(o.get("id_b", "id_b")), groups=groups,
        identity_a=str(o.get("identity_a", "identity_a")), split=str(o.get("split", "split")),
        threshold=_float_option(o, "threshold", -np.inf, np.inf),
        fars=_fars(o.get("far")), strict=_bool_option(o, "strict"),
        n_bootstrap=_int_option(o, "bootstrap", 500, 1, MAX_BOOTSTRAP),
        bootstrap_seed=_int_option(o, "seed", 0, 0, 2**31 - 1), source=str(pairs))
    write_pair_audit(out, report)
    return report


def _fars(value: Any) -> tuple[float, ...]:
    """The false accept rates of ``--far``: each in (0, 1)."""
    fars = _floats(value, "far", "0.01,0.001") or [0.01, 0.001]
    bad = [f for f in fars if not 0 < f < 1]
    if bad:
        raise FacebalanceError(f"audit: far {bad[0]:g} is invalid; expected false accept rates "
                               "in (0, 1), such as 0.01,0.001")
    return tuple(fars)


# -------------------------------------------------------------------------- model files

#: How a model's output becomes scores (``--output``).
MODEL_OUTPUTS = ("logit", "probability", "softmax", "value")
#: Default ``--output`` per task kind.
DEFAULT_OUTPUT = {"binary": "logit", "multiclass": "softmax", "regression": "value"}
#: Default normalisation: the pipeline's own models take ``(x / 255 - 0.5) / 0.5`` in
#: [-1, 1]; ImageNet models want mean 0.485,0.456,0.406 and std 0.229,0.224,0.225.
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ERR_MODEL_OUTPUT = ("audit-model: output {output!r} is invalid for a {kind} model; valid "
                    "values: {valid}")
ERR_MODEL_INDEX = ("audit-model: {path} outputs {n} columns per image; {why} (--index, "
                   "0..{last})")
ERR_MODEL_ROWS = "audit-model: {path} returned {got} rows for a batch of {want} images"
ERR_MODEL_COLUMN = ("audit-model: the prepared data {data} has no {role} column {column!r}; "
                    "its columns: {columns}")
ERR_MODEL_NORM = ("audit-model: {what} {value!r} is invalid; expected 1 or 3 numbers "
                  "(R,G,B){positive}")


def _per_channel(value: Any, what: str, positive: bool) -> tuple[float, float, float]:
    try:
        numbers = [float(v) for v in _floats(value, what)]
    except FacebalanceError:
        numbers = []
    if len(numbers) == 1:
        numbers *= 3
    if len(numbers) != 3 or (positive and min(numbers) <= 0):
        raise FacebalanceError(ERR_MODEL_NORM.format(what=what, value=value,
                                                     positive=", each > 0" if positive
                                                     else ""))
    return numbers[0], numbers[1], numbers[2]


def model_scores(out: np.ndarray, *, kind: str, output: str, index: int | None,
                 path: str | Path = "the model") -> np.ndarray:
    """A batch of model outputs ``(B,)`` / ``(B, C)`` as the audit's scores: binary
    positive-class probabilities ``(B,)``, multiclass probabilities ``(B, C)`` or
    regression values ``(B,)``; sigmoid and softmax in float32, as the pipeline's heads."""
    import torch

    valid = {"binary": ("logit", "probability", "softmax"),
             "multiclass": ("logit", "softmax", "probability"), "regression": ("value",)}[kind]
    if output not in valid:
        raise FacebalanceError(ERR_MODEL_OUTPUT.format(output=output, kind=kind,
                                                       valid=", ".join(valid)))
    out = np.asarray(out).reshape(len(out), -1)
    n = out.shape[1]

    def column(default: int | None, why: str) -> int:
        col = default if index is None else index
        if index is not None and not 0 <= index < n:
            why = f"--index {index} is not one of them"
        if col is None or not 0 <= col < n:
            raise FacebalanceError(ERR_MODEL_INDEX.format(path=path, n=n, last=n - 1,
                                                          why=why))
        return col

    bad = ~np.isfinite(out)
    if bad.any():
        raise FacebalanceError(
            f"audit-model: {path} output {float(out[bad][0])} for image "
            f"{int(np.argmax(bad.any(1)))} "
            "of a batch; check the model and its --mean / --std")
    t = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
    if kind == "multiclass":
        if n < 2:
            raise FacebalanceError(
                f"audit-model: {path} outputs {n} column per image; a multiclass model needs "
                "one per class (one column: --kind binary or regression)")
        probs = (torch.softmax(t, dim=1) if output != "probability" else t).numpy()
        _check_probabilities(probs, path, output)
        return probs
    if kind == "regression":
        return out[:, column(0 if n == 1 else None, "name the predicted value's column")
                   ].astype(np.float64)
    if output == "softmax":
        if n < 2:
            raise FacebalanceError(ERR_MODEL_INDEX.format(
                path=path, n=n, last=n - 1, why="a softmax needs 2 or more columns"))
        return torch.softmax(t, dim=1)[:, column(1 if n == 2 else None,
                                                 "name the positive class's column")].numpy()
    v = t[:, column(0 if n == 1 else None, "name the positive class's column")]
    scores = (torch.sigmoid(v) if output == "logit" else v).numpy()
    _check_probabilities(scores, path, output)
    return scores


def _check_probabilities(p: np.ndarray, path: str | Path, output: str) -> None:
    """Probabilities the model gave itself (``--output probability``) must be in [0, 1]."""
    bad = (p < 0) | (p > 1)
    if output == "probability" and bad.any():
        raise FacebalanceError(
            f"audit-model: {path} output {float(p[bad][0]):g}, outside [0, 1], with --output "
            "probability; if its outputs are logits, use --output logit (softmax for "
            "several columns)")


def score_shards(model: Any, split_dir: str | Path, *, kind: str, output: str,
                 index: int | None, input_size: int | None, mean: Sequence[float],
                 std: Sequence[float], batch_size: int) -> tuple[np.ndarray, list[str]]:
    """Scores of every image of a shard folder (in :func:`read_columns` order), streamed in
    batches of ``batch_size`` (never the whole split decoded at once); and the ids."""
    import torch

    from facebalance.data.shards import decode_batch, iter_batches

    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    scores, ids = [], []
    for i, batch in enumerate(iter_batches(split_dir, ["id", "image"], batch_rows=batch_size)):
        images, _ = decode_batch(batch, split_dir)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
        if input_size and tuple(x.shape[-2:]) != (input_size, input_size):
            x = torch.nn.functional.interpolate(x, size=(input_size, input_size),
                                                mode="bilinear", antialias=True,
                                                align_corners=False)
        x = (x - mean_t) / std_t
        out = model(x.numpy())
        if len(out) != len(images):
            raise FacebalanceError(ERR_MODEL_ROWS.format(path=getattr(model, "path", "?"),
                                                         got=len(out), want=len(images)))
        scores.append(model_scores(out, kind=kind, output=output, index=index,
                                   path=getattr(model, "path", "the model")))
        ids.extend(batch["id"].astype(str))
        if (i + 1) % 20 == 0:
            log.info("scored %d images of %s", len(ids), split_dir)
    return np.concatenate(scores), ids


def audit_model(model_path: str | Path, data: str | Path, out: str | Path, *,
                label: str | None = None, groups: Sequence[str] | None = None,
                kind: str = "binary", input_size: int | None = None,
                mean: Any = DEFAULT_MEAN, std: Any = DEFAULT_STD, output: str | None = None,
                index: int | None = None, batch_size: int = 64, name: str | None = None,
                gallery_k: int = DEFAULT_PER_KIND, **options: Any) -> dict[str, dict[str, Any]]:
    """Score a prepared dataset's test split (and val, for the threshold) with a model file,
    then audit the scores as :func:`audit_frame` does, the gallery drawn from the test
    shards.

    Parameters
    ----------
    model_path
        ``.pt2`` (torch.export), ``.onnx`` or a legacy TorchScript ``.pt``
        (:func:`facebalance.model_files.load_model_file`).
    data
        A prepared dataset: shard folders ``train/``, ``val/``, ``test/`` (``prepare``).
    out
        Folder of the audit's outputs.
    label, groups
        The true label column and protected column(s) of the shards; default the
        pipeline's ``dataset.target`` / ``dataset.protected`` (``blond``, ``male``).
    kind
        ``binary``, ``multiclass`` or ``regression``.
    input_size
        Side of the square input the model takes; default the data's image size (other
        sizes are resized, bilinear with antialiasing).
    mean, std
        Per-channel normalisation of ``x / 255`` (default 0.5, 0.5: [-1, 1], as the
        pipeline's models; :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` for most
        torchvision models).
    output
        ``logit`` (sigmoid / softmax applied here), ``probability``, ``softmax`` (of the
        columns, binary: the positive class's), ``value`` (regression); default per kind
        (:data:`DEFAULT_OUTPUT`).
    index
        The output column of the positive class (binary) or value (regression); needed
        when the model has several columns (a 40-attribute CelebA head).
    batch_size
        Images per forward pass.
    name, gallery_k, options
        The model's name in the report (default: the file's name), gallery faces per kind;
        other :func:`audit_predictions` options (threshold, strict, bootstrap, ...).
    """
    from facebalance.config import DatasetParams
    from facebalance.data.shards import open_parquet, read_columns, shard_files
    from facebalance.model_files import load_model_file

    if kind not in AUDIT_KINDS:
        raise FacebalanceError(ERR_KIND.format(kind=kind))
    output = output or DEFAULT_OUTPUT[kind]
    if output not in MODEL_OUTPUTS:
        raise FacebalanceError(ERR_MODEL_OUTPUT.format(output=output, kind=kind,
                                                       valid=", ".join(MODEL_OUTPUTS)))
    mean, std = _per_channel(mean, "mean", False), _per_channel(std, "std", True)
    data = Path(data)
    _check_out(out)  # before the model scores every image
    model = load_model_file(model_path)
    columns = [c for c in open_parquet(shard_files(data / "test")[0]).schema_arrow.names
               if c != "image"]
    defaults = DatasetParams()
    label = label or defaults.target
    groups = list(groups or [defaults.protected])
    for column, role in ((label, "label"), *((g.partition(":")[0], "group") for g in groups)):
        if column not in columns:
            raise FacebalanceError(ERR_MODEL_COLUMN.format(data=data, role=role, column=column,
                                                           columns=", ".join(columns)))
    group_map = parse_groups(groups)
    if input_size is None and model.input_size is not None:
        input_size = int(model.input_size[0])  # an ONNX model's static input shape

    columns = list(dict.fromkeys(["id", label, *group_map]))  # the label may be a group too
    parts = []
    for split in ("test", "val") if kind == "binary" else ("test",):
        refs = read_columns(data / split, columns)
        scores, ids = score_shards(model, data / split, kind=kind, output=output, index=index,
                                   input_size=input_size, mean=mean, std=std,
                                   batch_size=batch_size)
        if ids != list(refs["id"].astype(str)):  # both read the files in one order
            raise FacebalanceError(f"audit-model: {data / split} changed while it was read")
        frame = refs[columns].assign(split=split)
        if scores.ndim == 2:
            for c in range(scores.shape[1]):
                frame[f"p{c}"] = scores[:, c]
        else:
            frame["score" if kind == "binary" else "prediction"] = scores
        parts.append(frame)
    frame = pd.concat(parts, ignore_index=True)
    score_cols: str | list[str] = ("score" if kind == "binary" else "prediction"
                                   if kind == "regression" else
                                   ",".join(c for c in frame.columns if re.fullmatch(
                                       r"p\d+", str(c))))
    train = (read_columns(data / "train", columns[1:]).drop(columns=["_file", "_row"])
             if kind == "binary" else None)
    meta = {"file": str(model_path), "format": model.format, "loaded": model.note,
            "input_size": input_size or "the data's image size", "mean": list(mean),
            "std": list(std), "output": output, "index": index, "batch_size": batch_size,
            "data": str(data)}
    return audit_frame(frame, out, groups=group_map, source=str(model_path),
                       shards=data / "test", gallery_k=gallery_k, label=label,
                       scores=score_cols, kind=kind, id_column="id", split="split",
                       train=train, name=name or Path(model_path).stem,
                       extra_meta={"model": meta}, **options)
