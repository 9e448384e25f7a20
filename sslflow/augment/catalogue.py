"""Which samples a split holds, where each one sits in its tar, and which of them a rank reads.

The DALI index beside every shard (``shard-NNNNNN.idx``, format v1.2) already
lists each sample's members with their offsets, so the loader learns keys,
counts and byte ranges without opening a tar: that is what lets a keyed subset
(1%, 10%) or a few exemplar source images be read directly, and what gives both
backends the same per-rank split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslflow.data.read import IMAGE_EXTS, shard_files
from sslflow.errors import UserError


@dataclass(frozen=True)
class Catalogue:
    """Samples of one split in shard order: keys, shard number, image and label byte ranges."""

    shards: list[Path]
    keys: list[str]
    shard: np.ndarray  # int32, index into shards
    image: np.ndarray  # int64 (n, 2): offset, size
    label: np.ndarray  # int64 (n, 2): offset, size

    def __len__(self) -> int:
        return len(self.keys)

    def positions(self, keys: set[str] | None) -> np.ndarray:
        """Indices of `keys` in shard order (all samples when None); UserError if a key is not in the split."""
        if keys is None:
            return np.arange(len(self.keys))
        where = {k: i for i, k in enumerate(self.keys)}
        missing = [k for k in keys if k not in where]
        if missing:
            raise UserError(
                f"{self.shards[0].parent}: {len(missing)} requested keys not in this split, e.g. {sorted(missing)[0]}"
            )
        return np.sort(np.fromiter((where[k] for k in keys), np.int64, len(keys)))

    def read_image(self, i: int) -> bytes:
        return _pread(self.shards[self.shard[i]], *self.image[i])

    def read_label(self, i: int) -> int:
        raw = _pread(self.shards[self.shard[i]], *self.label[i])
        try:
            return int(raw.decode("ascii"))
        except ValueError:
            raise UserError(f"{self.shards[self.shard[i]]}: {self.keys[i]}.cls is not a decimal class id") from None


def index_path(tar: Path) -> Path:
    return tar.with_suffix(".idx")


def load_catalogue(shards_dir: Path | str, split: str) -> Catalogue:
    shards = shard_files(shards_dir, split)
    keys: list[str] = []
    shard_ids: list[int] = []
    image: list[tuple[int, int]] = []
    label: list[tuple[int, int]] = []
    for number, tar in enumerate(shards):
        for key, members in _read_index(index_path(tar)):
            found = [members[e] for e in IMAGE_EXTS if e in members]
            if not found or "cls" not in members:
                raise UserError(f"{index_path(tar)}: sample {key} lacks an image (jpg|png|raw) or a cls member")
            keys.append(key)
            shard_ids.append(number)
            image.append(found[0])
            label.append(members["cls"])
    return Catalogue(
        shards,
        keys,
        np.asarray(shard_ids, np.int32),
        np.asarray(image, np.int64).reshape(-1, 2),
        np.asarray(label, np.int64).reshape(-1, 2),
    )


def shard_counts(shards_dir: Path | str, split: str) -> list[int]:
    """Samples per shard from the index headers, each header checked against its file's complete lines:
    a truncated index (a half-copied shard folder) is named here, not met by DALI's reader mid-run (a
    C++ assertion). Counting newlines is cheap even for ImageNet's 1.28M lines."""
    return [_checked_count(index_path(tar)) for tar in shard_files(shards_dir, split)]


def _checked_count(path: Path) -> int:
    with open(_exists(path), "rb") as fh:
        expected = _header_count(path, fh.readline().decode("ascii", "replace"))
        lines, last = 0, b"\n"
        while chunk := fh.read(1 << 22):
            lines, last = lines + chunk.count(b"\n"), chunk[-1:]
    if lines != expected or last != b"\n":
        raise UserError(f"{path}: {lines} complete sample line(s), the header says {expected} (rerun `sslflow shard`)")
    return expected


def rank_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous slice [start, end) of n samples that `rank` of `world` reads: DALI's shard_id split."""
    return n * rank // world, n * (rank + 1) // world


def _read_index(path: Path):
    """(key, {ext: (offset, size)}) per sample of a v1.2 index."""
    with open(_exists(path)) as fh:
        expected = _header_count(path, fh.readline())
        count = 0
        for line_no, line in enumerate(fh, start=2):
            fields = line.split()
            if not fields:
                continue
            if len(fields) % 4:
                raise UserError(f"{path}: line {line_no} is not a list of 'ext offset size name' members")
            members = {}
            for ext, offset, size, name in zip(*[iter(fields)] * 4):
                members[ext] = (int(offset), int(size))
            count += 1
            yield name.split(".", 1)[0], members
    if count != expected:
        raise UserError(f"{path}: {count} samples listed, the header says {expected}")


def _header_count(path: Path, line: str) -> int:
    parts = line.split()
    if len(parts) != 2 or parts[0] != "v1.2" or not parts[1].isdigit():
        raise UserError(f"{path}: not a DALI webdataset index (expected 'v1.2 <count>')")
    return int(parts[1])


def _exists(path: Path) -> Path:
    if not path.exists():
        raise UserError(f"{path}: missing DALI index (the shard stage writes one per tar)")
    return path


def _pread(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(int(offset))
        data = fh.read(int(size))
    if len(data) != size:
        raise UserError(f"{path}: truncated at byte {offset + len(data)}")
    return data
