"""Label CSVs as real users have them: text columns, reserved names, mixed codings, BOMs,
Windows line ends, quoted commas, header-only files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facebalance.data.loaders import (
    MAX_TEXT_CLASSES,
    RESERVED_COLUMNS,
    class_columns,
    index_dataset,
    numeric_columns,
)
from facebalance.errors import FacebalanceError

from .realdata import dataset_params as params
from .realdata import make_folder


def _folder(tmp_path: Path, **columns: list) -> tuple[Path, pd.DataFrame]:
    """The fixture folder dataset (48 faces) with extra or replaced label columns."""
    root = tmp_path / "faces"
    frame = make_folder(root, broken=False)
    for name, values in columns.items():
        frame[name] = values
    frame.to_csv(root / "labels.csv", index=False)
    return root, frame


def test_unused_text_columns_become_classes_or_are_left_out(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    n = 48
    root, _ = _folder(tmp_path, ethnicity=["b", "a", "c"] * (n // 3),
                      filename=[f"face_{i}.jpg" for i in range(n)])
    with caplog.at_level(logging.INFO):
        index = index_dataset(params("folder", root))
    rec = index.records
    assert rec["ethnicity"].tolist() == [1, 0, 2] * (n // 3)  # sorted: a=0, b=1, c=2
    assert index.classes["ethnicity"] == ["a", "b", "c"]
    assert "ethnicity" in class_columns(rec)  # usable as a group column
    assert "classes 0 = a, 1 = b, 2 = c" in caplog.text
    assert all(pd.api.types.is_numeric_dtype(rec[c]) for c in rec.columns
               if c not in ("file", "id", "split", "identity"))


def test_free_text_over_the_class_limit_is_left_out_and_said(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "faces"
    frame = make_folder(root, n=MAX_TEXT_CLASSES + 8, broken=False)
    frame["note"] = [f"note {i}" for i in range(len(frame))]
    frame.to_csv(root / "labels.csv", index=False)
    with caplog.at_level(logging.WARNING):
        index = index_dataset(params("folder", root))
    assert "note" not in index.records.columns and index.left_out == ["note"]
    assert "text columns left out of the shards" in caplog.text and "note" in caplog.text


@pytest.mark.parametrize("values, codes, classes", [
    (["female", "male"], [0, 1], ["female", "male"]),
    (["yes", "no"], [1, 0], ["no", "yes"]),
])
def test_a_text_protected_column_maps_to_sorted_classes(tmp_path: Path, values: list[str],
                                                        codes: list[int],
                                                        classes: list[str]) -> None:
    root, frame = _folder(tmp_path)
    frame["gender"] = np.where(frame["male"] == "true", values[1], values[0])
    frame.to_csv(root / "labels.csv", index=False)
    index = index_dataset(params("folder", root, protected="gender"))
    expect = np.where(frame["male"] == "true", codes[1], codes[0])
    assert index.records["gender"].tolist() == expect.tolist()
    assert index.classes["gender"] == classes


def test_k_text_groups_as_protected(tmp_path: Path) -> None:
    groups = ["White", "Black", "East Asian", "Indian"] * 12
    root, _ = _folder(tmp_path, race=groups)
    index = index_dataset(params("folder", root, protected="race"))
    assert index.classes["race"] == ["Black", "East Asian", "Indian", "White"]
    assert index.records["race"].tolist() == [3, 0, 1, 2] * 12


@pytest.mark.parametrize("values, message", [
    ([-1, 0, 1] * 16, r"line 2: blond = '-1'; blond mixes -1 with 0 and 1; code a binary "
                      r"column as 0/1 or as -1/1, not both"),
    (["1", "0", "x"] * 16, r"line 4: blond = 'x'; the other values of blond are numbers"),
    (["1", "0", ""] * 16, r"line 4: blond = ''; every image needs a blond value"),
])
def test_mixed_codings_in_a_used_column_are_refused(tmp_path: Path, values: list,
                                                    message: str) -> None:
    root, _ = _folder(tmp_path, blond=values)
    with pytest.raises(FacebalanceError, match=message):
        index_dataset(params("folder", root))


def test_text_cannot_be_a_regression_target(tmp_path: Path) -> None:
    root, _ = _folder(tmp_path, age=["young", "old"] * 24)
    with pytest.raises(FacebalanceError, match=r"dataset.target = 'age' is not a numeric "
                                               r"column"):
        index_dataset(params("folder", root, target="age", protected=""), kind="regression")


@pytest.mark.parametrize("name", [c for c in RESERVED_COLUMNS if c not in ("file", "split")])
def test_a_column_named_like_a_shard_column_is_refused(tmp_path: Path, name: str) -> None:
    root, _ = _folder(tmp_path, **{name: [1] * 48})
    with pytest.raises(FacebalanceError, match=rf"column '{name}' clashes with a column the "
                                               r"shards hold themselves .*rename it in the CSV"):
        index_dataset(params("folder", root))


def test_a_split_column_beside_split_column_says_the_way_out(tmp_path: Path) -> None:
    root, frame = _folder(tmp_path)
    frame["partition"] = np.repeat(["train", "val", "test"], 16)
    frame["split"] = "train"
    frame.to_csv(root / "labels.csv", index=False)
    with pytest.raises(FacebalanceError, match=r"column 'split' clashes .*set "
                                               r"dataset.split_column: split"):
        index_dataset(params("folder", root, split_column="partition"))
    frame = frame.drop(columns="split")
    frame.to_csv(root / "labels.csv", index=False)
    index = index_dataset(params("folder", root, split_column="partition"))
    assert index.records["split"].value_counts().to_dict() == {"train": 16, "val": 16,
                                                               "test": 16}


def test_a_header_only_csv_says_it_has_no_rows(tmp_path: Path) -> None:
    root, _ = _folder(tmp_path)
    (root / "labels.csv").write_text("file,blond,male\n")
    with pytest.raises(FacebalanceError, match=r"labels.csv has a header but no rows"):
        index_dataset(params("folder", root))
    (root / "labels.csv").write_text("")
    with pytest.raises(FacebalanceError, match=r"labels.csv is empty"):
        index_dataset(params("folder", root))


def test_a_non_utf8_csv_is_named(tmp_path: Path) -> None:
    root, _ = _folder(tmp_path)
    (root / "labels.csv").write_bytes("file,blond,male,note\nimg/a.jpg,1,0,caf\xe9\n"
                                      .encode("latin-1"))
    with pytest.raises(FacebalanceError, match=r"labels.csv line 2 is not UTF-8 text; save "
                                               r"the file as UTF-8"):
        index_dataset(params("folder", root))


def test_bom_crlf_and_quoted_commas_read_like_a_plain_csv(tmp_path: Path) -> None:
    root, frame = _folder(tmp_path)
    frame["caption"] = [f'smiling, "outdoors", shot {i % 3}' for i in range(48)]
    frame.to_csv(root / "labels.csv", index=False)
    plain = index_dataset(params("folder", root)).records
    text = frame.to_csv(index=False, lineterminator="\r\n")
    (root / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    windows = index_dataset(params("folder", root))
    assert windows.classes["caption"] == [f'smiling, "outdoors", shot {i}' for i in range(3)]
    pd.testing.assert_frame_equal(windows.records, plain)


def test_column_finders_accept_pandas_string_columns() -> None:
    """pandas 3 reads text as StringDtype: the finders skip it instead of crashing."""
    rec = pd.DataFrame({"file": ["a", "b"], "note": pd.array(["x", "y"], dtype="string"),
                        "age": [3.0, 4.0], "race": np.array([0, 1], dtype=np.int8)})
    assert class_columns(rec) == ["race"] and numeric_columns(rec) == ["age", "race"]
