"""Figures for people: image grids (GAN samples, z/z' pairs) saved as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from facebalance.data.shards import atomic_write_bytes


def image_grid(images: np.ndarray, cols: int, pad: int = 0, fill: int = 255) -> np.ndarray:
    """Tile ``(n, H, W, 3)`` uint8 images row-major into one ``(rows*H, cols*W, 3)`` image."""
    n, h, w, c = images.shape
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i, im in enumerate(images):
        r, k = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[top:top + h, left:left + w] = im
    return grid


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """A uint8 image as PNG bytes, optionally upscaled (nearest) for viewing."""
    img = Image.fromarray(image)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_png(image: np.ndarray, path: str | Path, scale: int = 1) -> None:
    """Write a uint8 image as PNG atomically (:func:`png_bytes`)."""
    atomic_write_bytes(path, png_bytes(image, scale))


#: Side (pixels) a face is shown at in the stages' figures: small images are upscaled.
VIEW_SIZE = 96


def rows_png(rows: list[np.ndarray], image_size: int, view: int = VIEW_SIZE) -> bytes:
    """Rows of faces as one PNG: each row ``(k, H, W, 3)`` uint8, shorter rows padded
    with white, 1-pixel gaps, upscaled to about ``view`` pixels a face (nearest).

    The figure of every stage that shows images (real vs reconstruction, G(z) vs G(z'),
    guided samples); no rows gives a small white image, so the declared output exists.
    """
    scale = max(1, view // image_size)
    rows = [r for r in rows if len(r)]
    if not rows:
        return png_bytes(np.full((8, 8, 3), 255, np.uint8), scale=scale)
    width = max(len(r) for r in rows)
    blank = np.full_like(rows[0][:1], 255)
    images = np.concatenate([np.concatenate([r, *[blank] * (width - len(r))]) for r in rows])
    return png_bytes(image_grid(images, width, pad=1), scale=scale)


def save_rows(rows: list[np.ndarray], path: str | Path, image_size: int,
              view: int = VIEW_SIZE) -> None:
    """Write :func:`rows_png` atomically."""
    atomic_write_bytes(path, rows_png(rows, image_size, view))
