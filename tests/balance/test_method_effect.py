"""Do the strategies move the metric they claim to move? On skewed synthfaces, several seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facebalance.balance.registry import strategy as strategy_spec
from facebalance.balance.strategies import build_training_index, training_options
from facebalance.config import DatasetParams, EvaluateParams, Params
from facebalance.data.prepare import write_synthfaces
from facebalance.data.shards import shard_refs
from facebalance.metrics.paired import paired_differences, split_rows
from facebalance.models.classifier import save_checkpoint
from facebalance.models.evaluate import evaluate_models
from facebalance.models.fit import fit_classifiers
from facebalance.task import Head, TaskSpec

pytestmark = pytest.mark.slow

SEEDS = [0, 1, 2]
TASK = TaskSpec(heads=(Head("blond", "binary"),), protected="male")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """The default pipeline's data and training: skew P(blond|female)=0.24,
    P(blond|male)=0.02, 20k train images, train_target's defaults, 3 seeds (but another
    data seed). Returns (report, test scores) per strategy.

    With 8k train images and 4 epochs, val_attention lowered DEO by 0.031 [-0.066,
    +0.0001] (p_better 0.97): the default setting is the one this file tests.
    """
    root = tmp_path_factory.mktemp("effect")
    data = root / "prepared"
    write_synthfaces(DatasetParams(), data, seed=11, image_size=32, progress=False)
    real = shard_refs(data / "train", ["id", "blond", "male"]).rename(
        columns={"blond": "label", "male": "group"})
    val = shard_refs(data / "val", ["blond", "male"]).rename(
        columns={"blond": "label", "male": "group"})
    params = Params().train_target
    out = {}
    for strategy in ("baseline", "reweight", "val_attention"):
        index = build_training_index(strategy, real, seed=0)
        attention = val if strategy_spec(strategy).needs_val else None
        models = root / strategy
        # As train_target does: the images decoded once for the three seeds' runs.
        fitted = fit_classifiers(index, params, image_size=32, seeds=[100 + s for s in SEEDS],
                                 device=torch.device("cpu"), options=training_options(strategy),
                                 attention_val=attention)
        for s, (net, cfg, _) in zip(SEEDS, fitted, strict=True):
            save_checkpoint(models / f"seed{s}.pt", net, cfg, {})
        out[strategy] = evaluate_models(data, models, SEEDS, default_task=TASK,
                                        columns=["blond", "male"], device=torch.device("cpu"),
                                        params=EvaluateParams(bootstrap=200))
    return out


@pytest.fixture(scope="module")
def reports(evaluated: dict[str, tuple]) -> dict[str, dict]:
    return {name: rep for name, (rep, _) in evaluated.items()}


def test_baseline_is_measurably_unfair(reports: dict[str, dict]) -> None:
    base = reports["baseline"]
    assert base["deo"]["ci95"]["lo"] > 0.03
    assert base["ap"]["value"] > 0.85  # chance is 0.5 on the balanced test split
    # Blond men are the ones missed: their TPR is below blond women's.
    assert base["by_group"]["male=1"]["tpr"] < base["by_group"]["male=0"]["tpr"]


def test_reweighting_lowers_deo_beyond_seed_noise(reports: dict[str, dict]) -> None:
    base, rew = reports["baseline"]["deo"], reports["reweight"]["deo"]
    gap = base["value"] - rew["value"]
    noise = np.sqrt(base["std"] ** 2 + rew["std"] ** 2)
    assert gap > 2 * noise
    assert rew["ci95"]["hi"] < base["ci95"]["lo"] or gap > 0.05
    assert reports["reweight"]["ap"]["value"] > reports["baseline"]["ap"]["value"] - 0.02


def test_val_attention_lowers_deo_on_shared_resamples(evaluated: dict[str, tuple]) -> None:
    diffs = paired_differences({n: split_rows(t, "test") for n, (_, t) in evaluated.items()},
                               {n: r["threshold"] for n, (r, _) in evaluated.items()},
                               task=TASK, references=["baseline"],
                               metrics=["deo", "ap"], n_bootstrap=300)
    row = diffs.set_index(["strategy", "metric"])
    assert row.loc[("val_attention", "deo"), "hi"] < 0  # beyond test-set and seed noise
    assert row.loc[("val_attention", "ap"), "diff"] > -0.02
