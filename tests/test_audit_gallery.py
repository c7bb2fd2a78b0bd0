"""The audit's per-group gallery of most confident mistakes, and the bad inputs of
``facebalance audit`` that test_audit.py does not reach: each one line with its exact text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import facebalance.audit as audit_module
from facebalance.audit import (
    ERR_CLASS_LABEL,
    ERR_DUPLICATE_ID,
    ERR_NO_ID,
    ERR_NO_SCORES,
    ERR_NO_TEST,
    ERR_NOT_NUMERIC,
    ERR_ONE_COLUMN,
    ERR_SHARDS_NO_ID,
    ERR_SPLIT,
    ERR_THRESHOLD,
    ERR_VAL_POSITIVES,
    audit_files,
    audit_predictions,
)
from facebalance.cli import app
from facebalance.data.shards import encode_png, read_columns
from facebalance.errors import FacebalanceError
from facebalance.gallery import (
    ERR_IMAGE_FILE,
    ERR_NO_SHARD_ID,
    images_from_shards,
    mistakes_gallery,
    pick_mistakes,
)

from .test_audit import scored

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------- picking


def test_binary_picks_the_lowest_scored_positives_and_highest_scored_negatives() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    s = np.array([0.1, 0.3, 0.9, 0.8, 0.6, 0.2, 0.05, 0.95])
    g = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    picks = pick_mistakes(y, g, scores=s, threshold=0.5, k=2)
    assert picks.rows[0]["false negatives"].tolist() == [0, 1]  # 0.1 before 0.3
    assert picks.rows[0]["false positives"].tolist() == [3, 4]  # 0.8 before 0.6
    assert picks.rows[1]["false negatives"].tolist() == [6]
    assert picks.rows[1]["false positives"].tolist() == [7]
    assert picks.counts[0] == {"false negatives": 2, "false positives": 2}
    assert picks.captions[6] == "0.05"
    assert picks.shown().tolist() == [0, 1, 3, 4, 6, 7]


def test_multiclass_and_regression_picks() -> None:
    y = np.array([0, 1, 2, 2, 1])
    proba = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0, 0, 1],
                      [0.1, 0.2, 0.7]])
    picks = pick_mistakes(y, np.zeros(5, int), kind="multiclass", scores=proba, k=5,
                          class_names=["cat", "dog", "owl"])
    assert picks.rows[0]["wrong class"].tolist() == [2, 4, 1]  # by confidence 0.8, 0.7, 0.6
    assert picks.captions[2] == "owl→dog 0.80"
    age = np.array([20.0, 30, 40, 50])
    pred = np.array([35.0, 29, 20, 52])
    picks = pick_mistakes(age, np.array([0, 0, 1, 1]), kind="regression", y_pred=pred, k=3)
    assert picks.rows[0]["over-estimates"].tolist() == [0]
    assert picks.rows[1]["under-estimates"].tolist() == [2]
    assert picks.rows[1]["over-estimates"].tolist() == [3]


def test_mistakes_gallery_draws_a_png_from_an_image_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    y = rng.integers(0, 2, 40)
    png = mistakes_gallery(images, y, rng.integers(0, 2, 40), ["female", "male"],
                           scores=rng.random(40), threshold=0.5, k=3, title="test",
                           out=tmp_path / "g.png")
    assert png[:8] == PNG and (tmp_path / "g.png").read_bytes() == png


# ------------------------------------------------------------------------ image sources


def with_image_files(tmp_path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(len(frame)):
        (folder / f"{i}.png").write_bytes(encode_png(np.full((12, 10, 3), i % 256, np.uint8)))
    return frame.assign(path=[f"faces/{i}.png" for i in range(len(frame))])


def test_audit_with_an_image_column_reads_only_the_faces_shown(tmp_path: Path,
                                                               monkeypatch) -> None:
    frame = with_image_files(tmp_path, scored(200, 30))
    path = tmp_path / "preds.csv"
    frame.to_csv(path, index=False)
    read = []
    real = audit_module.load_image_file
    monkeypatch.setattr(audit_module, "load_image_file",
                        lambda p, where="?": read.append(p) or real(p, where))
    reports = audit_files(path, tmp_path / "out", groups=["gender"], scores="score",
                          threshold=0.5, n_bootstrap=10, images="path", gallery_k=2)
    png = (tmp_path / "out" / "gender_gallery.png").read_bytes()
    assert png[:8] == PNG
    assert 0 < len(read) <= 2 * 2 * 2  # 2 groups x 2 kinds x 2 faces, not 200
    meta = reports["gender"]["audit"]["gallery"]
    assert meta.startswith("gender_gallery.png: ") and "up to 2 per kind" in meta
    assert "Gallery: gender_gallery.png" in (tmp_path / "out" / "audit.md").read_text()
    (tmp_path / "faces" / f"{Path(read[0]).stem}.png").unlink()
    with pytest.raises(FacebalanceError, match=r"^gallery: cannot read the image of row \d+ "
                                               r"\(id 'img\d+'\): .*faces/\d+\.png: "):
        audit_files(path, tmp_path / "out2", groups=["gender"], scores="score",
                    threshold=0.5, n_bootstrap=10, images="path", gallery_k=2)


def test_without_an_image_source_there_is_no_gallery_and_the_report_says_so(
        tmp_path: Path) -> None:
    path = tmp_path / "preds.csv"
    scored(100, 31).to_csv(path, index=False)
    reports = audit_files(path, tmp_path / "out", groups=["gender"], scores="score",
                          threshold=0.5, n_bootstrap=10)
    assert not (tmp_path / "out" / "gender_gallery.png").exists()
    said = "none: no image source was given (--images COLUMN or --shards DIR)"
    assert reports["gender"]["audit"]["gallery"] == said
    assert json.loads((tmp_path / "out" / "gender.json").read_text())["audit"][
        "gallery"] == said


def test_audit_of_shard_images_by_id(tiny_prepared: Path, tmp_path: Path) -> None:
    refs = read_columns(tiny_prepared / "test", ["id", "blond", "male"])
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"id": refs["id"], "label": refs["blond"], "group": refs["male"],
                          "score": rng.random(len(refs))})
    path = tmp_path / "preds.parquet"
    frame.to_parquet(path)
    result = runner.invoke(app, ["audit", str(path), "--score", "score", "--shards",
                                 str(tiny_prepared / "test"), "--threshold", "0.5",
                                 "--bootstrap", "10", "--gallery", "3", "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "group_gallery.png").read_bytes()[:8] == PNG
    faces = images_from_shards(tiny_prepared / "test", {5: refs["id"].iloc[5]})
    assert faces[5].shape == (32, 32, 3)
    with pytest.raises(FacebalanceError, match=re.escape(ERR_NO_SHARD_ID.format(
            id="nope", where="row 1", path=tiny_prepared / "test"))):
        images_from_shards(tiny_prepared / "test", {1: "nope"}, {1: "row 1"})
    with pytest.raises(FacebalanceError, match=re.escape(ERR_SHARDS_NO_ID.format(
            source=str(path), column="id"))):
        frame.drop(columns="id").to_parquet(path)
        audit_files(path, tmp_path / "out", scores="score", shards=tiny_prepared / "test",
                    threshold=0.5, n_bootstrap=10)


def test_gallery_image_error_text() -> None:
    assert ERR_IMAGE_FILE.format(where="row 3", path="a.png", reason="x") == (
        "gallery: cannot read the image of row 3: a.png: x")


# ---------------------------------------------------------------------------- bad input


def test_more_bad_inputs_are_one_line_each() -> None:
    frame = scored(60, 32)
    cases = [
        (frame.drop(columns="score"), {},
         ERR_NO_SCORES.format(source="the predictions", pattern="score_seed<N>")),
        (frame, {"scores": "score,label"},
         ERR_ONE_COLUMN.format(kind="binary", what="score", spec="score,label")),
        (frame.assign(score=frame["score"].astype(object).where(frame.index != 2, "high")),
         {"scores": "score"},
         ERR_NOT_NUMERIC.format(role="score", column="score", value="high",
                                where="row 3 (id 'img0002')")),
        (frame.assign(split=["test"] * 59 + ["tset"]), {"scores": "score"},
         ERR_SPLIT.format(column="split", value="tset", where="row 60 (id 'img0059')")),
        (frame.assign(split="val"), {"scores": "score"},
         ERR_NO_TEST.format(source="the predictions")),
        (pd.concat([frame.assign(split="test"), frame.assign(split="val", label=0,
                                                             id="v" + frame["id"])]),
         {"scores": "score"}, ERR_VAL_POSITIVES),
        (frame, {"scores": "score", "threshold": 1.5}, ERR_THRESHOLD.format(value=1.5)),
        (frame.assign(p0=0.5, p1=0.5, label=frame["label"] * 2), {"scores": "p0,p1",
                                                                  "kind": "multiclass"},
         ERR_CLASS_LABEL.format(column="label", value=2, where="row 1 (id 'img0000')",
                                last=1)),
    ]
    for table, kwargs, message in cases:
        with pytest.raises(FacebalanceError, match=f"^{re.escape(message)}$"):
            audit_predictions(table, groups="gender", **kwargs)


def test_paired_files_with_duplicated_ids_or_without_ids() -> None:
    after = scored(80, 33)
    before = after.copy()
    before.loc[7, "id"] = "img0003"
    dup = ERR_DUPLICATE_ID.format(id="img0003", source="the reference predictions",
                                  first="row 4", second="row 8")
    with pytest.raises(FacebalanceError, match=f"^{re.escape(dup)}$"):
        audit_predictions(after, scores="score", groups="gender", reference=before)
    no_id = ERR_NO_ID.format(source="the predictions", column="id")
    with pytest.raises(FacebalanceError, match=f"^{re.escape(no_id)}$"):
        audit_predictions(after.drop(columns="id"), scores="score", groups="gender",
                          reference=after)
