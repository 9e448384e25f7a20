"""Image bytes as they go into a shard: checked cheaply, stored as they are where possible, raw where small.

Small images (both sides <= RAW_MAX_SIDE px, one shape for the whole source)
are stored as raw uint8 pixels (``<key>.raw``, HWC, row-major, no header), so
the loaders read them with no decode: at 28 px a PNG decode costs more than
the whole augmentation of a view. Only lossless sources go raw (idx pixels,
8-bit grey / RGB / palette PNGs); a JPEG always stays the JPEG it is, since its
pixels are whatever a given decoder makes of it. Otherwise:

JPEG and PNG files are stored byte for byte (a re-encode would lose quality and
time); the format is sniffed from the bytes, not the file name, so a PNG named
``.JPEG`` (ILSVRC2012 has one) is stored as ``png``. Checks read headers and
markers only, never decode a JPEG, so they cost little next to the read itself.
Two cases are converted, losslessly from what any decoder would produce, to PNG:
CMYK/YCCK JPEGs (nvJPEG and DALI's CPU decoder do not decode them reliably) and
images in other formats Pillow reads (BMP, GIF, TIFF, WebP).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
from PIL import Image

JPEG_SOI = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_ZLIB_LEVEL = 6
RAW_MAX_SIDE = 64  # images up to 64 x 64 px are stored raw (Fashion-MNIST, CIFAR-like folders)
# PNG IHDR colour types whose 8-bit pixels every decoder gives alike as grey or RGB: grey, RGB, palette
_RAW_PNG_COLOURS = (0, 2, 3)


class BadImage(Exception):
    """A source file that cannot become a sample; the message is the reason."""


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG of an (H, W) uint8 grey or (H, W, 3) RGB array; the bytes depend on the pixels only.

    Written directly (signature, IHDR, one IDAT with unfiltered rows, IEND): Pillow's encoder
    spends ~450 us on a 28x28 image in set-up, this ~90 us, nearly all in zlib.
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3) pixels, got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    colour_type = 0 if pixels.ndim == 2 else 2
    rows = np.zeros((height, 1 + pixels[0].size), np.uint8)  # filter byte 0 (none) before each row
    rows[:, 1:] = pixels.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_ZLIB_LEVEL)),
            _chunk(b"IEND", b""),
        )
    )


def fits_raw(height: int, width: int) -> bool:
    """Whether an image this size is stored raw (its source permitting)."""
    return 0 < height <= RAW_MAX_SIDE and 0 < width <= RAW_MAX_SIDE


def png_size(head: bytes) -> tuple[int, int] | None:
    """(height, width) of a PNG whose first 29 bytes are `head`, when it can be stored raw; else None.

    Read from the IHDR chunk (the first after the signature): 8-bit grey, RGB or palette
    pixels, which PIL, libpng and DALI all decode to the same RGB. 16-bit and alpha
    PNGs stay encoded: decoders disagree on how to bring them to 8-bit RGB.
    """
    if len(head) < 29 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    return (height, width) if depth == 8 and colour in _RAW_PNG_COLOURS else None


def raw_pixels(data: bytes, shape: tuple[int, int, int]) -> bytes:
    """A PNG's pixels as stored raw: HWC uint8 at `shape` (grey replicated to RGB when C is 3), BadImage if
    the file is not a PNG of that size.

    Checked as `prepare` checks it first, so a bad file gives the same reason either way.
    """
    prepare(data)
    if sniff(data) != "png":
        raise BadImage("not a PNG, in a source whose images are stored raw from PNGs (changed since it was listed?)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            pixels = np.asarray(image.convert("L" if shape[2] == 1 else "RGB"))
    except Exception as exc:
        raise BadImage(f"cannot decode PNG ({_reason(exc)})") from None
    pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
    if pixels.shape != tuple(shape):
        raise BadImage(f"{pixels.shape[1]}x{pixels.shape[0]} px, not the source's {shape[1]}x{shape[0]} (stored raw)")
    return pixels.tobytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def sniff(data: bytes) -> str | None:
    """'jpeg', 'png' or None, from the signature bytes."""
    if data.startswith(JPEG_SOI):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    return None


def prepare(data: bytes) -> tuple[str, bytes]:
    """(shard extension, bytes to store) for a source file's bytes; BadImage if unusable."""
    if not data:
        raise BadImage("empty file")
    kind = sniff(data)
    if kind == "jpeg":
        return _prepare_jpeg(data)
    if kind == "png":
        _check_png(data)
        return "png", data
    return "png", _convert_other(data)


def _prepare_jpeg(data: bytes) -> tuple[str, bytes]:
    components, first_scan = jpeg_header(data)
    # Scan data cannot contain FF D9 or FF DA (0xFF is byte-stuffed), so a complete file has an
    # end-of-image marker after its first scan and no start-of-scan after that marker; a cut
    # one has none, or only one that belongs to an EXIF thumbnail (inside an APP segment, so
    # before the first scan). Searching from the end costs ~0.2 us; decoding, milliseconds.
    last_end = data.rfind(b"\xff\xd9")
    if last_end < first_scan or data.find(b"\xff\xda", last_end) >= 0:
        raise BadImage("truncated JPEG (no end-of-image marker after the last scan)")
    if components in (1, 3):
        return "jpg", data
    if components == 4:
        return "png", _decode_to_png(data, "CMYK JPEG")
    raise BadImage(f"unsupported JPEG with {components} colour components")


# start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8, CC are not frames
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD9)) | {0x01}


def jpeg_header(data: bytes) -> tuple[int, int]:
    """(colour components, offset of the first start-of-scan), from walking the marker segments.

    A few microseconds, where opening the file with Pillow costs ~200 us: at ImageNet scale
    the check must cost little next to reading the file.
    """
    components = None
    at, end = 2, len(data)
    while at + 4 <= end:
        if data[at] != 0xFF:
            raise BadImage(f"corrupt JPEG header (no marker at byte {at})")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE_MARKERS:
            at += 2
            continue
        if marker == 0xDA:
            if components is None:
                raise BadImage("corrupt JPEG header (scan before frame header)")
            return components, at
        if marker in _FRAME_MARKERS:
            if at + 10 > end:
                break
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            if width == 0 or height == 0:
                raise BadImage(f"corrupt JPEG header ({width}x{height} frame)")
            components = data[at + 9]
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    raise BadImage("truncated JPEG (ends in the header)")


def _check_png(data: bytes) -> None:
    image = _open(data, "PNG")
    try:
        image.verify()  # chunk CRCs and IEND, without inflating the pixels
    except Exception as exc:  # Pillow raises several types for corrupt chunks
        raise BadImage(f"corrupt PNG ({_reason(exc)})") from None


def _convert_other(data: bytes) -> bytes:
    image = _open(data, None)
    return _decode_to_png(data, f"{image.format} image")


def _decode_to_png(data: bytes, what: str) -> bytes:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            image.load()
            pixels = image.convert("L" if image.mode in ("1", "L", "I", "I;16") else "RGB")
    except Exception as exc:
        raise BadImage(f"cannot decode {what} ({_reason(exc)})") from None
    return encode_png(np.asarray(pixels))


def _open(data: bytes, expected: str | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data), formats=[expected] if expected else None)
    except Exception as exc:
        if expected is None:
            raise BadImage("not an image (no JPEG or PNG signature, and Pillow cannot identify it)") from None
        raise BadImage(f"corrupt {expected} header ({_reason(exc)})") from None
    return image


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
