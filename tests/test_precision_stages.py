"""base.precision reaches every training stage and is recorded where it ran (bf16 on CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .projects import BINARY, build_inprocess, merge


def test_bf16_is_recorded_by_the_classifier_stages(tmp_path: Path) -> None:
    changes = merge(BINARY, {"base": {"precision": "bf16"}, "strategies": ["baseline"],
                             "train_attr": {"epochs": 1}})
    ran = build_inprocess(tmp_path, changes, "train_target@baseline", "train_attr@target")
    assert {"train_target@baseline", "train_attr@target"} <= set(ran)
    record = {"precision": "bf16", "precision_setting": "bf16"}
    for seed in (0, 1):
        meta = torch.load(tmp_path / f"models/target/baseline/seed{seed}.pt",
                          weights_only=True)["meta"]
        assert {k: meta[k] for k in record} == record
    attr = json.loads((tmp_path / "metrics/attr/target.json").read_text())
    assert {k: attr[k] for k in record} == record
