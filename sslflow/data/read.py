"""Reading shards back: file lists, samples in shard order (through webdataset), subset keys.

An image member is ``<key>.jpg`` or ``<key>.png`` (the source's bytes) or
``<key>.raw``: uint8 pixels, HWC and row-major with no header, at the one
shape the manifest records (`manifest.raw_shape`). A split holds one kind or
the other, never both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sslflow import paths
from sslflow.data.index import unsafe_member_name
from sslflow.data.subsets import FRACTIONS, VAL
from sslflow.errors import UserError

RAW_EXT = "raw"
ENCODED_EXTS = ("jpg", "png")
IMAGE_EXTS = (*ENCODED_EXTS, RAW_EXT)


def shard_files(shards_dir: Path | str = paths.SHARDS, split: str = "train") -> list[Path]:
    """The split's tars, sorted (shard order); UserError if there are none."""
    directory = Path(shards_dir) / split
    files = sorted(directory.glob("shard-*.tar"))
    if not files:
        raise UserError(f"{directory}: no shards (run `sslflow shard` first)")
    return files


def iter_samples(shards_dir: Path | str = paths.SHARDS, split: str = "train") -> Iterator[tuple[str, bytes, str, int]]:
    """(key, image bytes, ext, label) for every sample of the split, in shard order."""
    import webdataset as wds

    urls = [str(p) for p in shard_files(shards_dir, split)]
    dataset = wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
    for sample in dataset:
        if unsafe_member_name(sample["__key__"]):
            raise UserError(f"{sample.get('__url__')}: unsafe member name {sample['__key__']!r}")
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if ext is None or "cls" not in sample:
            raise UserError(f"{sample.get('__url__')}: sample {sample['__key__']} lacks an image or a .cls member")
        yield sample["__key__"], sample[ext], ext, int(sample["cls"])


def read_subset(name: str, shards_dir: Path | str = paths.SHARDS) -> list[str]:
    """The train keys of a label subset ('1pct', '10pct') or of the validation slice ('val'), as `sslflow shard`
    wrote them."""
    if name not in (*FRACTIONS, VAL):
        raise UserError(f"subset {name!r}: expected one of {', '.join((*FRACTIONS, VAL))}")
    path = Path(shards_dir) / "subsets" / f"{name}.txt"
    try:
        return path.read_text().split()
    except FileNotFoundError:
        raise UserError(f"{path}: not found (run `sslflow shard` first)") from None
