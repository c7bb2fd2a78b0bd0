"""Stage figures: rows of faces as one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from facebalance.figures import image_grid, save_rows


def test_save_rows_pads_short_rows_and_scales(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (3, 4, 4, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (2, 4, 4, 3), dtype=np.uint8)
    save_rows([a, b], tmp_path / "f.png", image_size=32)  # 96 // 32: 3x
    got = np.asarray(Image.open(tmp_path / "f.png"))
    white = np.full((1, 4, 4, 3), 255, np.uint8)
    want = image_grid(np.concatenate([a, b, white]), 3, pad=1)
    assert got.shape == (want.shape[0] * 3, want.shape[1] * 3, 3)
    np.testing.assert_array_equal(got[::3, ::3], want)


def test_no_rows_still_writes_the_figure(tmp_path: Path) -> None:
    save_rows([np.zeros((0, 4, 4, 3), np.uint8)], tmp_path / "f.png", image_size=96)
    assert np.asarray(Image.open(tmp_path / "f.png")).min() == 255


def test_rows_png_is_what_save_rows_writes(tmp_path: Path) -> None:
    from facebalance.figures import rows_png

    rows = [np.full((3, 8, 8, 3), 40, np.uint8), np.full((1, 8, 8, 3), 200, np.uint8)]
    save_rows(rows, tmp_path / "f.png", 8, view=16)
    assert rows_png(rows, 8, view=16) == (tmp_path / "f.png").read_bytes()
