"""Training several seeds over one decoded dataset equals training each seed alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from facebalance.balance.strategies import training_options
from facebalance.config import ClassifierParams
from facebalance.data.shards import shard_refs
from facebalance.models.fit import fit_classifier, fit_classifiers

PARAMS = ClassifierParams(width=8, epochs=2, batch_size=64, lr=0.005)


def _rows(tiny_prepared: Path, split: str) -> pd.DataFrame:
    rows = shard_refs(tiny_prepared / split, ["id", "blond", "male"])
    return rows.rename(columns={"blond": "label", "male": "group"}).assign(weight=1.0)


def test_seeds_sharing_the_images_train_as_each_seed_alone(tiny_prepared: Path) -> None:
    rows, val = _rows(tiny_prepared, "train"), _rows(tiny_prepared, "val")
    # val_attention: the validation images are shared too, and read after every epoch.
    kwargs = {"image_size": 32, "device": torch.device("cpu"), "attention_val": val,
              "options": training_options("val_attention")}
    together = fit_classifiers(rows, PARAMS, seeds=[3, 5], **kwargs)
    assert len(together) == 2
    for seed, (net, config, hist) in zip([3, 5], together, strict=True):
        alone, alone_config, alone_hist = fit_classifier(rows, PARAMS, seed=seed, **kwargs)
        assert config == alone_config
        assert [h["loss"] for h in hist] == [h["loss"] for h in alone_hist]
        assert [h.get("cell3_weight") for h in hist] == [
            h.get("cell3_weight") for h in alone_hist]
        for key, value in alone.state_dict().items():
            assert torch.equal(net.state_dict()[key], value), key
    # Different seeds really are different runs.
    assert not torch.equal(together[0][0].head.weight, together[1][0].head.weight)
