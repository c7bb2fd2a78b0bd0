import numpy as np
import pandas as pd
import pytest

from facebalance.balance.strategies import (
    INDEX_COLUMNS,
    auto_n_pairs,
    budget_pairs,
    build_training_index,
    gan_stream_balance,
    oversample_rows,
    reweight_weights,
    select_pairs,
    synthetic_summary,
)
from facebalance.config import AugmentParams
from facebalance.errors import FacebalanceError


def _skewed(n: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = (rng.random(n) < 0.4).astype(int)
    y = (rng.random(n) < np.where(g == 1, 0.03, 0.25)).astype(int)
    return y, g


def _cell_totals(y, g, w):
    return {(t, a): w[(y == t) & (g == a)].sum() for t in (0, 1) for a in (0, 1)}


def test_equal_cells_gives_every_cell_the_same_total_weight() -> None:
    y, g = _skewed()
    w = reweight_weights(y, g, "equal_cells")
    totals = list(_cell_totals(y, g, w).values())
    assert np.allclose(totals, len(y) / 4, rtol=1e-5)
    assert w.mean() == pytest.approx(1.0)


def test_independence_makes_label_and_group_independent() -> None:
    y, g = _skewed()
    w = reweight_weights(y, g, "independence")
    tot = w.sum()
    for (t, a), cell in _cell_totals(y, g, w).items():
        p_t = w[y == t].sum() / tot
        p_a = w[g == a].sum() / tot
        assert cell / tot == pytest.approx(p_t * p_a, rel=1e-5)
    # Marginals are those of the data.
    assert w[y == 1].sum() / tot == pytest.approx(y.mean(), rel=1e-5)


def test_within_class_matches_gan_debiasing_loop() -> None:
    y, g = _skewed(200, 1)
    cp, cn = y.sum(), (1 - y).sum()
    ref = []
    for t, a in zip(y, g, strict=True):  # gan-debiasing compute_class_weight
        n_cell = ((y == t) & (g == a)).sum()
        ref.append((t * cp + (1 - t) * cn) / (2 * n_cell))
    ref = np.array(ref)
    np.testing.assert_allclose(reweight_weights(y, g, "within_class"), ref / ref.mean(),
                               rtol=1e-5)


@pytest.mark.parametrize("to", ["max", "mean"])
def test_oversample_brings_small_cells_up(to: str) -> None:
    y, g = _skewed()
    rows = oversample_rows(y, g, seed=0, to=to)
    sizes = pd.Series(list(zip(y[rows], g[rows], strict=True))).value_counts()
    orig = pd.Series(list(zip(y, g, strict=True))).value_counts()
    target = orig.max() if to == "max" else int(np.ceil(orig.mean()))
    for cell, n in orig.items():
        assert sizes[cell] == max(n, target)
    # Every original row is kept; duplicates are spread evenly (at most 1 apart).
    counts = np.bincount(rows, minlength=len(y))
    assert counts.min() >= 1
    for cell in orig.index:
        members = counts[(y == cell[0]) & (g == cell[1])]
        assert members.max() - members.min() <= 1
    np.testing.assert_array_equal(rows, oversample_rows(y, g, seed=0, to=to))


def test_build_training_index_columns_and_errors() -> None:
    y, g = _skewed(50)
    real = pd.DataFrame({"path": "p", "_file": 0, "_row": np.arange(50), "id": np.arange(50),
                         "label": y, "group": g})
    for strategy in ("baseline", "reweight", "oversample"):
        idx = build_training_index(strategy, real, seed=0)
        assert list(idx.columns) == list(INDEX_COLUMNS)
        assert (idx["source"] == "real").all() and idx["weight"].dtype == np.float32
    assert (build_training_index("baseline", real)["weight"] == 1).all()
    with pytest.raises(FacebalanceError, match="unknown strategy 'magic'; valid: baseline"):
        build_training_index("magic", real)
    with pytest.raises(FacebalanceError, match=r"lack columns \['group'\]"):
        build_training_index("baseline", real.drop(columns="group"))


def test_options_are_declared_and_default_to_the_params() -> None:
    y, g = _skewed(50)
    real = pd.DataFrame({"path": "p", "_file": 0, "_row": np.arange(50), "id": np.arange(50),
                         "label": y, "group": g})
    # A misspelled option, or one of another strategy, is an error (it was ignored).
    with pytest.raises(FacebalanceError, match="strategy 'reweight' takes no option "
                       "'reweight_mod'; its options: reweight_mode"):
        build_training_index("reweight", real, reweight_mod="independence")
    with pytest.raises(FacebalanceError, match="strategy 'baseline' takes no option "
                       "'oversample_to'; its options: none"):
        build_training_index("baseline", real, oversample_to="mean")
    # Without a value, params.yaml's default; an AugmentParams section, or an override, wins.
    default = build_training_index("reweight", real)
    np.testing.assert_array_equal(
        default["weight"], build_training_index("reweight", real,
                                                reweight_mode=AugmentParams().reweight_mode)
        ["weight"])
    section = AugmentParams(reweight_mode="independence")
    np.testing.assert_array_equal(
        build_training_index("reweight", real, augment=section)["weight"],
        build_training_index("reweight", real, reweight_mode="independence")["weight"])
    assert not np.array_equal(default["weight"],
                              build_training_index("reweight", real, augment=section)["weight"])


def _index_rows(label: np.ndarray, group: np.ndarray, **extra: np.ndarray) -> pd.DataFrame:
    n = len(label)
    return pd.DataFrame({"path": "p", "_file": 0, "_row": np.arange(n),
                         "id": [f"i{k}" for k in range(n)], "label": label, "group": group,
                         **extra})


def test_four_groups_cells_are_balanced_by_count_and_by_weight() -> None:
    rng = np.random.default_rng(3)
    g = rng.choice(4, 2000, p=[0.55, 0.25, 0.12, 0.08])
    y = (rng.random(2000) < np.array([0.3, 0.15, 0.06, 0.03])[g]).astype(int)
    real = _index_rows(y, g)
    over = build_training_index("oversample", real, seed=0)
    sizes = over.groupby(["label", "group"]).size()
    assert len(sizes) == 8 and sizes.nunique() == 1  # every (label x group) cell at the max
    rew = build_training_index("reweight", real)
    totals = rew.groupby(["label", "group"])["weight"].sum()
    assert np.allclose(totals, totals.iloc[0], rtol=1e-5)


def test_regression_balances_the_age_groups_not_the_ages() -> None:
    from facebalance.task import Head, TaskSpec

    task = TaskSpec(kind="regression", heads=(Head("age", "regression", 0),),
                    age_bins=(30.0, 45.0, 60.0))
    rng = np.random.default_rng(4)
    age = np.concatenate([rng.uniform(18, 30, 700), rng.uniform(30, 45, 200),
                          rng.uniform(45, 60, 70), rng.uniform(60, 80, 30)])
    real = _index_rows(age.astype(np.float32), np.digitize(age, task.age_bins))
    over = build_training_index("oversample", real, task=task, seed=0, oversample_to="mean")
    sizes = over.groupby("group").size()
    assert sizes.tolist() == [700, 250, 250, 250]  # mean group size 250; 700 kept whole
    assert set(over["label"]) <= set(real["label"])  # rows repeated, ages untouched
    for mode in ("equal_cells", "within_class"):
        rew = build_training_index("reweight", real, task=task, reweight_mode=mode)
        totals = rew.groupby("group")["weight"].sum()
        assert np.allclose(totals, 250.0, rtol=1e-5)
    with pytest.raises(FacebalanceError, match=r"'independence' has nothing to do for "
                       r"regression"):
        build_training_index("reweight", real, task=task, reweight_mode="independence")


def test_multitask_index_keeps_the_extra_labels() -> None:
    from facebalance.task import Head, TaskSpec

    task = TaskSpec(kind="multitask", heads=(Head("skin", "multiclass", 4),
                                             Head("male", "binary")), protected="skin")
    g = np.array([0, 0, 0, 1, 2, 3])
    real = _index_rows(g, g, label1=np.array([1, 0, 1, 0, 1, 0]))
    over = build_training_index("oversample", real, task=task, seed=0)
    assert list(over.columns) == [*INDEX_COLUMNS, "label1"]
    assert over.groupby("label").size().tolist() == [3, 3, 3, 3]
    with pytest.raises(FacebalanceError, match=r"training rows lack columns \['label1'\]"):
        build_training_index("baseline", real.drop(columns="label1"), task=task)


def _pairs(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id_z": [f"p{i}-z" for i in range(n)],
                         "target_z": rng.random(n).astype(np.float32),
                         "flip_ok": rng.random(n) < 0.8})


def test_synthetic_budget_is_a_share_of_the_real_weight() -> None:
    # 0.5 of 9,400 real images at weight 1: 4,700 synthetic images = 2,350 pairs.
    assert budget_pairs(9400, 0.5, 1.0) == 2350
    assert budget_pairs(9400, 0.5, 2.0) == 1175  # heavier images: fewer of them
    assert budget_pairs(9400, 0.0, 4.0) == 0     # no budget: every pair (the old rule)
    assert auto_n_pairs(9400, 0.5, 1.0) == 3525  # x1.5 room for the filters
    with pytest.raises(FacebalanceError, match=r"needs augment\.synthetic_share > 0"):
        auto_n_pairs(9400, 0.0, 1.0)


def test_select_pairs_filters_then_takes_the_budget_in_order() -> None:
    pairs = _pairs(1000)
    chosen, rep = select_pairs(pairs, n_real=600, share=0.5, weight=1.0, label_margin=0.1,
                               confirm_flip=True)
    sure = (np.abs(pairs["target_z"] - 0.5) >= 0.1) & pairs["flip_ok"]
    assert chosen["id_z"].tolist() == pairs.loc[sure, "id_z"].tolist()[:150]
    assert rep["pairs_available"] == 1000 and rep["pairs_used"] == 150
    assert rep["label_margin_kept"] == pytest.approx(
        np.mean(np.abs(pairs["target_z"] - 0.5) >= 0.1))
    # Fewer pairs than the budget: all of them (the realized share is then lower).
    few, rep = select_pairs(pairs.iloc[:100], n_real=600, share=0.5, weight=1.0)
    assert len(few) == 100 and rep["pairs_used"] == 100
    every, _ = select_pairs(pairs, n_real=600, share=0.0, weight=4.0)
    assert len(every) == 1000
    # No pair survives the filters: an error, not a silent baseline.
    with pytest.raises(FacebalanceError, match=r"none of the 1000 z/z' pairs passes the "
                                               r"filters \(label_margin 0\.5, confirm_flip "
                                               r"False\); lower augment\.label_margin"):
        select_pairs(pairs, n_real=600, share=0.5, weight=1.0, label_margin=0.5)


def test_gan_strategies_weigh_the_budget_share_of_the_real_set() -> None:
    real = pd.DataFrame({"path": "p", "_file": 0, "_row": np.arange(100), "id": np.arange(100),
                         "label": np.repeat([0, 1], 50), "group": np.tile([0, 1], 50)})
    pairs = pd.DataFrame({"path": "gen", "_file": 0, "_row": np.arange(40), "id":
                          [f"g{i}" for i in range(40)], "label": 1, "group": 0,
                          "member": ["z"] * 20 + ["zp"] * 20})
    for strategy in ("gan_complement", "gan_gz_only"):
        index = build_training_index(strategy, real, pairs=pairs, synthetic_weight=1.25)
        summary = synthetic_summary(index)
        assert summary["synthetic_share"] == pytest.approx(40 * 1.25 / 100)  # equal weight
        assert summary["synthetic_images"] == (40 if strategy == "gan_complement" else 20)


def test_gan_stream_balance_auto_oversamples_only_a_binary_pair() -> None:
    two, four = np.array([0, 1, 1, 0]), np.array([0, 1, 2, 3])
    assert gan_stream_balance("auto", "binary", two) == "oversample"
    assert gan_stream_balance("auto", "binary", four) == "none"  # K groups: as measured
    assert gan_stream_balance("auto", "regression", None) == "none"
    assert gan_stream_balance("auto", "multitask", two) == "none"
    assert gan_stream_balance("none", "binary", two) == "none"
    assert gan_stream_balance("oversample", "binary", four) == "oversample"


def test_gan_stream_reads_labels_only_when_it_balances() -> None:
    from facebalance.balance.strategies import gan_stream

    y, g = _skewed(60)
    table = pd.DataFrame({"id": np.arange(60), "blond": y, "male": g})
    asked: list[list[str]] = []

    def read(cols: list[str]) -> pd.DataFrame:
        asked.append(cols)
        return table[cols]

    rows, balance = gan_stream(read, "auto", "binary", "blond", "male", seed=0)
    assert balance == "oversample" and asked == [["id", "blond", "male"]]
    np.testing.assert_array_equal(rows["id"], oversample_rows(y, g, seed=0))
    rows, balance = gan_stream(read, "auto", "regression", "age", "", seed=0)
    assert balance == "none" and asked[-1] == ["id"] and len(rows) == 60


def test_strategy_index_is_the_index_with_the_pipelines_seed(tiny_prepared) -> None:
    from facebalance.api import resolve_params
    from facebalance.balance.inputs import real_rows, strategy_index
    from facebalance.runtime import derive_seed

    p = resolve_params(None)
    real, task = real_rows(p, tiny_prepared / "train")
    assert list(real.columns) == ["path", "_file", "_row", "id", "label", "group"]
    got = strategy_index("oversample", real, task, p)
    want = build_training_index("oversample", real, task=task,
                                seed=derive_seed(p.base.seed, 3), augment=p.augment)
    pd.testing.assert_frame_equal(got, want)
