"""What a source layout hands to the shard writer: records of samples and a reader of their bytes.

A record is small (a key, a label, where the image is, how big it is) so a
whole ImageNet split of them fits in memory while the images stream; the
reader turns a record into the bytes stored in the shard, inside the worker
processes.

Sample keys name the source file so a key can be traced back: mnist-idx
``train_000123`` (row 123), imagefolder the path under the split without its
extension (``cat/sub/a.1.jpg`` -> ``cat_sub_a_1``), imagenet the file stem
(``n01440764_10026``). Characters other than letters, digits, '_' and '-'
become '_' (WebDataset splits a member name at its first dot), and two files
that end up with one key are refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

SPLITS = ("train", "val")
MAX_KEY = 80
_NOT_KEY = re.compile(r"[^A-Za-z0-9_-]")


class Record(NamedTuple):
    key: str  # sample key in the shards: letters, digits, '_' and '-' only (no dots)
    label: int
    ref: str | int  # file path relative to the source root, or row of an idx array
    size: int  # bytes of the stored image (file size), or an estimate; plans shard boundaries


class Reader(Protocol):
    """Picklable: it travels to the worker processes with each shard's records."""

    def sample(self, ref: str | int) -> tuple[str, bytes]:
        """(extension, bytes) to store ('jpg', 'png', or 'raw' pixels); raises encode.BadImage with the reason."""

    def describe(self, ref: str | int) -> str:
        """The file (and row) a ref stands for, for messages (the skip list keeps the ref: a path under the source)."""


@dataclass
class Source:
    """A listed source: classes, per-split records in canonical (sorted) order, and their readers."""

    layout: str
    path: Path
    description: str
    classes: list[str]
    channels: int
    image_size: list[int] | None
    # [H, W, C] when every image is stored raw at that shape (encode.RAW_MAX_SIDE), None when stored encoded
    raw_shape: list[int] | None = None
    records: dict[str, list[Record]] = field(default_factory=dict)
    readers: dict[str, Reader] = field(default_factory=dict)


def make_key(text: str) -> str:
    """A shard key from a path-like name: other characters become '_'; long names keep a hash suffix."""
    key = _NOT_KEY.sub("_", text)
    if len(key) > MAX_KEY:
        digest = hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        key = f"{key[: MAX_KEY - 17]}_{digest}"
    return key


def without_suffix(path: str) -> str:
    """'a/b/name.x.jpg' -> 'a/b/name.x', as Path.with_suffix('') but at str speed (once per file)."""
    slash = path.rfind("/")
    dot = path.rfind(".")
    return path[:dot] if dot > slash + 1 else path
