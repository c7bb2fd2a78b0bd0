import numpy as np
import pandas as pd
import pytest

from facebalance.config import parse_params
from facebalance.errors import FacebalanceError
from facebalance.task import (
    TaskSpec,
    cell_ids,
    group_ids,
    group_names,
    param_columns,
    present_cells,
    resolve_task,
    task_from_params,
    task_labels,
)

TRAIN = pd.DataFrame({"skin": np.array([0, 1, 2, 3, 1, 0], np.int8),
                      "male": np.array([0, 1, 1, 0, 1, 0], np.int8),
                      "age": np.array([18.0, 25.0, 33.0, 41.0, 67.0, 80.0], np.float32)})


def test_heads_per_kind() -> None:
    binary = resolve_task("binary", "male", "skin", TRAIN)
    assert (binary.num_outputs, binary.heads[0].kind) == (1, "binary")
    multi = resolve_task("multiclass", "skin", "skin", TRAIN)
    assert (multi.num_outputs, multi.heads[0].n_classes) == (4, 4)
    both = resolve_task("multitask", "skin", "skin", TRAIN, extra_targets=["male"])
    assert [h.kind for h in both.heads] == ["multiclass", "binary"]
    assert both.num_outputs == 5 and both.slices() == [slice(0, 4), slice(4, 5)]
    reg = resolve_task("regression", "age", "", TRAIN, age_bins=[30, 60])
    assert reg.num_outputs == 1
    assert reg.heads[0].center == pytest.approx(TRAIN["age"].mean())
    assert reg.heads[0].scale == pytest.approx(TRAIN["age"].std(ddof=0))
    assert TaskSpec.from_dict(both.to_dict()) == both
    assert TaskSpec.from_dict(reg.to_dict()) == reg


def test_task_from_params_reads_the_sections() -> None:
    p = parse_params({"dataset": {"target": "skin", "protected": "skin",
                                  "skin_shares": [0.4, 0.3, 0.2, 0.1]},
                      "task": {"kind": "multitask", "extra_targets": ["male"]},
                      "strategies": ["baseline"]})
    assert param_columns(p) == ["skin", "male"]
    assert [h.column for h in task_from_params(p, TRAIN).heads] == ["skin", "male"]


@pytest.mark.parametrize(("kind", "target", "message"), [
    ("binary", "skin", r"kind binary needs 'skin' to hold 0 and 1, it holds 4 classes"),
    ("multiclass", "hat", r"the training split has no column 'hat'"),
    ("multiclass", "age", r"column 'age' must hold class numbers 0, 1, \.\.\., got float32"),
])
def test_bad_columns_are_named(kind: str, target: str, message: str) -> None:
    with pytest.raises(FacebalanceError, match=message):
        resolve_task(kind, target, "male", TRAIN)


def test_groups_cells_and_names_match_a_loop() -> None:
    reg = resolve_task("regression", "age", "", TRAIN, age_bins=[30, 40, 60])
    groups = group_ids(reg, TRAIN)
    expect = [sum(a >= e for e in (30, 40, 60)) for a in TRAIN["age"]]
    assert groups.tolist() == expect == [0, 0, 1, 2, 3, 3]
    assert reg.n_groups == 4 and cell_ids(reg, TRAIN["age"], groups).tolist() == expect
    assert reg.group_names() == ["age <30", "age 30-39", "age 40-59", "age 60+"]
    assert reg.cell_names() == dict(enumerate(reg.group_names()))
    clf = resolve_task("multiclass", "skin", "male", TRAIN)
    labels = task_labels(clf, TRAIN)
    cells = cell_ids(clf, labels["label"], labels["group"])
    assert cells.tolist() == [s * 2 + m for s, m in zip(TRAIN["skin"], TRAIN["male"],
                                                         strict=True)]
    assert (clf.n_groups, clf.n_cells, reg.n_cells) == (2, 8, 4)
    assert clf.group_names() == group_names(clf, np.array([0, 1])) == ["male=0", "male=1"]
    assert clf.cell_names()[5] == "skin=2, male=1"
    # K groups come from the training split and travel with the spec (checkpoints).
    skin = resolve_task("binary", "male", "skin", TRAIN)
    assert skin.n_groups == 4 and TaskSpec.from_dict(skin.to_dict()) == skin
    with pytest.raises(FacebalanceError, match=r"group 4 of skin is not one of the training "
                       r"split's 0\.\.3"):
        cell_ids(skin, np.zeros(1), np.array([4]))
    with pytest.raises(FacebalanceError, match=r"column 'male' \(dataset.protected\) must "
                       r"hold group numbers 0, 1, \.\.\., got -1"):
        resolve_task("binary", "skin", "male", TRAIN.assign(skin=TRAIN["skin"] % 2, male=-1))


def test_task_labels_when_target_is_the_protected_column() -> None:
    task = resolve_task("multitask", "skin", "skin", TRAIN, extra_targets=["male"])
    frame = task_labels(task, TRAIN)
    assert list(frame.columns) == ["label", "label1", "group"]
    assert (frame["label"] == frame["group"]).all() and (frame["label1"] == TRAIN["male"]).all()


def test_present_cells_number_the_observed_label_group_pairs_in_order() -> None:
    rng = np.random.default_rng(0)
    label, group = rng.integers(0, 3, 200), rng.integers(0, 5, 200)
    label[group == 4] = 1  # cells (0, 4) and (2, 4) absent: numbering stays dense
    loop = {cell: k for k, cell in enumerate(sorted(set(zip(label, group, strict=True))))}
    expected = [loop[(y, g)] for y, g in zip(label, group, strict=True)]
    assert present_cells(label, group).tolist() == expected


def test_classifier_task_is_one_binary_or_one_multiclass_head() -> None:
    from facebalance.task import BINARY_TASK, classifier_task

    assert classifier_task(2) == BINARY_TASK
    four = classifier_task(4)
    assert four.kind == "multiclass" and four.num_outputs == 4 and four.target == "label"


def test_read_task_resolves_the_task_from_the_training_split(tiny_prepared) -> None:
    from facebalance.api import resolve_params
    from facebalance.task import read_task

    train, task = read_task(resolve_params(None), tiny_prepared / "train")
    assert {"id", "path", "blond", "male"} <= set(train.columns) and len(train) == 480
    assert task.kind == "binary" and task.n_groups == 2 and task.protected == "male"
