"""Image checks and encodings, against Pillow as the independent decoder."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sslflow.data.encode import BadImage, encode_png, jpeg_header, prepare
from tests.data.imagetrees import jpeg_bytes, pixels, png_bytes


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("channels", [1, 3])
def test_encode_png_is_lossless_and_deterministic(channels):
    image = pixels(3, (31, 17), channels)
    data = encode_png(image)
    np.testing.assert_array_equal(decode(data), image)
    assert encode_png(image.copy()) == data
    assert Image.open(io.BytesIO(data)).mode == ("L" if channels == 1 else "RGB")


def test_jpeg_and_png_are_stored_as_they_are():
    for mode in ("RGB", "L"):
        data = jpeg_bytes(1, mode=mode)
        assert prepare(data) == ("jpg", data)
    progressive = jpeg_bytes(2, progressive=True)
    assert prepare(progressive) == ("jpg", progressive)
    png = png_bytes(4)
    assert prepare(png) == ("png", png)


def test_cmyk_jpeg_becomes_png_of_its_rgb_decoding():
    data = jpeg_bytes(5, mode="CMYK")
    assert jpeg_header(data)[0] == 4
    ext, stored = prepare(data)
    assert ext == "png"
    np.testing.assert_array_equal(decode(stored), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "TIFF"])
def test_other_formats_become_png(fmt):
    image = Image.fromarray(pixels(6, (20, 24)))
    if fmt == "GIF":
        image = image.convert("P")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    ext, stored = prepare(buf.getvalue())
    assert ext == "png"
    np.testing.assert_array_equal(decode(stored), np.asarray(image.convert("RGB")))


def with_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """An APP1 segment holding a complete small JPEG, as EXIF thumbnails do, right after SOI."""
    payload = b"Exif\0\0" + thumbnail
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


@pytest.mark.parametrize("progressive", [False, True])
def test_every_cut_of_a_jpeg_is_refused(progressive):
    data = with_thumbnail(jpeg_bytes(7, size=(64, 80), progressive=progressive), jpeg_bytes(8, size=(8, 8)))
    assert prepare(data) == ("jpg", data)
    for cut in range(0, len(data) - 1, 7):
        with pytest.raises(BadImage, match="truncated|corrupt|empty"):
            prepare(data[:cut])


def test_reasons():
    with pytest.raises(BadImage, match="^empty file$"):
        prepare(b"")
    with pytest.raises(BadImage, match="^not an image"):
        prepare(b"plain text, no image\n" * 10)
    png = png_bytes(9, size=(64, 64))
    with pytest.raises(BadImage, match="^corrupt PNG"):
        prepare(png[: len(png) - 30])
    broken = bytearray(png)
    broken[40] ^= 0xFF  # inside IDAT: the CRC no longer matches
    with pytest.raises(BadImage, match="^corrupt PNG"):
        prepare(bytes(broken))
