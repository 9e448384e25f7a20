"""The `mnist-idx` layout: ``<prefix>-images-idx3-ubyte(.gz)`` and ``<prefix>-labels-idx1-ubyte(.gz)``.

Prefix ``train`` is the train split; ``t10k`` (MNIST's name), ``test`` or
``val`` the val split. Pixels are decompressed once into a raw file that the
worker processes memory-map, so no process holds a split and any start method
works. Each image is stored as its raw pixels (``<key>.raw``, H x W x 1) when
it is small (encode.RAW_MAX_SIDE: Fashion-MNIST, MNIST), else PNG-encoded
(lossless, grey) in the worker.
"""

from __future__ import annotations

import gzip
import mmap
import shutil
import struct
from pathlib import Path

import numpy as np

from sslflow.data.encode import encode_png, fits_raw
from sslflow.data.read import RAW_EXT
from sslflow.data.records import Record, Source
from sslflow.errors import UserError

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
SPLIT_PREFIXES = {"train": ("train",), "val": ("t10k", "test", "val")}

_open_arrays: dict[str, np.ndarray] = {}


class IdxImages:
    """Rows of a raw uint8 pixel file (N, H, W), as they are when small, else encoded as PNG."""

    def __init__(self, raw: Path, shape: tuple[int, ...], origin: Path):
        self.raw = str(raw)
        self.shape = shape
        self.origin = origin
        self.stored_raw = fits_raw(*shape[1:])

    def sample(self, ref: int) -> tuple[str, bytes]:
        if self.stored_raw:
            return RAW_EXT, self._array()[ref].tobytes()
        return "png", encode_png(self._array()[ref])

    def describe(self, ref: int) -> str:
        return f"{self.origin} (image {ref})"

    def _array(self) -> np.ndarray:
        array = _open_arrays.get(self.raw)
        if array is None:
            # a plain ndarray over the mapping: np.memmap's indexing costs more than the PNG encode
            with open(self.raw, "rb") as fh:
                mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            array = _open_arrays[self.raw] = np.frombuffer(mapped, np.uint8).reshape(self.shape)
        return array


def open_mnist_idx(root: Path, work: Path, class_names: list[str] | None) -> Source:
    source = Source("mnist-idx", root, "", [], 1, None)
    shapes, labels_all, names = {}, {}, []
    for split in ("train", "val"):
        images_file = _find(root, split, "images-idx3-ubyte")
        labels_file = _find(root, split, "labels-idx1-ubyte")
        raw = work / f"{split}-images.u8"
        shape = _extract_images(images_file, raw)
        labels = _read_labels(labels_file)
        if len(labels) != shape[0]:
            raise UserError(f"{labels_file}: {len(labels)} labels for {shape[0]} images in {images_file.name}")
        shapes[split], labels_all[split] = shape, labels
        source.readers[split] = IdxImages(raw, shape, images_file)
        names += [images_file.name, labels_file.name]
    if shapes["train"][1:] != shapes["val"][1:]:
        raise UserError(f"{root}: train images are {shapes['train'][1:]} but val images {shapes['val'][1:]}")
    num_classes = int(max(labels.max(initial=0) for labels in labels_all.values())) + 1
    source.classes = _class_names(class_names, num_classes, root)
    source.image_size = list(shapes["train"][1:])
    source.raw_shape = [*source.image_size, 1] if source.readers["train"].stored_raw else None
    per_image = int(np.prod(shapes["train"][1:]))
    for split, labels in labels_all.items():
        width = max(6, len(str(len(labels) - 1)))
        source.records[split] = [
            Record(f"{split}_{i:0{width}d}", int(label), i, per_image) for i, label in enumerate(labels.tolist())
        ]
    counts = ", ".join(f"{len(r)} {s}" for s, r in source.records.items())
    source.description = f"idx files {', '.join(names)} ({counts}, {shapes['train'][1]}x{shapes['train'][2]} grey)"
    return source


def _find(root: Path, split: str, suffix: str) -> Path:
    found = [
        root / f"{prefix}-{suffix}{gz}"
        for prefix in SPLIT_PREFIXES[split]
        for gz in ("", ".gz")
        if (root / f"{prefix}-{suffix}{gz}").exists()
    ]
    if not found:
        wanted = "|".join(SPLIT_PREFIXES[split])
        raise UserError(f"{root}: no {split} file {{{wanted}}}-{suffix}[.gz]")
    if len(found) > 1:
        raise UserError(f"{root}: more than one {split} {suffix} file: {', '.join(p.name for p in found)}")
    return found[0]


def _open(path: Path):
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _header(path: Path, fh, magic: int, dims: int) -> tuple[int, ...]:
    try:
        head = fh.read(4 + 4 * dims)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    if len(head) < 4 + 4 * dims or struct.unpack(">I", head[:4])[0] != magic:
        raise UserError(f"{path}: not an idx file (expected magic {magic:#010x})")
    return struct.unpack(f">{dims}I", head[4:])


def _extract_images(path: Path, raw: Path) -> tuple[int, ...]:
    """Copy the pixels (after the header) to `raw`, checking that the count matches the header."""
    raw.parent.mkdir(parents=True, exist_ok=True)
    with _open(path) as fh:
        shape = _header(path, fh, IMAGES_MAGIC, 3)
        try:
            with open(raw, "wb") as out:
                shutil.copyfileobj(fh, out, 1 << 22)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise UserError(f"{path}: cannot read ({exc})") from None
    expected, got = int(np.prod(shape)), raw.stat().st_size
    if got != expected:
        raise UserError(f"{path}: {got} bytes of pixels, the header says {shape} = {expected}")
    return shape


def _read_labels(path: Path) -> np.ndarray:
    with _open(path) as fh:
        (count,) = _header(path, fh, LABELS_MAGIC, 1)
        try:
            data = fh.read()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise UserError(f"{path}: cannot read ({exc})") from None
    if len(data) != count:
        raise UserError(f"{path}: {len(data)} labels, the header says {count}")
    return np.frombuffer(data, np.uint8)


def _class_names(names: list[str] | None, num_classes: int, root: Path) -> list[str]:
    if names is None:
        return [str(i) for i in range(num_classes)]
    if len(names) < num_classes:
        raise UserError(f"data.class_names: {len(names)} names, but {root} has labels up to {num_classes - 1}")
    return list(names)
