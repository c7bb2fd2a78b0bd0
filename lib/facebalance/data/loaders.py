"""Label indexes of real face datasets: which image files to convert, with which labels.

A loader reads only the label files (text, CSV, file names), never an image, so a whole
dataset is checked in seconds and a wrong ``dataset.target`` fails before any decoding.
It returns a :class:`LabelIndex`: one row per image with ``file`` (path relative to the
image folder), ``id``, ``split``, ``line`` (where the label came from, for messages) and
attribute columns. :mod:`facebalance.data.convert` then streams the images into shards.

Formats (the layouts the datasets ship with):

- ``celeba``: ``img_align_celeba/``, ``list_attr_celeba.txt`` (count line, names line,
  then ``file`` and 40 values in {-1, 1}), ``list_eval_partition.txt`` (``file`` and
  0/1/2 for train/val/test), optional ``identity_CelebA.txt``. Label files are looked up
  in the root, then in ``Anno/`` and ``Eval/``.
- ``utkface``: ``age_gender_race_date.jpg[.chip.jpg]`` file names; gender 0 = male,
  race 0-4 = White, Black, Asian, Indian, Others. Malformed names are skipped and counted.
- ``fairface``: ``fairface_label_train.csv`` and ``fairface_label_val.csv`` with ``file``,
  ``age`` (bucket), ``gender``, ``race``. FairFace has no test split: its validation CSV
  becomes ``test`` and a stratified ``dataset.val_fraction`` of its train CSV ``val``.
- ``lfw``: identity folders (``Name/Name_0001.jpg``) and ``pairs.txt`` in the 10-fold
  format (``10 300`` header) or the simple one (``pairsDevTrain.txt``: a count header).
- ``folder``: any image folder plus a CSV with a file column and attribute columns.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facebalance.config import DatasetParams
from facebalance.data.synthfaces import AGE_BINS
from facebalance.errors import FacebalanceError, first_line

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
UTK_RACES = ("white", "black", "asian", "indian", "others")
FAIRFACE_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
                 "more than 70")
FAIRFACE_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian",
                  "Indian", "Middle Eastern")
#: LFW 10-fold protocol: folds 0-7 train, 8 val, 9 test.
LFW_FOLD_SPLITS = ("train",) * 8 + ("val", "test")
_UTK_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)")
_SUFFIXES = re.compile(r"(\.(jpe?g|png|bmp|webp|chip))+$", re.IGNORECASE)


@dataclass
class LabelIndex:
    """The images a dataset's label files describe, before any image is read.

    Attributes
    ----------
    records
        One row per image: ``file`` (relative to ``image_dir``), ``id``, ``split``,
        ``line`` (a label-file line, or -1 when labels come from the file name) and
        attribute columns.
    image_dir
        Folder the ``file`` paths are relative to.
    label_file
        What ``line`` numbers refer to (named in error messages).
    skipped
        Reason -> entries left out while indexing (e.g. ``malformed_name``).
    tables
        Extra Parquet tables written next to the splits (LFW ``pairs``).
    needs_attributes
        False for verification-only data (LFW): no target/protected check.
    default_crop
        Centre square the dataset's images want (CelebA: 128); 0: the largest.
    classes
        Column -> class names of a column whose values were text (code k = name k).
    left_out
        Text columns not carried into the shards (free text, file names).
    """

    records: pd.DataFrame
    image_dir: Path
    label_file: str
    skipped: dict[str, list[str]] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    needs_attributes: bool = True
    default_crop: int = 0
    classes: dict[str, list[str]] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)


def image_ids(files: pd.Series) -> pd.Series:
    """Image ids: the relative path without its image suffixes (``a/1.jpg.chip.jpg`` ->
    ``a/1``), so ids stay unique across sub-folders."""
    return files.str.replace(_SUFFIXES, "", regex=True)


def _find(root: Path, name: str, subdirs: tuple[str, ...] = ()) -> Path:
    for d in ("", *subdirs):
        path = root / d / name
        if path.is_file():
            return path
    where = ", ".join(str(root / d) for d in ("", *subdirs)) if subdirs else str(root)
    raise FacebalanceError(f"dataset: {name} not found in {where}")


def _dir(root: Path, sub: str, defaults: tuple[str, ...]) -> Path:
    """The image folder: ``dataset.images`` if set, else the first default that exists."""
    if sub:
        path = root / sub
        if not path.is_dir():
            raise FacebalanceError(f"dataset: image folder {path} (dataset.images) not found")
        return path
    for d in defaults:
        if (root / d).is_dir():
            return root / d
    return root


def stratified_split(strata: pd.DataFrame | None, n: int, val_fraction: float,
                     test_fraction: float, seed: int) -> np.ndarray:
    """Seeded split labels that keep each stratum's proportions in every split.

    Parameters
    ----------
    strata
        Columns whose value combinations are the strata (None: one stratum).
    n
        Number of rows.
    val_fraction, test_fraction
        Share of each stratum sent to ``val`` and ``test`` (rounded per stratum).
    seed
        Seed of the permutation.

    Returns
    -------
    numpy.ndarray
        ``n`` strings in {"train", "val", "test"}.
    """
    rng = np.random.default_rng(seed)
    labels = np.full(n, "train", dtype=object)
    if strata is None or strata.shape[1] == 0:
        groups = {(): np.arange(n)}
    else:
        groups = strata.reset_index(drop=True).groupby(list(strata.columns), sort=True).indices
    for key in sorted(groups, key=str):
        idx = rng.permutation(np.asarray(groups[key]))
        n_test = round(len(idx) * test_fraction)
        n_val = round(len(idx) * val_fraction)
        labels[idx[:n_test]] = "test"
        labels[idx[n_test:n_test + n_val]] = "val"
    return labels


def _strata(frame: pd.DataFrame, p: DatasetParams) -> pd.DataFrame:
    """Target and protected columns, each once; a numeric target with many values (age)
    by decade, so every stratum keeps enough rows to reach every split."""
    cols = list(dict.fromkeys(c for c in (p.target, p.protected) if c in frame.columns))
    strata = frame[cols].copy()
    for c in cols:
        if strata[c].nunique() > 20 and np.issubdtype(strata[c].dtype, np.number):
            strata[c] = (strata[c] // 10).astype(np.int64)
    return strata


def _read_whitespace_table(path: Path, skiprows: int, names: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep=r"\s+", skiprows=skiprows, header=None, names=names,
                            dtype={names[0]: str}, engine="c")
    except (pd.errors.ParserError, ValueError) as err:
        raise FacebalanceError(f"dataset: cannot parse {path}: {err}") from err
    bad = frame.isna().any(axis=1).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise FacebalanceError(
            f"dataset: {path} line {row + skiprows + 1}: expected {len(names)} fields "
            f"({names[0]} and {len(names) - 1} values)")
    return frame


def index_celeba(p: DatasetParams, root: Path, seed: int = 0) -> LabelIndex:
    """CelebA: 40 binary attributes (-1/1 -> 0/1, names as in the file), official splits."""
    attr_path = _find(root, "list_attr_celeba.txt", ("Anno",))
    part_path = _find(root, "list_eval_partition.txt", ("Eval", "Anno"))
    with attr_path.open() as fh:
        first = fh.readline().strip()
        names = fh.readline().split()
    if not first.isdigit() or not names:
        raise FacebalanceError(
            f"dataset: {attr_path} should start with an image count line and a line of "
            "attribute names")
    attrs = _read_whitespace_table(attr_path, 2, ["file", *names])
    if len(attrs) != int(first):
        log.warning("celeba: %s announces %s images and lists %d", attr_path, first, len(attrs))
    values = attrs[names].to_numpy()
    bad = ~np.isin(values, (-1, 1))
    if bad.any():
        r, c = (int(v[0]) for v in np.nonzero(bad))
        raise FacebalanceError(
            f"dataset: {attr_path} line {r + 3}: {names[c]} = {values[r, c]}; expected -1 or 1")
    records = pd.DataFrame({"file": attrs["file"]})
    records[names] = ((values + 1) // 2).astype(np.int8)
    records["line"] = np.arange(len(attrs), dtype=np.int32) + 3

    part = _read_whitespace_table(part_path, 0, ["file", "partition"])
    split_of = dict(zip(part["file"], part["partition"], strict=True))
    codes = records["file"].map(split_of)
    if codes.isna().any():
        missing = records.loc[codes.isna(), "file"].head(3).tolist()
        raise FacebalanceError(
            f"dataset: {int(codes.isna().sum())} images of {attr_path.name} have no split in "
            f"{part_path} (first: {', '.join(missing)})")
    if not codes.isin((0, 1, 2)).all():
        bad_file = records.loc[~codes.isin((0, 1, 2)), "file"].iloc[0]
        raise FacebalanceError(
            f"dataset: {part_path}: partition of {bad_file} is not 0, 1 or 2")
    records.insert(1, "split", np.asarray(SPLITS)[codes.astype(int).to_numpy()])

    ident = root / "identity_CelebA.txt"
    if not ident.is_file():
        ident = root / "Anno" / "identity_CelebA.txt"
    if ident.is_file():
        ids = _read_whitespace_table(ident, 0, ["file", "identity"])
        records["identity"] = records["file"].map(
            dict(zip(ids["file"], ids["identity"].astype(str), strict=True))).fillna("")
    records.insert(1, "id", image_ids(records["file"]))
    image_dir = _dir(root, p.images, ("img_align_celeba",))
    return LabelIndex(records, image_dir, str(attr_path), default_crop=128)


def parse_utkface_name(name: str) -> tuple[int, int, int] | None:
    """``(age, gender, race)`` from a UTKFace file name, or None when it is malformed."""
    m = _UTK_NAME.match(name)
    if not m:
        return None
    age, gender, race = (int(g) for g in m.groups()[:3])
    if not (0 <= age <= 120 and gender in (0, 1) and 0 <= race < len(UTK_RACES)):
        return None
    return age, gender, race


def _list_images(folder: Path) -> list[str]:
    # is_file(): regular files only (a FIFO named like an image would block its reader).
    return sorted(str(f.relative_to(folder)) for f in folder.rglob("*")
                  if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
                  and f.is_file())


def _race_columns(frame: pd.DataFrame, names: tuple[str, ...]) -> None:
    for k, name in enumerate(names):
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        frame[f"race_{slug}"] = (frame["race"] == k).astype(np.int8)


def index_utkface(p: DatasetParams, root: Path, seed: int = 0) -> LabelIndex:
    """UTKFace: labels parsed from file names; seeded stratified train/val/test split."""
    image_dir = _dir(root, p.images, ("UTKFace", "utkface"))
    files = _list_images(image_dir)
    if not files:
        raise FacebalanceError(f"dataset: no images in {image_dir}")
    parsed, keep, malformed = [], [], []
    for f in files:
        labels = parse_utkface_name(Path(f).name)
        if labels is None:
            malformed.append(f)
        else:
            parsed.append(labels)
            keep.append(f)
    if malformed:
        log.warning("utkface: skipped %d malformed file names (expected "
                    "age_gender_race_date.jpg), first: %s", len(malformed),
                    ", ".join(malformed[:5]))
    if not keep:
        raise FacebalanceError(f"dataset: no file in {image_dir} is named "
                               "age_gender_race_date.jpg")
    labels = np.asarray(parsed, dtype=np.int64)
    records = pd.DataFrame({"file": keep})
    records["age"] = labels[:, 0].astype(np.float32)
    records["age_group"] = np.digitize(labels[:, 0], AGE_BINS).astype(np.int8)
    records["male"] = (labels[:, 1] == 0).astype(np.int8)
    records["race"] = labels[:, 2].astype(np.int8)
    _race_columns(records, UTK_RACES)
    records["line"] = np.int32(-1)
    records.insert(1, "id", image_ids(records["file"]))
    records.insert(2, "split", stratified_split(_strata(records, p), len(records),
                                                p.val_fraction, p.test_fraction, seed))
    return LabelIndex(records, image_dir, f"file names in {image_dir}",
                      skipped={"malformed_name": malformed})


def _bad_utf8_line(path: Path) -> int:
    """The line of a file's first byte that is not UTF-8 (pandas' own offset counts from
    the chunk it was reading)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return data[:err.start].count(b"\n") + 1
    return 1


def _read_csv(path: Path, required: tuple[str, ...],
              reserved: Callable[[pd.Index], None] | None = None) -> pd.DataFrame:
    """A label CSV as text columns (a byte-order mark and Windows line ends allowed), plus
    ``line``; ``reserved`` checks the CSV's own column names first."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise FacebalanceError(f"dataset: {path} line {_bad_utf8_line(path)} is not UTF-8 "
                               "text; save the file as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise FacebalanceError(f"dataset: {path} is empty; expected a header line and one "
                               "row per image") from None
    except (OSError, pd.errors.ParserError, ValueError) as err:
        raise FacebalanceError(f"dataset: cannot read {path}: {first_line(err)}") from err
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise FacebalanceError(
            f"dataset: {path} lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(frame.columns)}")
    if frame.empty:
        raise FacebalanceError(f"dataset: {path} has a header but no rows; expected one row "
                               "per image")
    if reserved is not None:
        reserved(frame.columns)
    frame["line"] = np.arange(len(frame), dtype=np.int32) + 2  # header is line 1
    return frame


def _codes(frame: pd.DataFrame, column: str, values: tuple[str, ...], path: Path) -> np.ndarray:
    code = frame[column].map({v: k for k, v in enumerate(values)})
    if code.isna().any():
        r = int(np.flatnonzero(code.isna().to_numpy())[0])
        raise FacebalanceError(
            f"dataset: {path} line {frame['line'].iloc[r]}: {column} = "
            f"{frame[column].iloc[r]!r}; valid: {', '.join(values)}")
    return code.to_numpy().astype(np.int8)


def index_fairface(p: DatasetParams, root: Path, seed: int = 0) -> LabelIndex:
    """FairFace: train CSV -> train/val (stratified), val CSV -> test."""
    parts = []
    for csv_split, name in (("train", "fairface_label_train.csv"),
                            ("test", "fairface_label_val.csv")):
        path = _find(root, name)
        raw = _read_csv(path, ("file", "age", "gender", "race"))
        frame = pd.DataFrame({"file": raw["file"], "line": raw["line"]})
        frame["age_group"] = _codes(raw, "age", FAIRFACE_AGES, path)
        frame["male"] = (_codes(raw, "gender", ("Female", "Male"), path)).astype(np.int8)
        frame["race"] = _codes(raw, "race", FAIRFACE_RACES, path)
        _race_columns(frame, FAIRFACE_RACES)
        if csv_split == "train":
            split = stratified_split(_strata(frame, p), len(frame), p.val_fraction, 0.0, seed)
        else:
            split = np.full(len(frame), "test", dtype=object)
        frame.insert(1, "split", split)
        parts.append(frame)
    records = pd.concat(parts, ignore_index=True)
    records.insert(1, "id", image_ids(records["file"]))
    return LabelIndex(records, _dir(root, p.images, ()), "FairFace label CSVs")


def parse_lfw_pairs(path: str | Path) -> pd.DataFrame:
    """Pairs of an LFW ``pairs.txt`` (10-fold: ``10 300`` header) or simple-format list.

    Returns
    -------
    pandas.DataFrame
        ``name_a``, ``num_a``, ``name_b``, ``num_b``, ``same`` (int8), ``fold`` (0-based; 0
        for the simple format) and ``line`` (1-based line in the file).
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    if not lines:
        raise FacebalanceError(f"dataset: {path} is empty")
    head = lines[0].split()
    if not all(h.isdigit() for h in head) or len(head) not in (1, 2):
        raise FacebalanceError(
            f"dataset: {path} line 1: expected '<folds> <pairs per class>' (10-fold format) "
            f"or '<pairs per class>' (simple format), got {lines[0]!r}")
    folds, per_class = (int(head[0]), int(head[1])) if len(head) == 2 else (1, int(head[0]))
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        k = len(rows)
        fold = k // (2 * per_class)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            rows.append((parts[0], int(parts[1]), parts[0], int(parts[2]), 1, fold, n))
        elif len(parts) == 4 and parts[1].isdigit() and parts[3].isdigit():
            rows.append((parts[0], int(parts[1]), parts[2], int(parts[3]), 0, fold, n))
        else:
            raise FacebalanceError(
                f"dataset: {path} line {n}: expected 'name n1 n2' or 'name1 n1 name2 n2', "
                f"got {line!r}")
        same_expected = (k % (2 * per_class)) < per_class
        if bool(rows[-1][4]) != same_expected:
            kind = "matched" if same_expected else "mismatched"
            raise FacebalanceError(
                f"dataset: {path} line {n}: expected a {kind} pair here ({per_class} matched "
                f"then {per_class} mismatched per fold)")
    if len(rows) != folds * 2 * per_class:
        raise FacebalanceError(
            f"dataset: {path} lists {len(rows)} pairs; its header announces "
            f"{folds} x 2 x {per_class} = {folds * 2 * per_class}")
    frame = pd.DataFrame(rows, columns=["name_a", "num_a", "name_b", "num_b", "same", "fold",
                                        "line"])
    return frame.astype({"same": np.int8, "fold": np.int16, "line": np.int32})


def lfw_image_id(name: str, num: int) -> str:
    """The id of LFW image ``num`` of ``name`` (``Name_0001``, as in the file names)."""
    return f"{name}_{num:04d}"


def index_lfw(p: DatasetParams, root: Path, seed: int = 0) -> LabelIndex:
    """LFW: every image of the identity folders plus the verification pairs.

    Splits follow the pairs: 10-fold pairs go to train (folds 0-7), val (8) and test (9);
    simple-format pairs are all test. An identity takes the split of its pairs (test over
    val over train when they disagree); identities in no pair are train.
    """
    image_dir = _dir(root, p.images, ("lfw", "lfw-deepfunneled", "lfw_funneled"))
    pairs_path = _find(root, p.pairs, ("lfw",))
    pairs = parse_lfw_pairs(pairs_path)
    n_folds = int(pairs["fold"].max()) + 1
    fold_split = np.asarray(LFW_FOLD_SPLITS if n_folds == 10 else ("test",) * n_folds)
    pairs["split"] = fold_split[pairs["fold"].to_numpy()]
    files = _list_images(image_dir)
    records = pd.DataFrame({"file": files})
    records["identity"] = [Path(f).parent.name for f in files]
    records["id"] = [Path(f).stem for f in files]
    rank = {"train": 0, "val": 1, "test": 2}
    names = pd.concat([pairs[["name_a", "split"]].set_axis(["name", "split"], axis=1),
                       pairs[["name_b", "split"]].set_axis(["name", "split"], axis=1)])
    split_of = (names.assign(r=names["split"].map(rank)).groupby("name")["r"].max()
                .map(dict(enumerate(rank))))
    records["split"] = records["identity"].map(split_of).fillna("train")
    records["line"] = np.int32(-1)
    pairs["id_a"] = [lfw_image_id(n, k) for n, k in zip(pairs["name_a"], pairs["num_a"],
                                                           strict=True)]
    pairs["id_b"] = [lfw_image_id(n, k) for n, k in zip(pairs["name_b"], pairs["num_b"],
                                                           strict=True)]
    known = set(records["id"])
    missing = ~(pairs["id_a"].isin(known) & pairs["id_b"].isin(known))
    skipped = {}
    if missing.any():
        first = pairs.loc[missing].iloc[0]
        where = f"{pairs_path} line {first['line']}"
        if p.on_error == "fail":
            raise FacebalanceError(
                f"dataset: {where}: pair ({first['id_a']}, {first['id_b']}) names an image "
                f"that is not in {image_dir}")
        skipped["missing_pair_image"] = [
            f"{pairs_path.name} line {r.line}: {r.id_a} / {r.id_b}"
            for r in pairs.loc[missing].itertuples()]
        log.warning("lfw: skipped %d pairs naming images not in %s (first at %s)",
                    int(missing.sum()), image_dir, where)
    table = pairs.loc[~missing, ["id_a", "id_b", "same", "fold", "split", "line"]]
    return LabelIndex(records[["file", "id", "split", "identity", "line"]], image_dir,
                      str(pairs_path), skipped=skipped,
                      tables={"pairs": table.reset_index(drop=True)}, needs_attributes=False)


#: Columns the shards and label indexes use themselves: a label CSV may not bring its own.
RESERVED_COLUMNS = ("id", "image", "split", "file", "line", "source", "source_file", "weight",
                    "group")
#: A text column with at most this many distinct values becomes classes 0..K-1 (sorted);
#: one with more (free text, file names) is left out of the shards.
MAX_TEXT_CLASSES = 64
_FLAGS = ("true", "false")


def _first_row(mask: pd.Series | np.ndarray) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _label_column(values: pd.Series, column: str, path: Path,
                  lines: pd.Series) -> tuple[pd.Series, list[str]]:
    """A target or protected column of a label CSV as integers (or numbers), and the class
    names when its values were text.

    true/false -> 1/0; -1/1 -> 0/1 (CelebA's coding); text -> classes 0..K-1 in sorted
    order; numbers as they are. A column mixing codings (-1 with 0, true/false or numbers
    with other text) or with an empty cell is refused, naming the first bad row.
    """
    text = values.str.strip()

    def refuse(mask: pd.Series | np.ndarray, expected: str) -> FacebalanceError:
        r = _first_row(mask)
        return FacebalanceError(f"dataset: {path} line {lines.iloc[r]}: {column} = "
                                f"{values.iloc[r]!r}; {expected}")

    if (text == "").any():
        raise refuse(text == "", f"every image needs a {column} value")
    flags = text.str.lower().isin(_FLAGS)
    if flags.all():
        return (text.str.lower() == "true").astype(np.int8), []
    if flags.any():
        raise refuse(~flags, f"the other values of {column} are true/false")
    num = pd.to_numeric(text, errors="coerce")
    if num.notna().all():
        found = set(num.unique().tolist())
        if found <= {-1, 1}:
            return ((num + 1) // 2).astype(np.int8), []
        if {-1, 0} <= found <= {-1, 0, 1}:
            raise refuse(num == -1, f"{column} mixes -1 with 0 and 1; code a binary column "
                                    "as 0/1 or as -1/1, not both")
        return _typed(text), []
    if num.notna().any():  # name a row of the rarer kind: most likely the mistake
        numbers = num.notna().sum() >= num.isna().sum()
        raise refuse(num.isna() if numbers else num.notna(),
                     f"the other values of {column} are {'numbers' if numbers else 'text'}; "
                     "a column holds numbers or class names, not both")
    return _text_classes(text, column, path)


def _text_classes(text: pd.Series, column: str, path: Path) -> tuple[pd.Series, list[str]]:
    """Text values as classes 0..K-1 in sorted order (stated in the log)."""
    classes = sorted(text.unique().tolist())
    codes = text.map({v: k for k, v in enumerate(classes)})
    log.info("dataset: %s: %s holds text; classes %s", path, column,
             ", ".join(f"{k} = {v}" for k, v in enumerate(classes)))
    dtype = np.int8 if len(classes) <= 127 else np.int32
    return codes.astype(dtype), classes


def _typed(values: pd.Series) -> pd.Series:
    """Numbers as the smallest fitting int or float32, true/false as 0/1 int8; anything
    else stays text."""
    flags = values.str.strip().str.lower()
    if flags.isin(_FLAGS).all():
        return (flags == "true").astype(np.int8)
    num = pd.to_numeric(values, errors="coerce")
    if num.isna().any() and not values.eq("").all():
        return values
    if (num == np.round(num)).all() and not num.isna().any():
        ints = num.astype(np.int64)
        for dtype in (np.int8, np.int16, np.int32):
            if ints.between(np.iinfo(dtype).min, np.iinfo(dtype).max).all():
                return ints.astype(dtype)
        return ints
    return num.astype(np.float32)


def _check_reserved(columns: pd.Index, p: DatasetParams, path: Path) -> None:
    used = {p.file_column, p.split_column}
    for col in columns:
        if col in RESERVED_COLUMNS and col not in used:
            way_out = (f"rename it in the CSV, or set dataset.split_column: {col} if it holds "
                       "train/val/test" if col == "split" else "rename it in the CSV")
            raise FacebalanceError(
                f"dataset: {path}: column {col!r} clashes with a column the shards hold "
                f"themselves ({', '.join(RESERVED_COLUMNS)}); {way_out}")


def index_folder(p: DatasetParams, root: Path, seed: int = 0) -> LabelIndex:
    """Any image folder plus a label CSV (``dataset.labels``, ``dataset.file_column``).

    The CSV's ``dataset.split_column`` (train/val/test) is used when present, else a seeded
    split stratified by target and protected. Target and protected take 0/1, -1/1,
    true/false, integer classes or text (classes in sorted order); other text columns with
    at most :data:`MAX_TEXT_CLASSES` values become classes too (usable as groups), longer
    free text is left out. Both are listed in :attr:`LabelIndex.classes` / ``left_out``.
    """
    path = Path(p.labels) if Path(p.labels).is_absolute() else root / (p.labels or "labels.csv")
    if not path.is_file():
        raise FacebalanceError(f"dataset: label CSV {path} (dataset.labels) not found")
    raw = _read_csv(path, (p.file_column,), lambda cols: _check_reserved(cols, p, path))
    records = pd.DataFrame({"file": raw[p.file_column], "line": raw["line"]})
    classes: dict[str, list[str]] = {}
    left_out: list[str] = []
    for col in raw.columns:
        if col in (p.file_column, p.split_column, "line"):
            continue
        if col in (p.target, p.protected):
            records[col], names = _label_column(raw[col], col, path, raw["line"])
        elif col == "identity":
            records[col], names = raw[col], []
        else:
            records[col], names = _typed(raw[col]), []
            if not pd.api.types.is_numeric_dtype(records[col]):
                text = raw[col].str.strip()
                if text.nunique() > MAX_TEXT_CLASSES or (text == "").any():
                    left_out.append(col)
                    del records[col]
                    continue
                records[col], names = _text_classes(text, col, path)
        if names:
            classes[col] = names
    if left_out:
        log.warning("dataset: %s: text columns left out of the shards (over %d values or "
                    "empty cells): %s", path, MAX_TEXT_CLASSES, ", ".join(left_out))
    if p.split_column in raw.columns:
        split = raw[p.split_column].str.strip().str.lower()
        bad = ~split.isin(SPLITS)
        if bad.any():
            r = _first_row(bad)
            raise FacebalanceError(
                f"dataset: {path} line {raw['line'].iloc[r]}: {p.split_column} = "
                f"{raw[p.split_column].iloc[r]!r}; valid: {', '.join(SPLITS)}")
        records.insert(1, "split", split.to_numpy())
    else:
        records.insert(1, "split", stratified_split(_strata(records, p), len(records),
                                                    p.val_fraction, p.test_fraction, seed))
    records.insert(1, "id", image_ids(records["file"]))
    return LabelIndex(records, _dir(root, p.images, ()), str(path), classes=classes,
                      left_out=left_out)


IndexFn = Callable[..., LabelIndex]
INDEXERS: dict[str, IndexFn] = {
    "celeba": index_celeba, "utkface": index_utkface, "fairface": index_fairface,
    "lfw": index_lfw, "folder": index_folder,
}


def _where(index: LabelIndex, row: int) -> str:
    line = int(index.records["line"].iloc[row])
    return f"{index.label_file} line {line}" if line > 0 else index.label_file


def _file_key(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file a path leads to, or None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def confine_to_image_dir(index: LabelIndex) -> None:
    """Normalize every ``file`` of an index and refuse any that leaves the image folder.

    Label files come from whoever shared the dataset: a row naming ``../../secret.png`` or
    ``/etc/hostname`` must never be read into shards. Paths are normalized lexically
    (``imgs/./x.jpg`` -> ``imgs/x.jpg``), and one file listed twice, under two spellings or
    through a link (same device and inode), is refused: it could land in train and test at
    once. Symbolic links that point outside are refused when the image is opened
    (:func:`facebalance.data.convert.open_confined`).

    Raises
    ------
    FacebalanceError
        Naming the label file and line of the first absolute, escaping or repeated path.
    """
    files = index.records["file"].astype(str)
    norm = files.map(lambda f: posixpath.normpath(f.replace("\\", "/")))
    bad = norm.map(lambda f: f.startswith("/") or f == ".." or f.startswith("../")
                   or f == "." or bool(re.match(r"^[A-Za-z]:", f)))
    if bad.any():
        r = int(np.flatnonzero(bad.to_numpy())[0])
        raise FacebalanceError(
            f"dataset: {_where(index, r)}: image path {files.iloc[r]!r} lies outside the "
            f"image folder {index.image_dir}; paths must be relative to it and stay inside")
    dup = norm.duplicated(keep=False)
    if dup.any():
        rows = np.flatnonzero((norm == norm[dup].iloc[0]).to_numpy())[:2]
        raise FacebalanceError(
            f"dataset: {_where(index, int(rows[1]))}: image {files.iloc[rows[1]]!r} is the "
            f"same file as {files.iloc[rows[0]]!r} ({_where(index, int(rows[0]))}); each "
            "image may be listed once")
    # The same file under two names (a link, a hard link, another case on a case-blind disk).
    keys = [_file_key(index.image_dir / f) or ("missing", k) for k, f in enumerate(norm)]
    same = pd.Series(keys).duplicated(keep=False).to_numpy()
    if same.any():
        first = keys[int(np.flatnonzero(same)[0])]
        rows = [k for k, key in enumerate(keys) if key == first][:2]
        raise FacebalanceError(
            f"dataset: {_where(index, rows[1])}: image {files.iloc[rows[1]]!r} is the same "
            f"file as {files.iloc[rows[0]]!r} ({_where(index, rows[0])}); each image may be "
            "listed once")
    if (index.records["id"] == image_ids(files)).all():  # ids made from paths: re-derive
        index.records["id"] = image_ids(norm).to_numpy()
    index.records["file"] = norm.to_numpy()


def read_labels(p: DatasetParams, seed: int = 0) -> LabelIndex:
    """Read the label files of ``p.name`` under ``p.root`` (no image is opened).

    Raises
    ------
    FacebalanceError
        When the root or a label file is missing or malformed; the message names the file,
        line or key.
    """
    if p.name not in INDEXERS:
        raise FacebalanceError(f"dataset: {p.name!r} is not a real-data loader; valid: "
                               f"{', '.join(INDEXERS)}")
    root = Path(p.root).expanduser()
    if not p.root or not root.is_dir():
        raise FacebalanceError(
            f"params: dataset.root = {p.root!r} is not a folder; set it to the {p.name} folder")
    index = INDEXERS[p.name](p, root, seed)
    confine_to_image_dir(index)
    dup = index.records["id"].duplicated()
    if dup.any():
        raise FacebalanceError(f"dataset: image id {index.records['id'][dup].iloc[0]!r} "
                               f"occurs twice in {index.label_file}")
    if p.max_images:
        parts = [g if len(g) <= p.max_images else
                 g.sample(n=p.max_images, random_state=seed).sort_index()
                 for _, g in index.records.groupby("split", sort=False)]
        index.records = pd.concat(parts).sort_index()
    return index


def _attribute_columns(records: pd.DataFrame) -> list[str]:
    return [c for c in records.columns if c not in ("file", "id", "split", "line", "identity")]


def binary_columns(records: pd.DataFrame) -> list[str]:
    """Attribute columns holding only 0 and 1 (int8): the possible target/protected."""
    return [c for c in _attribute_columns(records)
            if records[c].dtype == np.int8 and set(np.unique(records[c])) <= {0, 1}]


def class_columns(records: pd.DataFrame) -> list[str]:
    """Integer attribute columns with values 0..K-1 (K >= 2): possible multi-class targets
    and protected groups (race, age_group, and the binary ones)."""
    return [c for c in _attribute_columns(records)
            if pd.api.types.is_integer_dtype(records[c]) and len(records)
            and records[c].min() >= 0 and records[c].nunique() >= 2]


def numeric_columns(records: pd.DataFrame) -> list[str]:
    """Numeric attribute columns: possible regression targets (age)."""
    return [c for c in _attribute_columns(records)
            if pd.api.types.is_numeric_dtype(records[c])
            and not pd.api.types.is_bool_dtype(records[c])]


def task_columns(kind: str, extra_targets: Sequence[str] = ()) -> dict[str, Callable]:
    """Which columns each role of a task can use: ``{role: columns(records)}``."""
    target = {"binary": binary_columns, "multiclass": class_columns,
              "multitask": class_columns, "regression": numeric_columns}[kind]
    return {"target": target, "protected": class_columns,
            **{f"extra_targets ({c})": class_columns for c in extra_targets}}


def index_dataset(p: DatasetParams, seed: int = 0, kind: str = "binary",
                  extra_targets: Sequence[str] = ()) -> LabelIndex:
    """:func:`read_labels`, then check the task's columns before any image is decoded.

    A binary target must be a 0/1 column, a multi-class one (and every multitask target)
    an integer column of classes 0..K-1, a regression target numeric; the protected
    column holds 2..K integer groups (none for regression).

    Raises
    ------
    FacebalanceError
        As :func:`read_labels`, or naming the key and the dataset's suitable columns when
        a column does not fit its role.
    """
    index = read_labels(p, seed)
    if not index.needs_attributes:
        return index
    if kind == "regression" and p.target in index.classes:
        names = index.classes[p.target]
        raise FacebalanceError(
            f"params: dataset.target = {p.target!r} is not a numeric column of "
            f"{index.label_file}: it holds text ({', '.join(names[:5])}"
            f"{', ...' if len(names) > 5 else ''}); a regression target must be numbers")
    values = {"target": p.target, "protected": p.protected,
              **{f"extra_targets ({c})": c for c in extra_targets}}
    for role, columns_of in task_columns(kind, extra_targets).items():
        value = values[role]
        if role == "protected" and kind == "regression":
            continue
        valid = columns_of(index.records)
        if value not in valid:
            what = {"binary_columns": "binary", "class_columns": "class (0..K-1)",
                    "numeric_columns": "numeric"}[columns_of.__name__]
            key = "task.extra_targets" if role.startswith("extra") else f"dataset.{role}"
            raise FacebalanceError(
                f"params: {key} = {value!r} is not a {what} column of {index.label_file}; "
                f"{what} columns: {', '.join(valid) or 'none'} (task.kind: {kind})")
    return index
