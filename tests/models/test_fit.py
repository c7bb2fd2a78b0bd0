"""Training several seeds over one decoded dataset equals training each seed alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from facebalance.balance.strategies import training_options
from facebalance.config import ClassifierParams
from facebalance.data.datasets import ShardDataset
from facebalance.data.shards import shard_refs
from facebalance.models.classifier import ClassifierConfig, build_classifier
from facebalance.models.fit import epoch_samples, fit_classifier, fit_classifiers
from facebalance.models.train import TrainConfig, ValAttention, train_classifier
from facebalance.task import BINARY_TASK, cell_ids

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


def test_one_seed_equals_the_plain_recipe(tiny_prepared: Path) -> None:
    """Reference: the order of the code before fit_classifiers (seed, build the model, then
    decode the images and train), written out with the training loop's own pieces."""
    rows, val = _rows(tiny_prepared, "train"), _rows(tiny_prepared, "val")
    torch.manual_seed(7)
    ref = build_classifier(ClassifierConfig(width=PARAMS.width))
    cells = cell_ids(BINARY_TASK, rows["label"], rows["group"])
    data = ShardDataset(rows, {"label": rows["label"].to_numpy("float32"),
                               "weight": rows["weight"].to_numpy("float32"), "cell": cells})
    attention = ValAttention(ShardDataset(val, {
        "label": val["label"].to_numpy("float32"),
        "cell": cell_ids(BINARY_TASK, val["label"], val["group"])}), 4)
    cfg = TrainConfig(epochs=PARAMS.epochs, batch_size=PARAMS.batch_size, lr=PARAMS.lr,
                      weight_decay=PARAMS.weight_decay, augment=PARAMS.augment, seed=7,
                      samples_per_epoch=epoch_samples(rows, PARAMS.epoch_size),
                      **training_options("val_attention"))
    train_classifier(ref, data, cfg, torch.device("cpu"), attention=attention)
    (net, _, _), = fit_classifiers(rows, PARAMS, image_size=32, seeds=[7],
                                   device=torch.device("cpu"), attention_val=val,
                                   options=training_options("val_attention"))
    for key, value in ref.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
