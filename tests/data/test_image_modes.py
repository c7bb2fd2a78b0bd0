"""Every mode Pillow opens becomes correct 8-bit RGB, checked against a reference written
out per mode; stored images are size-checked from the header before decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facebalance.data.convert import load_cropped
from facebalance.data.shards import ALPHA_BACKGROUND, decode_image, encode_png, to_rgb
from facebalance.errors import CorruptImageError

W, H = 64, 4
RAMP16 = np.tile(np.linspace(0, 65535, W).round().astype(np.uint16), (H, 1))
RAMP8 = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (H, 1))
ALPHA = np.tile(np.linspace(0, 255, W).round().astype(np.uint8), (H, 1))
BG = np.array(ALPHA_BACKGROUND, dtype=np.float64)


def _grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2).astype(np.uint8)


def _over_background(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float64) / 255
    return rgb.astype(np.float64) * a + BG * (1 - a)


def _cases() -> dict[str, tuple[Image.Image, np.ndarray]]:
    """mode -> (image, expected RGB as float), each expectation written out by hand."""
    palette = np.array([[(k * 37) % 256, (k * 91) % 256, (k * 13) % 256] for k in range(256)],
                       dtype=np.uint8)
    idx = np.tile((np.arange(W) % 256).astype(np.uint8), (H, 1))
    p = Image.fromarray(idx, mode="P")
    p.putpalette(palette.tobytes())
    pa = p.convert("PA")
    pa.putalpha(Image.fromarray(ALPHA, mode="L"))
    cmyk = np.stack([RAMP8, 255 - RAMP8, RAMP8 // 2, ALPHA // 3], axis=2)
    rgb = np.stack([RAMP8, 255 - RAMP8, RAMP8 // 3], axis=2)
    bits = (RAMP8 >= 128)
    floats = RAMP16.astype(np.float32) / 65535
    return {
        "1": (Image.fromarray(bits), _grey(bits * 255)),
        "L": (Image.fromarray(RAMP8, mode="L"), _grey(RAMP8)),
        "LA": (Image.fromarray(np.stack([RAMP8, ALPHA], axis=2), mode="LA"),
               _over_background(_grey(RAMP8), ALPHA)),
        "P": (p, palette[idx]),
        "PA": (pa, _over_background(palette[idx], ALPHA)),
        "RGB": (Image.fromarray(rgb, mode="RGB"), rgb),
        "RGBA": (Image.fromarray(np.dstack([rgb, ALPHA]), mode="RGBA"),
                 _over_background(rgb, ALPHA)),
        # R = (255 - C)(255 - K) / 255, the same for G (M) and B (Y)
        "CMYK": (Image.fromarray(cmyk, mode="CMYK"),
                 (255 - cmyk[..., :3].astype(np.float64))
                 * (255 - cmyk[..., 3:].astype(np.float64)) / 255),
        "I": (Image.fromarray(RAMP16.astype(np.int32), mode="I"), _grey(RAMP16 / 257)),
        "I;16": (Image.frombytes("I;16", (W, H), RAMP16.astype("<u2").tobytes()),
                 _grey(np.round(RAMP16 / 257))),
        "F": (Image.fromarray(floats, mode="F"), _grey(np.round(floats * 255))),
    }


@pytest.mark.parametrize("mode", list(_cases()))
def test_every_mode_converts_to_its_reference(mode: str) -> None:
    im, expected = _cases()[mode]
    assert im.mode == mode
    got = np.asarray(to_rgb(im)).astype(np.float64)
    assert got.shape == (H, W, 3)
    assert np.abs(got - np.round(expected)).max() <= 1.0  # rounding of the compositing


def test_a_16_bit_png_gradient_stays_a_gradient() -> None:
    """The reported case: I;16 came out 99% white."""
    buf = io.BytesIO()
    Image.frombytes("I;16", (W, H), RAMP16.astype("<u2").tobytes()).save(buf, "PNG")
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.mode.startswith("I")
        got = np.asarray(to_rgb(im))[..., 0]
    assert (got == 255).mean() < 0.05
    np.testing.assert_array_equal(got, np.round(RAMP16 / 257).astype(np.uint8))
    np.testing.assert_array_equal(decode_image(buf.getvalue())[..., 0], got)


def test_a_16_bit_file_converts_through_load_cropped(tmp_path) -> None:
    path = tmp_path / "deep.png"
    square = np.tile(np.linspace(0, 65535, 32).round().astype(np.uint16), (32, 1))
    Image.frombytes("I;16", (32, 32), square.astype("<u2").tobytes()).save(path)
    got = load_cropped(path, crop=0, size=32)
    np.testing.assert_array_equal(got[..., 1], np.round(square / 257).astype(np.uint8))


def test_a_huge_image_in_a_shard_is_refused_from_its_header() -> None:
    """A few KB of PNG that would decode to 88 M pixels is never decoded."""
    buf = io.BytesIO()
    Image.new("L", (9400, 9400)).save(buf, "PNG", optimize=True)
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(CorruptImageError, match=r"image id='x' in part-00000.parquet is "
                                                r"9400x9400 = 88,360,000 pixels \(header\); "
                                                r"shards hold images of at most 1,048,576"):
        decode_image(buf.getvalue(), "x", "part-00000.parquet")


def test_stored_rgb_round_trips_exactly() -> None:
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(encode_png(image)), image)
