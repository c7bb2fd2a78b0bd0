"""A folder dataset with a label CSV as people export it (a BOM, Windows line ends, quoted
commas, free text, text groups, a file-name column) runs prepare -> train -> evaluate;
a stage pointed at a folder of the user's refuses instead of deleting it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from facebalance.balance.strategies import build_training_index
from facebalance.config import ClassifierParams, EvaluateParams, parse_params
from facebalance.data.prepare import prepare_dataset
from facebalance.data.shards import read_columns, shard_refs
from facebalance.models.classifier import save_checkpoint
from facebalance.models.evaluate import evaluate_models
from facebalance.models.fit import fit_classifier
from facebalance.task import param_columns, task_from_params, task_labels

from .conftest import REPO
from .data.realdata import make_folder

CPU = torch.device("cpu")


def _realistic_csv(root: Path) -> pd.DataFrame:
    frame = make_folder(root, n=96, broken=False)
    rng = np.random.default_rng(3)
    frame["gender"] = np.where(frame["male"] == "true", "man", "woman")
    frame["ethnicity"] = rng.choice(["group a", "group b", "group c"], len(frame))
    frame["note"] = [f'taken outdoors, "sunny", id {i}' for i in range(len(frame))]
    frame["filename"] = [Path(f).name for f in frame["file"]]
    frame = frame.drop(columns="male")
    text = frame.to_csv(index=False, lineterminator="\r\n")
    (root / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    return frame


def test_a_realistic_label_csv_runs_prepare_train_evaluate(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    frame = _realistic_csv(root)
    p = parse_params({"dataset": {"name": "folder", "root": str(root), "target": "blond",
                                  "protected": "gender", "n_train": 8},
                      "strategies": ["reweight"], "compare": {"metrics": []}})
    data = tmp_path / "prepared"
    summary = prepare_dataset(p.dataset, data, seed=0, image_size=32, progress=False)
    assert summary["classes"]["gender"] == ["man", "woman"]
    assert summary["classes"]["ethnicity"] == ["group a", "group b", "group c"]
    assert summary["columns_left_out"] == ["note", "filename"]  # 96 distinct values each
    written = pd.concat([read_columns(data / s, ["source_file", "gender", "ethnicity"])
                         for s in ("train", "val", "test")])
    truth = frame.set_index("file").loc[written["source_file"]]
    assert (written["gender"].to_numpy() == (truth["gender"] == "woman").to_numpy()).all()

    train = shard_refs(data / "train", ["id", *param_columns(p)])
    task = task_from_params(p, train)
    real = pd.concat([train[["path", "_file", "_row", "id"]], task_labels(task, train)], axis=1)
    index = build_training_index("reweight", real, task=task, seed=0)
    tiny = ClassifierParams(width=16, epochs=1, batch_size=32)
    net, cfg, _ = fit_classifier(index, tiny, image_size=32, seed=0, device=CPU, task=task)
    save_checkpoint(tmp_path / "models" / "seed0.pt", net, cfg, {"task": task.to_dict()})
    report, _ = evaluate_models(data, tmp_path / "models", [0], default_task=task,
                                columns=param_columns(p), device=CPU,
                                params=EvaluateParams(bootstrap=20))
    assert set(report["by_group"]) == {"gender=0", "gender=1"}
    assert 0.0 <= report["deo"]["value"] <= 1.0


def test_prepare_refuses_to_replace_a_folder_of_the_users(tmp_path: Path) -> None:
    """The reported case: ``stages/prepare.py --out`` a folder holding my_notes.txt."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"dataset": {"n_train": 64, "n_val": 16, "n_test": 16, "rows_per_file": 64,
                     "row_group_size": 16}}))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my_notes.txt").write_text("keep")
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "prepare.py"), "--out", "mine",
                           "--summary", "p.json"], capture_output=True, text=True, cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert errors == ["error: mine holds files this stage did not write (my_notes.txt); it "
                      "replaces its output folder as a whole: move them away or choose "
                      "another --out"]
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["my_notes.txt"]
    assert not (tmp_path / "p.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "params.yaml"]
