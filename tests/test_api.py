"""The Python API: the stages' results without DVC, with the pipeline's defaults."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import average_precision_score

from facebalance import api
from facebalance.balance.registry import REGISTRY
from facebalance.config import Params, load_params
from facebalance.data.shards import read_parquet, shard_files
from facebalance.errors import FacebalanceError
from facebalance.models.classifier import load_checkpoint
from facebalance.runtime import finite_or_none

from .conftest import REPO
from .stagerun import run_stage

#: A tiny params file: each step in seconds on two CPU cores. Two epochs: val_attention's
#: weights act from the second on, so a lost val split would change the models.
TINY = {"base": {"device": "cpu"},
        "dataset": {"n_train": 480, "n_val": 80, "n_test": 160, "rows_per_file": 200,
                    "row_group_size": 50, "workers": 1},
        "train_target": {"epochs": 2, "width": 8, "seeds": [0, 1]},
        "evaluate": {"bootstrap": 20}}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the tiny params.yaml and the API's prepared shards in ``data/``."""
    root = tmp_path_factory.mktemp("api")
    (root / "params.yaml").write_text(yaml.safe_dump(TINY))
    api.prepare(root / "data", TINY, progress=False)
    return root


def _as_written(report: dict) -> dict:
    """A report as the stages' write_json leaves it (NaN -> null, tuples -> lists)."""
    return json.loads(json.dumps(finite_or_none(report)))


def test_defaults_are_the_pipeline_params() -> None:
    shipped = load_params(REPO / "params.yaml")
    assert api.resolve_params() == Params() == shipped
    for fn in (api.prepare, api.training_index, api.train, api.evaluate,
               api.evaluate_strategy, api.fairness_report):
        assert inspect.signature(fn).parameters["params"].default is None, fn.__name__
    changed = api.resolve_params({"train_target": {"epochs": 1}})
    assert changed.train_target.epochs == 1
    assert changed.train_target.lr == shipped.train_target.lr and changed.base == shipped.base
    assert api.resolve_params(REPO / "params.yaml") == shipped
    with pytest.raises(FacebalanceError, match=re.escape(
            "params: unknown key 'train_target.epoch' (did you mean 'epochs'?)")):
        api.resolve_params({"train_target": {"epoch": 1}})


def test_prepare_writes_what_the_stage_writes(project: Path) -> None:
    run_stage(project, "python stages/prepare.py --out stage_data --summary summary.json")
    assert api.prepare(project / "api_data", TINY, progress=False) == json.loads(
        (project / "summary.json").read_text())
    for split in ("train", "val", "test"):
        ours, theirs = shard_files(project / "api_data" / split), shard_files(
            project / "stage_data" / split)
        assert [f.name for f in ours] == [f.name for f in theirs]
        for a, b in zip(ours, theirs, strict=True):
            pd.testing.assert_frame_equal(read_parquet(a), read_parquet(b))


@pytest.mark.parametrize("strategy", api.REAL_ONLY)
def test_training_index_is_the_augment_stage_index(project: Path, strategy: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    run_stage(project, f"python stages/augment.py --strategy {strategy} --data data "
                       f"--out index_{strategy}.parquet")
    monkeypatch.chdir(project)  # the index refers to shards by the path it was given
    pd.testing.assert_frame_equal(api.training_index(strategy, "data", TINY),
                                  read_parquet(f"index_{strategy}.parquet"))


def test_real_only_is_every_strategy_without_upstream_stages() -> None:
    assert set(api.REAL_ONLY) == {"baseline", "reweight", "oversample", "mixup", "cutmix",
                                  "val_attention"}


def test_evaluate_strategy_gives_the_stages_report(project: Path) -> None:
    """val_attention: the index, the training options and the val split all take part."""
    strategy, data = "val_attention", project / "data"
    report = api.evaluate_strategy(strategy, data, project / "api_models", TINY)
    run_stage(project, f"python stages/augment.py --strategy {strategy} --data data "
                       "--out index.parquet")
    run_stage(project, f"python stages/train_target.py --strategy {strategy} --index "
                       "index.parquet --train data/train --val data/val --out models "
                       "--history history.csv")
    run_stage(project, f"python stages/evaluate.py --strategy {strategy} --data data "
                       "--models models --metrics metrics.json --report report.json "
                       "--scores scores.parquet")
    for s in (0, 1):
        ours, _, meta = load_checkpoint(project / "api_models" / f"seed{s}.pt")
        theirs, _, stage_meta = load_checkpoint(project / "models" / f"seed{s}.pt")
        assert meta == stage_meta
        for (k, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(),
                             strict=True):
            assert torch.equal(a, b), k
    assert _as_written(report) == json.loads((project / "report.json").read_text())
    assert list(report)[:2] == ["strategy", "task"] and report["n_seeds"] == 2
    for key in ("ap", "accuracy", "deo", "group_acc_std"):
        assert 0 <= report[key]["value"] <= 1, key
    assert set(report["by_group"]) == {"male=0", "male=1"}
    # The pieces on their own: the same checkpoints, evaluated for one seed.
    one = api.evaluate(data, project / "models", TINY, seeds=[1])
    assert one["n_seeds"] == 1 and one["ap"]["per_seed"] == {
        "seed1": report["ap"]["per_seed"]["seed1"]}


def test_train_takes_seeds_and_a_saved_index(project: Path) -> None:
    index = api.training_index("baseline", project / "data", TINY)
    index.to_parquet(project / "baseline.parquet")
    history = api.train("baseline", project / "baseline.parquet", project / "data",
                        project / "seed3", TINY, seeds=[3])
    assert sorted(p.name for p in (project / "seed3").iterdir()) == ["seed3.pt"]
    assert set(history["seed"]) == {3} and np.isfinite(history["loss"]).all()
    with pytest.raises(FacebalanceError, match=re.escape(
            "params: train_target.seeds contains -1; expected non-negative integers")):
        api.train("baseline", index, project / "data", project / "bad", TINY, seeds=[-1])
    assert not (project / "bad").exists()


@pytest.mark.parametrize("strategy", [s for s in REGISTRY if REGISTRY[s].inputs])
def test_gan_strategies_are_refused_in_one_line(tmp_path: Path, strategy: str) -> None:
    spec = REGISTRY[strategy]
    message = api.ERR_NEEDS_STAGES.format(name=strategy, stages=" and ".join(spec.requires),
                                          real=", ".join(api.REAL_ONLY))
    with pytest.raises(FacebalanceError, match=re.escape(message)) as err:
        api.evaluate_strategy(strategy, tmp_path / "data", tmp_path / "models")
    assert "\n" not in str(err.value) and f"dvc repro evaluate@{strategy}" in str(err.value)
    assert not (tmp_path / "models").exists()


# Two groups of six; the threshold 0.5 gives these predictions:
#   group 0: y 1 1 1 0 0 0, pred 1 1 0 1 0 0 -> TPR 2/3, FPR 1/3, accuracy 4/6
#   group 1: y 1 1 0 0 0 0, pred 1 0 0 0 0 0 -> TPR 1/2, FPR 0,   accuracy 5/6
Y = np.array([1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0])
G = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
S = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.95, 0.4, 0.35, 0.3, 0.2, 0.05])
#: Bootstrap resamples of 12 rows can leave a group without a class: its K-group KL is NaN.
NAN_KL = pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning",
                                    "ignore:Mean of empty slice:RuntimeWarning")


@NAN_KL
def test_fairness_report_on_arrays_matches_a_hand_computation() -> None:
    r = api.fairness_report(Y, S, G, threshold=0.5, group_name="male")
    tpr, fpr, acc = (2 / 3, 1 / 2), (1 / 3, 0.0), (4 / 6, 5 / 6)
    assert r["deo"]["value"] == pytest.approx(abs((1 - tpr[0]) - (1 - tpr[1])))  # FNR gap
    assert r["eo_diff"]["value"] == pytest.approx(max(tpr[0] - tpr[1], fpr[0] - fpr[1]))
    assert r["dp_diff"]["value"] == pytest.approx(3 / 6 - 1 / 6)  # selection rates
    assert r["accuracy"]["value"] == pytest.approx(9 / 12)
    assert r["group_acc_std"]["value"] == pytest.approx(np.std(acc))
    assert r["ap"]["value"] == pytest.approx(average_precision_score(Y, S))
    assert r["by_group"]["male=0"]["tpr"] == pytest.approx(tpr[0])
    assert r["by_group"]["male=1"]["fpr"] == 0.0
    assert r["threshold"] == {"seed0": 0.5} and r["n_test"] == 12


@NAN_KL
def test_fairness_report_calibrates_and_averages_seeds() -> None:
    # 5 positives: the threshold is the 5th largest score (as many predicted positives).
    assert api.fairness_report(Y, S, G)["threshold"]["seed0"] == pytest.approx(0.4)
    val_y, val_s = np.array([1, 0, 0, 1]), np.array([0.6, 0.5, 0.1, 0.9])
    r = api.fairness_report(Y, [S, S[::-1]], G, val_y=val_y, val_scores=[val_s, val_s])
    assert r["threshold"] == {"seed0": 0.6, "seed1": 0.6} and r["n_seeds"] == 2
    per_seed = [api.fairness_report(Y, s, G, threshold=0.6)["deo"]["value"]
                for s in (S, S[::-1])]
    assert r["deo"]["value"] == pytest.approx(np.mean(per_seed))
    with pytest.raises(FacebalanceError, match=re.escape(api.ERR_VAL_PAIR)):
        api.fairness_report(Y, S, G, val_y=val_y)
