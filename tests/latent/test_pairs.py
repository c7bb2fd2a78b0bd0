"""Pairs on a planted generator: latent sides are painted, classifiers read the paint."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from facebalance.balance.strategies import build_training_index, pair_rows
from facebalance.data.shards import shard_refs
from facebalance.errors import FacebalanceError
from facebalance.latent.boundaries import Boundary
from facebalance.latent.pairs import PairSpec, make_pairs, rarest_cell
from facebalance.latent.sampling import latents_table, read_latents, sample_latents
from facebalance.models.gan import GanConfig

D = 8
W_T = np.eye(D)[0]
W_G = (np.eye(D)[0] * 0.5 + np.eye(D)[1] * np.sqrt(0.75))  # correlated with the target


class PaintGenerator(nn.Module):
    """Red channel = target side, green channel = protected side of a planted boundary."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = GanConfig(latent_dim=D)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(3 * (z @ torch.tensor(W_T, dtype=z.dtype)))
        g = torch.tanh(3 * (z @ torch.tensor(W_G, dtype=z.dtype) - 0.3))
        img = torch.zeros(len(z), 3, 32, 32)
        img[:, 0] = t[:, None, None]
        img[:, 1] = g[:, None, None]
        return img


class ReadChannel(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.c].mean(dim=(1, 2))[:, None] * 20


@pytest.fixture()
def planted():
    return (PaintGenerator().eval(), {"target": ReadChannel(0), "protected": ReadChannel(1)},
            Boundary(W_T, 0.0), Boundary(W_G, -0.3))


def _pool(n: int):
    z = sample_latents(n, D, seed=0)
    ids = [f"gen-{i}" for i in range(n)]
    scores = pd.DataFrame({"id": ids, "target": (z @ W_T > 0).astype(np.float32),
                           "protected": (z @ W_G - 0.3 > 0).astype(np.float32)})
    return latents_table(ids, z, 0).to_pandas().drop(columns="z"), z, scores


def test_pairs_flip_planted_protected_and_keep_target(planted, tmp_path: Path) -> None:
    gen, clf, target, protected = planted
    # min_distance 0 with selection all: the paper's sampled pool.
    spec = PairSpec(n_pairs=200, batch_size=64, min_distance=0.0)
    report = make_pairs(gen, clf, target, protected, spec, tmp_path,
                        device=torch.device("cpu"), pool=_pool(300), progress=False)
    assert report["n_pairs"] == 200
    assert report["latent_flip_rate"] == 1.0 and report["latent_keep_rate"] == 1.0
    # Images are scored, not latents: near-boundary latents give ambiguous paint.
    assert report["flip_and_keep"] > 0.9
    pairs, z = read_latents(tmp_path / "pairs.parquet")
    _, zp = read_latents(tmp_path / "pairs.parquet", name="z_prime")
    np.testing.assert_allclose(protected.distance(zp), -protected.distance(z), atol=1e-4)
    assert pairs["label"].tolist() == (z @ W_T > 0).astype(int).tolist()


def test_targeted_pairs_land_in_the_rare_cell(planted, tmp_path: Path) -> None:
    gen, clf, target, protected = planted
    report = make_pairs(gen, clf, target, protected,
                        PairSpec(selection="targeted", n_pairs=100, batch_size=64), tmp_path,
                        device=torch.device("cpu"), rare_cell=(1, 1), progress=False)
    assert report["cells_after"]["target=1,protected=1"] > 90
    assert (tmp_path / "images_z").is_dir()


def test_gan_strategies_build_from_pairs(planted, tmp_path: Path) -> None:
    gen, clf, target, protected = planted
    make_pairs(gen, clf, target, protected, PairSpec(selection="targeted", n_pairs=40,
                                                     batch_size=64),
               tmp_path, device=torch.device("cpu"), rare_cell=(1, 1), progress=False)
    refs = pd.concat([shard_refs(tmp_path / d, ["id"]) for d in ("images", "images_z")])
    table = pd.read_parquet(tmp_path / "pairs.parquet")
    rows = pair_rows(table, refs)
    assert len(rows) == 80 and set(rows["member"]) == {"z", "zp"}
    real = pd.DataFrame({"path": "r", "_file": 0, "_row": np.arange(10), "id": np.arange(10),
                         "label": 0, "group": 0})
    comp = build_training_index("gan_complement", real, pairs=rows, synthetic_weight=3.0)
    ctrl = build_training_index("gan_gz_only", real, pairs=rows, synthetic_weight=3.0)
    assert len(comp) == 90 and len(ctrl) == 50
    synth = comp["source"] == "generated"
    assert comp.loc[synth, "weight"].sum() == ctrl.loc[ctrl["source"] == "generated",
                                                       "weight"].sum() == 240
    confirmed = pair_rows(table, refs, confirm_flip=True)
    assert len(confirmed) == 2 * table["flip_ok"].sum()


def test_rarest_cell() -> None:
    labels = np.array([1, 1, 0, 0, 0, 1])
    groups = np.array([0, 0, 0, 1, 1, 1])
    assert rarest_cell(labels, groups) in {(0, 0), (1, 1)}
    assert rarest_cell(np.array([1, 0, 0]), np.array([0, 0, 1])) == (1, 1)


def test_min_distance_draws_far_sources(planted, tmp_path: Path) -> None:
    gen, clf, target, protected = planted
    report = make_pairs(gen, clf, target, protected,
                        PairSpec(n_pairs=120, min_distance=0.8, batch_size=64), tmp_path,
                        device=torch.device("cpu"), progress=False)
    _, z = read_latents(tmp_path / "pairs.parquet")
    assert np.abs(protected.distance(z)).min() >= 0.8
    assert report["flip_and_keep"] > 0.95  # far from the boundary the paint is unambiguous
    assert report["min_distance"] == 0.8 and (tmp_path / "images_z").is_dir()


def test_n_pairs_auto_must_be_resolved_first(planted, tmp_path: Path) -> None:
    gen, clf, target, protected = planted
    with pytest.raises(FacebalanceError, match=r"PairSpec.n_pairs = 0; 0 is the params' auto"):
        make_pairs(gen, clf, target, protected, PairSpec(), tmp_path,
                   device=torch.device("cpu"), progress=False)


def test_complement_spec_resolves_the_budget_and_warns_below_it(
        caplog: pytest.LogCaptureFixture) -> None:
    from facebalance.api import resolve_params
    from facebalance.balance.strategies import auto_n_pairs, budget_pairs
    from facebalance.latent.pairs import complement_spec
    from facebalance.runtime import derive_seed

    p = resolve_params(None)
    spec = complement_spec(p, 20000)
    a = p.augment
    assert spec.n_pairs == auto_n_pairs(20000, a.synthetic_share, a.synthetic_weight) > 0
    assert spec.seed == derive_seed(p.base.seed, 7) and spec.mode == p.complement.mode
    assert not caplog.records
    need = budget_pairs(20000, a.synthetic_share, a.synthetic_weight)
    small = resolve_params({"complement": {"n_pairs": need - 1}})
    assert complement_spec(small, 20000).n_pairs == need - 1  # kept, with a warning
    assert f"complement.n_pairs = {need - 1} is below the {need} pairs" in caplog.text
