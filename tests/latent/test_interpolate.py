from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facebalance.balance.strategies import added_rows, build_training_index
from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import (
    ShardWriter,
    decode_image,
    encode_png_batch,
    read_columns,
    shard_refs,
)
from facebalance.errors import FacebalanceError
from facebalance.latent.interpolate import (
    mix,
    mix_labels,
    mix_pixels,
    smote_labels,
    smote_plan,
    write_pixel_mixes,
)
from facebalance.task import TaskSpec, cell_ids, resolve_task, task_labels

AGE_BINS = (30, 40, 50, 60, 70)


def _ages(n: int, seed: int) -> np.ndarray:
    """UTKFace-like: most 20-35, few 60+."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.gamma(4.0, 7.0, n) + 15), 18, 80).astype(np.int64)


def test_smote_plan_fills_every_small_cell_to_the_mean_size() -> None:
    cells = np.repeat([0, 1, 2, 3, 5], [50, 20, 7, 2, 1])  # no cell 4; 5 has one member
    plan, report = smote_plan(cells, seed=0)
    target = int(np.ceil(80 / 5))
    assert report["target_size"] == target == 16
    # A reference loop over the cells: each small one gains target - size members.
    for cell, size in zip(*np.unique(cells, return_counts=True), strict=True):
        added = int((plan["cell"] == cell).sum())
        expected = 0 if size >= target or size < 2 else target - size
        assert added == expected, cell
        assert report["cells"][str(cell)] == {"before": int(size), "after": int(size) + added}
    assert report["skipped_cells"] == [5] and report["new_samples"] == len(plan) == 9 + 14
    assert (cells[plan["a"]] == plan["cell"]).all() and (cells[plan["b"]] == plan["cell"]).all()
    assert (plan["a"] != plan["b"]).all()
    assert plan["alpha"].between(0.1, 0.9).all()
    again, _ = smote_plan(cells, seed=0)
    pd.testing.assert_frame_equal(plan, again)
    other, _ = smote_plan(cells, seed=1)
    assert not plan["alpha"].equals(other["alpha"])


def test_smote_plan_draws_every_member_and_the_whole_range() -> None:
    cells = np.repeat([0, 1], [1000, 10])
    plan, _ = smote_plan(cells, seed=3, lo=0.2, hi=0.6)
    assert len(plan) == 495 and set(plan["a"]) == set(range(1000, 1010))
    assert 0.2 <= plan["alpha"].min() < 0.22 and 0.58 < plan["alpha"].max() <= 0.6
    balanced, report = smote_plan(np.repeat([0, 1], [5, 5]), seed=0)
    assert balanced.empty and report["new_samples"] == 0


def test_mixing_matches_a_loop() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    alpha = rng.uniform(0.1, 0.9, 6)
    loop = np.stack([(1 - alpha[i]) * a[i] + alpha[i] * b[i] for i in range(6)])
    np.testing.assert_allclose(mix(a, b, alpha), loop)
    xa = rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8)
    xb = rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8)
    out = mix_pixels(xa, xb, alpha)
    assert out.dtype == np.uint8
    for i in range(6):
        ref = np.rint((1 - alpha[i]) * xa[i].astype(float) + alpha[i] * xb[i].astype(float))
        assert np.abs(out[i].astype(int) - ref.astype(int)).max() <= 1
    np.testing.assert_array_equal(mix_labels("class", np.array([0, 1]), np.array([5, 6]),
                                             np.array([0.4, 0.6])), [0, 6])


def test_regression_labels_interpolate_and_keep_the_group() -> None:
    ages = _ages(600, seed=1)
    train = pd.DataFrame({"age": ages})
    task = resolve_task("regression", "age", "", train, age_bins=AGE_BINS)
    labels = task_labels(task, train)
    cells = cell_ids(task, labels["label"], labels["group"])
    plan, _ = smote_plan(cells, seed=0)
    new = smote_labels(task, labels, plan)
    a, b, alpha = plan["a"].to_numpy(), plan["b"].to_numpy(), plan["alpha"].to_numpy()
    np.testing.assert_allclose(new["label"], (1 - alpha) * ages[a] + alpha * ages[b],
                               rtol=1e-6)
    lo, hi = np.minimum(ages[a], ages[b]), np.maximum(ages[a], ages[b])
    assert ((new["label"] >= lo - 1e-4) & (new["label"] <= hi + 1e-4)).all()
    # Both sources share the group, and so does the new sample (recomputed from its age).
    assert (labels["group"].to_numpy()[a] == labels["group"].to_numpy()[b]).all()
    np.testing.assert_array_equal(new["group"], labels["group"].to_numpy()[a])
    counts = np.bincount(np.concatenate([labels["group"], new["group"]]))
    assert counts.min() >= int(np.ceil(600 / len(np.unique(labels["group"]))))


def test_classification_cells_keep_label_and_group() -> None:
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"blond": (rng.random(400) < 0.2).astype(np.int8),
                          "skin": rng.choice(4, 400, p=[0.55, 0.25, 0.12, 0.08]),
                          "male": rng.integers(0, 2, 400)})
    task = resolve_task("multitask", "blond", "skin", train, extra_targets=["male"])
    labels = task_labels(task, train)
    plan, _ = smote_plan(cell_ids(task, labels["label"], labels["group"]), seed=0)
    new = smote_labels(task, labels, plan)
    a, b = plan["a"].to_numpy(), plan["b"].to_numpy()
    np.testing.assert_array_equal(new["label"], labels["label"].to_numpy()[a])
    np.testing.assert_array_equal(new["group"], labels["group"].to_numpy()[b])
    larger = np.where(plan["alpha"] > 0.5, b, a)  # the extra head follows the larger share
    np.testing.assert_array_equal(new["label1"], labels["label1"].to_numpy()[larger])


def _real_shards(root: Path, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    with ShardWriter(root, rows_per_file=7, row_group_size=3) as w:
        w.write(pd.DataFrame({"id": [f"r{i}" for i in range(n)],
                              "image": encode_png_batch(images),
                              "age": np.arange(n) + 20}))
    return shard_refs(root, ["id", "age"]), images


def test_pixel_mixes_round_trip_into_a_training_index(tmp_path: Path) -> None:
    refs, images = _real_shards(tmp_path / "train", 12)
    plan = pd.DataFrame({"a": [0, 3, 11], "b": [1, 4, 10], "alpha": [0.1, 0.5, 0.9]})
    ids = ["i0", "i1", "i2"]
    columns = pd.DataFrame({"label": np.float32([20.1, 23.5, 30.1]), "group": [0, 0, 0]})
    write_pixel_mixes(ShardDataset(refs, {}), plan, ids, columns, tmp_path / "pixel",
                      batch_size=2)
    stored = read_columns(tmp_path / "pixel", ["id", "image", "source", "label"])
    assert stored["id"].tolist() == ids and (stored["source"] == "interpolated").all()
    for k, (a, b, alpha) in enumerate(plan[["a", "b", "alpha"]].itertuples(index=False)):
        np.testing.assert_array_equal(decode_image(stored["image"][k]),
                                      mix_pixels(images[[a]], images[[b]], np.array([alpha]))[0])
    rows = added_rows(columns.assign(id=ids), shard_refs(tmp_path / "pixel", ["id"]))
    real = refs.assign(label=refs["age"].astype(np.float32), group=0)
    task = TaskSpec(kind="regression", age_bins=AGE_BINS)
    index = build_training_index("pixel_smote", real, task=task, interpolated=rows)
    assert len(index) == 15 and index["source"].tolist() == ["real"] * 12 + ["interpolated"] * 3
    assert (index["weight"] == 1).all()
    np.testing.assert_allclose(index["label"].iloc[12:], columns["label"])
    assert (index["path"].iloc[12:] == str(tmp_path / "pixel")).all()
    with pytest.raises(FacebalanceError, match="needs the interpolated images"):
        build_training_index("latent_smote", real, task=task)
    with pytest.raises(FacebalanceError, match=r"'nope' is in plan\.parquet but in no image "
                                               r"shard of \['.*pixel'\]"):
        added_rows(pd.DataFrame({"id": ["nope"], "label": [1.0], "group": [0]}),
                          shard_refs(tmp_path / "pixel", ["id"]))
