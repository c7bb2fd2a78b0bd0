from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facebalance.data.face_pairs import (
    PAIR_COLUMNS,
    attach_groups,
    identity_pairs,
    load_pairs,
    pair_group,
    present_groups,
)
from facebalance.errors import FacebalanceError


def _images(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for split, n_ident in (("train", 40), ("test", 12)):
        for i in range(n_ident):
            group = i % 3
            for k in range(int(rng.integers(1, 5))):
                rows.append({"id": f"{split}-{i}-{k}", "identity": f"{split}-{i}",
                             "group": group, "split": split})
    return pd.DataFrame(rows)


def test_pairs_are_balanced_by_group_and_never_cross_splits() -> None:
    images = _images()
    pairs = identity_pairs(images, n_per_group=30, seed=0, cross_share=0.5)
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    info = images.set_index("id")
    for col in ("a", "b"):
        pairs[f"ident_{col}"] = info.loc[pairs[f"id_{col}"], "identity"].to_numpy()
        pairs[f"group_{col}"] = info.loc[pairs[f"id_{col}"], "group"].to_numpy()
        pairs[f"split_{col}"] = info.loc[pairs[f"id_{col}"], "split"].to_numpy()
    for col in ("split_a", "split_b"):
        assert (pairs[col] == pairs["split"]).all()
    genuine = pairs[pairs["same"] == 1]
    assert (genuine["ident_a"] == genuine["ident_b"]).all()
    assert (genuine["id_a"] != genuine["id_b"]).all()
    impostor = pairs[pairs["same"] == 0]
    assert (impostor["ident_a"] != impostor["ident_b"]).all()
    within = pairs[pairs["group"] >= 0]
    assert (within["group_a"] == within["group"]).all() and (within["group_b"] ==
                                                             within["group"]).all()
    counts = within.groupby(["split", "group", "same"]).size()
    assert (counts == 30).all() and len(counts) == 2 * 3 * 2
    cross = pairs[pairs["group"] == -1]
    assert len(cross) == 2 * 45 and (cross["group_a"] != cross["group_b"]).all()
    again = identity_pairs(images, n_per_group=30, seed=0, cross_share=0.5)
    pd.testing.assert_frame_equal(pairs[list(PAIR_COLUMNS)], again)


def test_bad_identities_are_named() -> None:
    images = _images()
    leak = images.copy()
    leak.loc[leak.index[-1], "identity"] = "train-0"
    with pytest.raises(FacebalanceError, match="identity 'train-0' occurs in more than one"):
        identity_pairs(leak, 5, 0)
    single = images[images["id"].str.endswith("-0")]  # one image per identity
    with pytest.raises(FacebalanceError, match="0 with two images; it needs both"):
        identity_pairs(single, 5, 0)


def test_genuine_pairs_are_distinct_while_there_are_enough() -> None:
    images = _images(1)
    train = images[images["split"] == "train"]
    pairs = identity_pairs(train, n_per_group=20, seed=3)
    genuine = pairs[pairs["same"] == 1]
    key = [tuple(sorted(ab)) for ab in zip(genuine["id_a"], genuine["id_b"], strict=True)]
    assert len(set(key)) == len(key) == 3 * 20


def test_pair_group_is_minus_one_across_groups() -> None:
    rows = pd.DataFrame({"id": ["a", "b", "c"], "age_group": [0, 0, 1]})
    pairs = pd.DataFrame({"id_a": ["a", "a"], "id_b": ["b", "c"]})
    assert pair_group(rows, pairs, "age_group").tolist() == [0, -1]


def test_group_file_maps_identities_and_missing_groups_are_named(tmp_path: Path) -> None:
    from facebalance.data.shards import write_table_atomic

    (tmp_path / "test").mkdir()
    write_table_atomic(pd.DataFrame({"id": ["x1", "x2"], "image": [b"", b""]}),
                       tmp_path / "test" / "part-00000.parquet")
    rows = pd.DataFrame({"id": ["x1", "x2"], "identity": ["Ann", "Bob"], "split": "test"})
    (tmp_path / "groups.csv").write_text("identity,race\nAnn,White\nBob,Black\n")
    out = attach_groups(rows, tmp_path, ["race"], str(tmp_path / "groups.csv"))
    assert out["race"].tolist() == [1, 0]  # sorted names: Black 0, White 1
    (tmp_path / "groups.csv").write_text("identity,race\nAnn,White\n")
    with pytest.raises(FacebalanceError, match="identity 'Bob' has no 'race' group"):
        attach_groups(rows, tmp_path, ["race"], str(tmp_path / "groups.csv"))
    with pytest.raises(FacebalanceError, match=r"verify.groups lists \['skin'\]"):
        attach_groups(rows, tmp_path, ["race", "skin"], str(tmp_path / "groups.csv"))
    # Without a group file, columns the images lack are left out (the synthfaces defaults
    # on a real dataset), the others kept.
    (tmp_path / "groups.csv").write_text("identity,race\nAnn,White\nBob,Black\n")
    kept = attach_groups(rows, tmp_path, ["skin"])
    assert present_groups(kept, ["skin"]) == []


def test_a_pairs_file_is_used_when_prepare_wrote_one(tmp_path: Path) -> None:
    from facebalance.data.shards import write_table_atomic

    table = pd.DataFrame({"id_a": ["a", "a", "c", "e"], "id_b": ["b", "c", "d", "f"],
                          "same": [1, 0, 1, 0], "fold": 0,
                          "split": ["train", "train", "train", "test"], "line": 2})
    write_table_atomic(table, tmp_path / "pairs.parquet")
    rows = pd.DataFrame({"id": list("abcdef"),
                         "split": ["train"] * 4 + ["test", "val"],
                         "head_fit": [True, True, False, True, True, True]})
    pairs, source = load_pairs(tmp_path, rows, [], 10, 0, 0.0)
    assert source == "pairs file"
    assert pairs.columns.tolist() == ["id_a", "id_b", "same", "split"]
    # c: the embedder trained on it (no train pair for the head); f: in val, pair in test.
    assert pairs[["id_a", "id_b"]].to_numpy().tolist() == [["a", "b"]]
