"""Train and evaluate each task kind on the real-dataset format fixtures (UTKFace, FairFace)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facebalance.balance.strategies import build_training_index
from facebalance.config import ClassifierParams, EvaluateParams, parse_params
from facebalance.data.prepare import prepare_dataset
from facebalance.data.shards import read_columns, shard_refs
from facebalance.errors import FacebalanceError
from facebalance.metrics.tasks import weighted_mae
from facebalance.models.classifier import save_checkpoint
from facebalance.models.evaluate import evaluate_models
from facebalance.models.fit import fit_classifier
from facebalance.task import Head, TaskSpec, param_columns, task_from_params, task_labels

from ..data.realdata import make_fairface, make_utkface

CPU = torch.device("cpu")
TINY = ClassifierParams(width=8, epochs=2, batch_size=32, lr=0.01)


def _run(params: dict, root: Path, strategy: str = "oversample") -> tuple[dict, pd.DataFrame]:
    """prepare, the strategy's index, two seeds of training, evaluate: the stages' calls."""
    p = parse_params({**params, "strategies": [strategy], "compare": {"metrics": []}})
    data = root / "prepared"
    prepare_dataset(p.dataset, data, seed=0, image_size=32, progress=False,
                    kind=p.task.kind, extra_targets=p.task.extra_targets)
    train = shard_refs(data / "train", ["id", *param_columns(p)])
    task = task_from_params(p, train)
    real = pd.concat([train[["path", "_file", "_row", "id"]], task_labels(task, train)], axis=1)
    index = build_training_index(strategy, real, task=task, seed=0)
    for s in (0, 1):
        net, cfg, _ = fit_classifier(index, TINY, image_size=32, seed=s, device=CPU, task=task)
        save_checkpoint(root / "models" / f"seed{s}.pt", net, cfg, {"task": task.to_dict()})
    return evaluate_models(data, root / "models", [0, 1], default_task=task,
                           columns=param_columns(p), device=CPU,
                           params=EvaluateParams(bootstrap=20))


def test_utkface_age_regression(tmp_path: Path) -> None:
    make_utkface(tmp_path / "utk", n=120)
    rep, both = _run({"dataset": {"name": "utkface", "root": str(tmp_path / "utk"),
                                  "target": "age", "protected": ""},
                      "task": {"kind": "regression", "age_bins": [30, 45, 60]}}, tmp_path)
    assert rep["task"]["kind"] == "regression" and rep["task"]["heads"][0]["column"] == "age"
    # Test rows for the report, val rows for compare's validation guard.
    val_ages = read_columns(tmp_path / "prepared" / "val", ["age"])["age"].to_numpy()
    assert np.allclose(both.loc[both["split"] == "val", "label"], val_ages)
    table = both[both["split"] == "test"]
    ages = read_columns(tmp_path / "prepared" / "test", ["age"])["age"].to_numpy()
    assert np.allclose(table["label"], ages)
    assert table["group"].tolist() == np.digitize(ages, [30, 45, 60]).tolist()
    # The report's WMAE is the seed mean of the array function on the written predictions.
    wmae = [weighted_mae(table["label"], table[f"pred_seed{s}"], table["group"]) for s in (0, 1)]
    assert rep["wmae"]["value"] == pytest.approx(np.mean(wmae))
    assert rep["worst_group_mae"]["value"] >= rep["wmae"]["value"] >= rep["best_group_mae"][
        "value"]
    assert set(rep["by_group"]) <= {"age <30", "age 30-44", "age 45-59", "age 60+"}
    _check_gallery(tmp_path, rep, both)
    # A regression checkpoint where params ask for a binary task: one line, not KeyError.
    binary = TaskSpec(heads=(Head("male", "binary"),), protected="race")
    with pytest.raises(FacebalanceError, match=r"^evaluate: the checkpoints in .*models were "
                       r"trained for a regression task on age; params.yaml asks for a binary "
                       r"task on male, race: rerun train_target"):
        evaluate_models(tmp_path / "prepared", tmp_path / "models", [0, 1],
                        default_task=binary, columns=["male", "race"], device=CPU,
                        params=EvaluateParams(bootstrap=20))


def test_fairface_multitask_race_and_gender(tmp_path: Path) -> None:
    make_fairface(tmp_path / "ff", n_train=120, n_val=40)
    rep, table = _run({"dataset": {"name": "fairface", "root": str(tmp_path / "ff"),
                                   "target": "race", "protected": "race"},
                       "task": {"kind": "multitask", "extra_targets": ["male"]}},
                      tmp_path, strategy="reweight")
    heads = [(h["column"], h["kind"], h["n_classes"]) for h in rep["task"]["heads"]]
    assert heads == [("race", "multiclass", 7), ("male", "binary", 2)]
    assert set(table["pred_seed0"]) <= set(range(7)) and set(table["pred1_seed1"]) <= {0, 1}
    assert {"accuracy", "macro_f1", "class_acc_std", "accuracy_male"} <= set(rep)
    assert len(rep["by_class"]) == 7
    _check_gallery(tmp_path, rep, table)


def _check_gallery(root: Path, report: dict, table: pd.DataFrame) -> None:
    """evaluate's gallery: a PNG with one row of faces per group that has mistakes."""
    import io

    from PIL import Image

    from facebalance.models.evaluate import evaluation_gallery

    png = evaluation_gallery(root / "prepared", report, table, 0, k=3)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > 300 and image.height > 100


def test_a_class_column_is_refused_as_a_binary_target(tmp_path: Path) -> None:
    make_fairface(tmp_path / "ff", n_train=40, n_val=12)
    p = parse_params({"dataset": {"name": "fairface", "root": str(tmp_path / "ff"),
                                  "target": "race", "protected": "male"}})
    with pytest.raises(FacebalanceError, match=r"dataset\.target = 'race' is not a binary "
                       r"column of FairFace label CSVs; binary columns: male, race_white.*"
                       r"\(task\.kind: binary\)"):
        prepare_dataset(p.dataset, tmp_path / "out", seed=0, image_size=32, progress=False)
    assert not (tmp_path / "out").exists()
