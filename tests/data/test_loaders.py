"""Label indexes of the real-dataset formats, on fixtures in their exact layouts."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facebalance.config import DatasetParams
from facebalance.data.loaders import (
    image_ids,
    index_dataset,
    parse_lfw_pairs,
    parse_utkface_name,
    stratified_split,
)
from facebalance.errors import FacebalanceError

from .realdata import dataset_params as params
from .realdata import make_celeba, make_fairface, make_folder, make_lfw, make_utkface


def test_stratified_split_matches_a_per_stratum_loop() -> None:
    rng = np.random.default_rng(0)
    strata = pd.DataFrame({"a": rng.integers(0, 2, 500), "b": rng.integers(0, 3, 500)})
    labels = stratified_split(strata, 500, 0.1, 0.2, seed=7)
    assert labels.tolist() == stratified_split(strata, 500, 0.1, 0.2, seed=7).tolist()
    assert labels.tolist() != stratified_split(strata, 500, 0.1, 0.2, seed=8).tolist()
    for (_, _), group in strata.groupby(["a", "b"]):
        got = pd.Series(labels[group.index]).value_counts()
        assert got.get("test", 0) == round(len(group) * 0.2)
        assert got.get("val", 0) == round(len(group) * 0.1)
        assert got.sum() == len(group)


def test_image_ids_drop_only_image_suffixes() -> None:
    files = pd.Series(["000001.jpg", "a.b/61_1_0_2017.jpg.chip.jpg", "train/1.JPEG", "x.v2.png"])
    assert image_ids(files).tolist() == ["000001", "a.b/61_1_0_2017", "train/1", "x.v2"]


@pytest.mark.parametrize("name, expected", [
    ("61_1_0_20170109150557335.jpg.chip.jpg", (61, 1, 0)),
    ("1_0_4_20161219140623097.jpg", (1, 0, 4)),
    ("39_1_20170116174525125.jpg.chip.jpg", None),  # race missing: a real UTKFace file
    ("25_2_0_20170116174525125.jpg", None),          # gender out of range
    ("30_0_7_20170116174525125.jpg", None),          # race out of range
    ("face.jpg", None),
])
def test_parse_utkface_name(name: str, expected: tuple | None) -> None:
    assert parse_utkface_name(name) == expected


def test_celeba_index(tmp_path: Path) -> None:
    truth = make_celeba(tmp_path)
    index = index_dataset(params("celeba", tmp_path, target="Blond_Hair", protected="Male"))
    rec = index.records
    assert len(rec) == 30 and index.default_crop == 128
    assert rec["split"].value_counts().to_dict() == {"train": 18, "test": 8, "val": 4}
    assert rec["split"].tolist() == truth["split"].tolist()
    assert rec["Blond_Hair"].tolist() == truth["blond"].tolist()
    assert rec["Male"].dtype == np.int8 and rec["Male"].tolist() == truth["male"].tolist()
    assert rec["id"].iloc[0] == "000001" and rec["identity"].iloc[3] == "101"
    assert rec["line"].iloc[0] == 3  # count line, names line, then images


def test_celeba_unknown_target_lists_the_binary_columns(tmp_path: Path) -> None:
    make_celeba(tmp_path)
    with pytest.raises(FacebalanceError, match=r"dataset.target = 'blond' is not a binary "
                       r"column of .*list_attr_celeba.txt; binary columns: 5_o_Clock_Shadow"):
        index_dataset(params("celeba", tmp_path, protected="Male"))


def test_celeba_bad_value_names_line_and_column(tmp_path: Path) -> None:
    make_celeba(tmp_path)
    path = tmp_path / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    fields = lines[4].split()
    fields[1] = "0"  # 5_o_Clock_Shadow of the third image
    lines[4] = " ".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FacebalanceError, match=r"line 5: 5_o_Clock_Shadow = 0; expected -1 or 1"):
        index_dataset(params("celeba", tmp_path, target="Blond_Hair", protected="Male"))


def test_celeba_missing_partition_entry(tmp_path: Path) -> None:
    make_celeba(tmp_path)
    path = tmp_path / "list_eval_partition.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))
    with pytest.raises(FacebalanceError, match=r"2 images of list_attr_celeba.txt have no "
                       r"split in .*list_eval_partition.txt \(first: 000029.jpg, 000030.jpg\)"):
        index_dataset(params("celeba", tmp_path, target="Blond_Hair", protected="Male"))


def test_celeba_label_files_in_anno_folder(tmp_path: Path) -> None:
    make_celeba(tmp_path)
    (tmp_path / "Anno").mkdir()
    (tmp_path / "Eval").mkdir()
    (tmp_path / "list_attr_celeba.txt").rename(tmp_path / "Anno" / "list_attr_celeba.txt")
    (tmp_path / "list_eval_partition.txt").rename(tmp_path / "Eval/list_eval_partition.txt")
    index = index_dataset(params("celeba", tmp_path, target="Blond_Hair", protected="Male"))
    assert len(index.records) == 30


def test_utkface_index_skips_and_counts_malformed_names(tmp_path: Path) -> None:
    names = make_utkface(tmp_path)
    index = index_dataset(params("utkface", tmp_path, target="race_white", protected="male"),
                          seed=3)
    rec = index.records
    assert len(rec) == len(names) == 40
    assert sorted(index.skipped["malformed_name"]) == [
        "39_1_20170116174525125.jpg.chip.jpg", "face.jpg"]
    row = rec.set_index("file").loc[names[5]]
    age, gender, race = parse_utkface_name(names[5])
    assert (row["age"], row["male"], row["race"]) == (age, 1 - gender, race)
    assert row[["race_white", "race_black", "race_asian", "race_indian", "race_others"]].sum() == 1
    assert row["id"] == names[5].split(".")[0]
    counts = rec["split"].value_counts()
    assert set(counts.index) == {"train", "val", "test"} and counts["train"] > counts["test"]


def test_fairface_index(tmp_path: Path) -> None:
    truth = make_fairface(tmp_path)
    index = index_dataset(params("fairface", tmp_path, target="race_white", protected="male",
                                 val_fraction=0.25))
    rec = index.records.set_index("file")
    assert len(rec) == 52
    val_files = truth.loc[truth["split"] == "val", "file"]
    assert (rec.loc[val_files, "split"] == "test").all()  # FairFace val -> our test
    train = rec.loc[truth.loc[truth["split"] == "train", "file"]]
    assert set(train["split"]) == {"train", "val"} and 6 <= (train["split"] == "val").sum() <= 14
    first = truth.iloc[0]
    assert rec.loc[first["file"], "male"] == (first["gender"] == "Male")
    assert rec.loc[first["file"], "age_group"] == [
        "0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
        "more than 70"].index(first["age"])


def test_fairface_unknown_race_names_the_line(tmp_path: Path) -> None:
    make_fairface(tmp_path)
    path = tmp_path / "fairface_label_train.csv"
    frame = pd.read_csv(path)
    frame.loc[2, "race"] = "Martian"
    frame.to_csv(path, index=False)
    with pytest.raises(FacebalanceError, match=r"fairface_label_train.csv line 4: race = "
                       r"'Martian'; valid: White, Black"):
        index_dataset(params("fairface", tmp_path, target="race_white", protected="male"))


def test_lfw_pairs_ten_fold(tmp_path: Path) -> None:
    make_lfw(tmp_path)
    pairs = parse_lfw_pairs(tmp_path / "pairs.txt")
    assert len(pairs) == 20 and pairs["same"].tolist() == [1, 0] * 10
    assert pairs["fold"].tolist() == [f for f in range(10) for _ in (0, 1)]
    assert pairs.iloc[1][["name_a", "num_a", "name_b", "num_b"]].tolist() == [
        "Person_00", 2, "Person_01", 1]
    index = index_dataset(params("lfw", tmp_path))
    rec = index.records.set_index("id")
    assert len(rec) == 42 and rec.loc["Person_00_0002", "identity"] == "Person_00"
    assert rec.loc["Person_16_0001", "split"] == "val"   # fold 8
    assert rec.loc["Person_19_0002", "split"] == "test"  # fold 9
    assert rec.loc["Loner_0001", "split"] == "train"     # in no pair
    table = index.tables["pairs"]
    assert table["split"].value_counts().to_dict() == {"train": 16, "val": 2, "test": 2}
    assert table.iloc[1][["id_a", "id_b", "same"]].tolist() == ["Person_00_0002",
                                                                "Person_01_0001", 0]


def test_lfw_pairs_simple_format(tmp_path: Path) -> None:
    make_lfw(tmp_path, simple=True)
    pairs = parse_lfw_pairs(tmp_path / "pairs.txt")
    assert pairs["same"].tolist() == [1, 1, 1, 0, 0, 0] and set(pairs["fold"]) == {0}
    index = index_dataset(params("lfw", tmp_path))
    assert (index.tables["pairs"]["split"] == "test").all()


def test_lfw_bad_pairs_file(tmp_path: Path) -> None:
    make_lfw(tmp_path)
    path = tmp_path / "pairs.txt"
    lines = path.read_text().splitlines()
    lines[3] = "Person_01\tone\t2"
    path.write_text("\n".join(lines))
    with pytest.raises(FacebalanceError, match=r"pairs.txt line 4: expected 'name n1 n2'"):
        parse_lfw_pairs(path)
    path.write_text("10\t1\nPerson_00\t1\t2\n")
    with pytest.raises(FacebalanceError, match=r"lists 1 pairs; its header announces "
                       r"10 x 2 x 1 = 20"):
        parse_lfw_pairs(path)


def test_lfw_pair_with_a_missing_image(tmp_path: Path) -> None:
    make_lfw(tmp_path)
    (tmp_path / "lfw/Person_04/Person_04_0002.jpg").unlink()
    with pytest.raises(FacebalanceError, match=r"pairs.txt line 6: pair \(Person_04_0001, "
                       r"Person_04_0002\) names an image that is not in"):
        index_dataset(params("lfw", tmp_path))
    index = index_dataset(params("lfw", tmp_path, on_error="skip"))
    assert len(index.tables["pairs"]) == 18  # Person_04_0002 is in both pairs of fold 2
    assert index.skipped["missing_pair_image"] == [
        "pairs.txt line 6: Person_04_0001 / Person_04_0002",
        "pairs.txt line 7: Person_04_0002 / Person_05_0001"]


def test_folder_index(tmp_path: Path) -> None:
    truth = make_folder(tmp_path)
    index = index_dataset(params("folder", tmp_path))
    rec = index.records
    assert rec["file"].tolist() == truth["file"].tolist()
    assert rec["blond"].dtype == np.int8
    assert rec["blond"].tolist() == (truth["blond"] == 1).astype(int).tolist()  # -1/1 -> 0/1
    assert rec["male"].tolist() == (truth["male"] == "true").astype(int).tolist()
    assert rec["age"].dtype == np.float32 and rec["identity"].iloc[0] == truth["identity"][0]
    assert rec["id"].iloc[0] == "img/000/face_00000" and rec["line"].iloc[0] == 2
    assert set(rec["split"]) == {"train", "val", "test"}


def test_folder_split_column_and_errors(tmp_path: Path) -> None:
    truth = make_folder(tmp_path, broken=False)
    truth["split"] = np.where(np.arange(len(truth)) < 30, "train",
                              np.where(np.arange(len(truth)) < 38, "val", "test"))
    truth.to_csv(tmp_path / "labels.csv", index=False)
    index = index_dataset(params("folder", tmp_path))
    assert index.records["split"].value_counts().to_dict() == {"train": 30, "test": 10, "val": 8}
    truth.loc[5, "split"] = "holdout"
    truth.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(FacebalanceError, match=r"labels.csv line 7: split = 'holdout'; "
                       r"valid: train, val, test"):
        index_dataset(params("folder", tmp_path))
    truth.loc[5, "split"] = "train"
    truth.loc[6, "male"] = "maybe"
    truth.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(FacebalanceError, match=r"labels.csv line 8: male = 'maybe'; the other "
                       r"values of male are true/false"):
        index_dataset(params("folder", tmp_path))


def test_folder_missing_csv_and_column(tmp_path: Path) -> None:
    make_folder(tmp_path, broken=False)
    with pytest.raises(FacebalanceError,
                       match=r"label CSV .*other.csv \(dataset.labels\) not found"):
        index_dataset(params("folder", tmp_path, labels="other.csv"))
    with pytest.raises(FacebalanceError, match=r"lacks column\(s\) path; it has file, blond"):
        index_dataset(params("folder", tmp_path, file_column="path"))
    with pytest.raises(FacebalanceError, match=r"dataset.root = '' is not a folder"):
        index_dataset(DatasetParams(name="folder"))


def test_max_images_caps_each_split(tmp_path: Path) -> None:
    make_folder(tmp_path, broken=False)
    index = index_dataset(params("folder", tmp_path, max_images=5))
    assert index.records["split"].value_counts().max() == 5
    again = index_dataset(params("folder", tmp_path, max_images=5))
    assert index.records["file"].tolist() == again.records["file"].tolist()  # seeded


def _edited_folder(tmp_path: Path, edit: Callable[[pd.DataFrame], None]) -> Path:
    """A folder dataset whose label CSV ``edit`` changed in place; returns its root."""
    root = tmp_path / "faces"
    make_folder(root, broken=False)
    frame = pd.read_csv(root / "labels.csv")
    edit(frame)
    frame.to_csv(root / "labels.csv", index=False)
    return root


@pytest.mark.parametrize("bad", ["../outside/secret.png", "img/../../outside/secret.png",
                                 "/etc/hostname", "C:/Windows/win.ini", ".."])
def test_paths_outside_the_image_folder_are_refused_with_the_line(tmp_path: Path,
                                                                 bad: str) -> None:
    def escape(frame: pd.DataFrame) -> None:
        frame.loc[6, "file"] = bad  # CSV line 8

    root = _edited_folder(tmp_path, escape)
    with pytest.raises(FacebalanceError, match=rf"labels\.csv line 8: image path "
                       rf"'{re.escape(bad)}' lies outside the image folder"):
        index_dataset(params("folder", root))


def test_one_image_under_two_spellings_is_a_repeat(tmp_path: Path) -> None:
    def respell(frame: pd.DataFrame) -> None:
        frame.loc[9, "file"] = frame.loc[2, "file"].replace("img/", "img/./", 1)  # line 11

    with pytest.raises(FacebalanceError, match=r"labels\.csv line 11: image "
                       r"'img/\./000/face_00002\.jpg' is the same file as "
                       r"'img/000/face_00002\.jpg' \(.*labels\.csv line 4\)"):
        index_dataset(params("folder", _edited_folder(tmp_path, respell)))


def test_dot_segments_are_normalized_in_files_and_ids(tmp_path: Path) -> None:
    def dotted(frame: pd.DataFrame) -> None:
        frame["file"] = "./" + frame["file"]

    root = _edited_folder(tmp_path, dotted)
    rec = index_dataset(params("folder", root)).records
    assert rec["file"].iloc[0] == "img/000/face_00000.jpg"
    assert rec["id"].iloc[0] == "img/000/face_00000"


def test_listing_skips_fifos(tmp_path: Path) -> None:
    names = make_utkface(tmp_path)
    os.mkfifo(tmp_path / "UTKFace" / "30_0_1_20170109150557335.jpg.chip.jpg")
    rec = index_dataset(params("utkface", tmp_path, target="race_white")).records
    assert sorted(rec["file"]) == sorted(names)  # the FIFO is not an image to read


def test_one_image_through_a_link_is_a_repeat(tmp_path: Path) -> None:
    def alias(frame: pd.DataFrame) -> None:
        (tmp_path / "faces" / "alias.jpg").symlink_to(tmp_path / "faces" / frame.loc[1, "file"])
        frame.loc[5, "file"] = "alias.jpg"  # CSV line 7 names the image of line 3 again

    with pytest.raises(FacebalanceError, match=r"labels\.csv line 7: image 'alias\.jpg' is the "
                       r"same file as 'img/000/face_00001\.jpg'"):
        index_dataset(params("folder", _edited_folder(tmp_path, alias)))


def test_backslash_paths_are_normalized_and_confined(tmp_path: Path) -> None:
    def windows(frame: pd.DataFrame) -> None:
        frame["file"] = frame["file"].str.replace("/", "\\")  # as written on Windows
        frame.loc[2, "file"] = "..\\secret.png"

    with pytest.raises(FacebalanceError, match=r"line 4: image path '\.\.\\\\secret\.png' lies "
                       r"outside"):
        index_dataset(params("folder", _edited_folder(tmp_path, windows)))
