"""The rows a verification embeds and the embeddings' holdout (data/embeddings.py)."""

from pathlib import Path

import pandas as pd
import pytest

from facebalance.data.embeddings import (
    embedding_rows,
    holdout_identities,
    pair_image_rows,
    pairs_possible,
)
from facebalance.errors import FacebalanceError


def test_holdout_keeps_whole_identities_out_of_training(tiny_prepared: Path) -> None:
    rows = embedding_rows(tiny_prepared, need_identity=True)
    held = holdout_identities(rows, 0.25, seed=3)
    train = rows["split"] == "train"
    assert held[~train].all()  # val/test are never trained on
    by_identity = rows[train].assign(h=held[train]).groupby("identity")["h"].nunique()
    assert (by_identity == 1).all()  # an identity is held out with all its images
    share = rows[train & held]["identity"].nunique() / rows[train]["identity"].nunique()
    assert share == pytest.approx(0.25, abs=0.01)


def test_embedder_without_identities(tmp_path: Path) -> None:
    from facebalance.data.shards import write_table_atomic

    (tmp_path / "train").mkdir()
    write_table_atomic(__import__("pandas").DataFrame({"id": ["a"], "image": [b""]}),
                       tmp_path / "train" / "part-00000.parquet")
    with pytest.raises(FacebalanceError, match="have no identity column"):
        embedding_rows(tmp_path, need_identity=True)
    assert embedding_rows(tmp_path, need_identity=False)["identity"].tolist() == [""]


def test_pairs_possible_says_why_not() -> None:

    rows = __import__("pandas").DataFrame({
        "split": ["train"] * 3 + ["val"] * 3 + ["test"] * 3,
        "identity": ["a", "a", "b", "c", "c", "d", "e", "f", "g"]})
    assert pairs_possible(rows) == "the test split has 3 identities, 0 with two images"
    rows.loc[8, "identity"] = "f"
    assert pairs_possible(rows) == ""
    assert "no identity column" in pairs_possible(rows.assign(identity=""))


def test_pair_image_rows_keeps_the_faces_the_pairs_use() -> None:

    rows = pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "split": ["train"] * 5})
    pairs = pd.DataFrame({"id_a": ["a", "c", "a"], "id_b": ["c", "e", "e"]})
    assert pair_image_rows(rows, pairs)["id"].tolist() == ["a", "c", "e"]
