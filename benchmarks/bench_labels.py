"""How often the labels of generated images are right: the attribute classifier trained as
it is (``train_attr.balance: none``) vs with reweighting (``reweight``), judged by an
oracle trained on a large balanced synthfaces set (same renderer settings, other seed).

    python benchmarks/bench_labels.py --generator models/gan/generator.pt \\
        [--params params.yaml] [-S dataset.n_train=9000 ...] [--n 4000]

The labellers train on the training split that ``params`` (plus ``-S`` changes, as in
``dvc exp run``) describes; the generator should be the one trained on that split. Prints
each labeller's agreement with the oracle on G(z), overall and per oracle cell (target x
protected), and the ratio of the reweighted labeller's errors to the plain one's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from facebalance.balance.strategies import reweight_weights
from facebalance.config import parse_params
from facebalance.data.prepare import prepare_dataset
from facebalance.data.shards import shard_refs
from facebalance.models.fit import fit_classifier, score_shards
from facebalance.models.gan import generate_uint8, load_generator
from facebalance.presets import apply_changes
from facebalance.runtime import derive_seed


def train_on(data: Path, params, attr: str, other: str, weights: str, seed: int):
    """A one-logit classifier of ``attr`` on the train split of ``data``."""
    refs = shard_refs(data / "train", ["id", attr, other]).rename(columns={attr: "label"})
    refs["weight"] = (reweight_weights(refs["label"].to_numpy(), refs[other].to_numpy())
                      if weights == "reweight" else np.float32(1.0))
    net, _, _ = fit_classifier(refs, params.train_attr, image_size=params.base.image_size,
                               seed=seed, device=torch.device("cpu"))
    return net.eval()


def test_accuracy(net, data: Path, attr: str) -> float:
    refs, (scores,) = score_shards([net], data / "test", ["id", attr], torch.device("cpu"))
    return float(np.mean((scores >= 0.5) == refs[attr].to_numpy()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generator", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("-S", dest="set", action="append", default=[],
                    help="dotted param change, e.g. dataset.n_train=9000 (YAML value)")
    ap.add_argument("--n", type=int, default=4000, help="generated images judged")
    ap.add_argument("--oracle-n", type=int, default=16000, help="balanced oracle train set")
    args = ap.parse_args()
    changes = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    params = parse_params(apply_changes(yaml.safe_load(args.params.read_text()), changes))
    d = params.dataset
    t, g = d.target, d.protected
    balanced = dataclasses.replace(d, n_train=args.oracle_n, p_protected=0.5,
                                   p_target_given_group=[0.5, 0.5])
    with tempfile.TemporaryDirectory() as tmp:
        skewed, even = Path(tmp) / "skewed", Path(tmp) / "balanced"
        size = params.base.image_size
        prepare_dataset(d, skewed, seed=params.base.seed, image_size=size, progress=False)
        prepare_dataset(balanced, even, seed=params.base.seed + 1000, image_size=size,
                        progress=False)
        seed = derive_seed(params.base.seed, params.train_attr.seeds[0], 1)
        oracle = {a: train_on(even, params, a, b, "none", seed) for a, b in ((t, g), (g, t))}
        labellers = {w: train_on(skewed, params, t, g, w, seed) for w in ("none", "reweight")}
        acc_t, acc_g = test_accuracy(oracle[t], even, t), test_accuracy(oracle[g], even, g)
        print(f"oracle accuracy on the balanced test split: {t} {acc_t:.3f}, {g} {acc_g:.3f}")
        for w, net in labellers.items():
            print(f"labeller ({w}) accuracy on the balanced test split: "
                  f"{test_accuracy(net, skewed, t):.3f}")
        gen = load_generator(args.generator, "cpu", latent_dim=params.gan.latent_dim)
        z = torch.randn(args.n, gen.cfg.latent_dim, generator=torch.Generator().manual_seed(0))
        x = torch.from_numpy(np.concatenate([generate_uint8(gen, zb) for zb in z.split(512)]))
        with torch.no_grad():
            xf = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)

            def predict(net) -> np.ndarray:
                return np.concatenate([torch.sigmoid(net(b)).squeeze(1).numpy()
                                       for b in xf.split(512)]) >= 0.5

            truth_t, truth_g = predict(oracle[t]), predict(oracle[g])
            labels = {w: predict(net) for w, net in labellers.items()}
    rows = {}
    for w, lab in labels.items():
        right = lab == truth_t
        rows[w] = {"agreement": float(right.mean()),
                   **{f"{t}={a},{g}={b}": float(right[(truth_t == a) & (truth_g == b)].mean())
                      for a in (0, 1) for b in (0, 1)},
                   "positive_rate": float(lab.mean())}
    table = pd.DataFrame(rows).T
    cells = pd.Series({f"{t}={a},{g}={b}": int(np.sum((truth_t == a) & (truth_g == b)))
                       for a in (0, 1) for b in (0, 1)}, name="oracle count")
    print(f"\nG(z) labels right (oracle = truth), {args.n} images; oracle cells: "
          f"{json.dumps(cells.to_dict())}")
    print(table.round(3).to_markdown())
    err = 1 - table["agreement"]
    print(f"\nerrors, reweight / none: {err['reweight'] / err['none']:.2f}x")


if __name__ == "__main__":
    main()
