"""Tiny fixtures that make every path run in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facebalance.config import DatasetParams
from facebalance.data.prepare import write_synthfaces

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    torch.set_num_threads(2)


TINY_DATASET = DatasetParams(n_train=480, n_val=80, n_test=160, rows_per_file=200,
                             row_group_size=50)


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/val/test synthfaces shards at 32 px: 480/80/160 images."""
    out = tmp_path_factory.mktemp("prepared")
    write_synthfaces(TINY_DATASET, out, seed=0, image_size=32, progress=False)
    return out
