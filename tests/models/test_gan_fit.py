"""The pipeline's generator: trained on the training stream or adopted (models/gan_fit.py)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from facebalance.api import resolve_params
from facebalance.errors import FacebalanceError
from facebalance.models.gan import load_generator
from facebalance.models.gan_fit import (
    HISTORY_COLUMNS,
    fit_generator,
    sample_grid,
    write_generator,
)

CPU = torch.device("cpu")
TINY = {"base": {"image_size": 32},
        "gan": {"steps": 4, "width": 8, "latent_dim": 16, "batch_size": 32}}


def test_trained_then_adopted_generator(tiny_prepared: Path, tmp_path: Path) -> None:
    p = resolve_params(TINY)
    fitted = fit_generator(p, tiny_prepared / "train", CPU)
    assert fitted.summary["source"] == "trained" and fitted.summary["steps"] == 4
    # gan.balance auto on a binary task with two groups: the cell-balanced stream
    assert fitted.summary["balance"] == "oversample"
    assert set(HISTORY_COLUMNS) <= set(fitted.curve[-1])
    grid = sample_grid(fitted.gen, CPU)
    assert len(grid) == 8 and grid[0].shape == (8, 32, 32, 3) and grid[0].dtype == np.uint8
    write_generator(tmp_path / "g.pt", fitted, p)
    assert load_generator(tmp_path / "g.pt").cfg.latent_dim == 16

    adopt = resolve_params({**TINY, "gan": {**TINY["gan"], "checkpoint": str(tmp_path / "g.pt")}})
    adopted = fit_generator(adopt, tiny_prepared / "train", CPU)
    assert adopted.curve == [] and adopted.summary == {"source": "checkpoint",
                                                       "checkpoint": str(tmp_path / "g.pt")}
    np.testing.assert_array_equal(sample_grid(adopted.gen, CPU)[3], grid[3])
    write_generator(tmp_path / "copy.pt", adopted, adopt)  # the adopted file, byte for byte
    assert (tmp_path / "copy.pt").read_bytes() == (tmp_path / "g.pt").read_bytes()

    other = resolve_params({**TINY, "base": {"image_size": 64},
                            "gan": {**TINY["gan"], "checkpoint": str(tmp_path / "g.pt")}})
    with pytest.raises(FacebalanceError, match=r"makes 32px images but base\.image_size is 64"):
        fit_generator(other, tiny_prepared / "train", CPU)
