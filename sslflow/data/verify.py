"""`sslflow shard --verify`: re-read every shard and check it against the manifest.

One pass per tar: the bytes are hashed as tarfile streams through them, so the
sha256, the members (each image of the kind the manifest's encoding says; a raw
one exactly H x W x C bytes), the labels and the DALI index are all checked
from a single read. Each problem is one line on stderr; any problem is exit code 2.
"""

from __future__ import annotations

import hashlib
import math
import sys
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sslflow import paths
from sslflow.data.index import IndexEntry, format_index, unsafe_member_name
from sslflow.data.manifest import load_manifest, raw_shape
from sslflow.data.read import ENCODED_EXTS, RAW_EXT
from sslflow.data.subsets import FRACTIONS
from sslflow.errors import UserError


class _HashingReader:
    """A file wrapper that hashes what is read through it."""

    def __init__(self, fh):
        self._fh = fh
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.hash.update(data)
        self.size += len(data)
        return data


@dataclass
class _TarScan:
    sha256: str = ""
    size: int = 0
    labels: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    index: str = ""
    problems: list[str] = field(default_factory=list)


def verify_shards(shards_dir: Path | str = paths.SHARDS) -> dict:
    """Check tars (sha256, size, members, labels, index), per-class counts and subsets; UserError on any problem."""
    shards_dir = Path(shards_dir)
    manifest = load_manifest(shards_dir)
    problems: list[str] = []
    train_keys: set[str] = set()
    total = 0
    for split, entry in manifest["splits"].items():
        keys, found = _verify_split(shards_dir, split, entry, manifest, problems)
        total += found
        if split == "train":
            train_keys = keys
    _verify_subsets(shards_dir, manifest, train_keys, problems)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        raise UserError(f"{shards_dir}: {len(problems)} problem(s) found, listed above")
    shards = sum(len(e["shards"]) for e in manifest["splits"].values())
    print(f"{shards_dir}: {shards} shards, {total} samples match the manifest")
    return manifest


def _verify_split(shards_dir, split, entry, manifest, problems) -> tuple[set[str], int]:
    classes, expected = manifest["classes"], expected_images(manifest)
    directory = shards_dir / split
    listed = [s["name"] for s in entry["shards"]]
    on_disk = sorted(p.name for p in directory.glob("*.tar")) if directory.is_dir() else []
    problems += [f"{directory / name}: not in the manifest" for name in on_disk if name not in listed]
    labels: list[int] = []
    keys: set[str] = set()
    for shard in entry["shards"]:
        path = directory / shard["name"]
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        scan = scan_tar(path, len(classes), expected)
        problems += scan.problems
        if scan.size != shard["bytes"]:
            problems.append(f"{path}: {scan.size} bytes, the manifest says {shard['bytes']} (truncated or changed)")
        if scan.sha256 != shard["sha256"]:
            problems.append(f"{path}: sha256 differs from the manifest (changed or truncated)")
        if len(scan.labels) != shard["samples"]:
            problems.append(f"{path}: {len(scan.labels)} samples, the manifest says {shard['samples']}")
        _verify_index(path, scan, problems)
        duplicate = keys.intersection(scan.keys)
        if duplicate:
            problems.append(f"{path}: key {sorted(duplicate)[0]} also in an earlier shard of {split}")
        keys.update(scan.keys)
        labels += scan.labels
    counts = Counter(labels)
    per_class = {name: counts.get(i, 0) for i, name in enumerate(classes)}
    if len(labels) != entry["count"]:
        problems.append(f"{directory}: {len(labels)} samples, the manifest says {entry['count']}")
    for name, n in per_class.items():
        if n != entry["per_class"].get(name):
            problems.append(
                f"{directory}: {n} samples of class {name!r}, the manifest says {entry['per_class'].get(name)}"
            )
    return keys, len(labels)


def expected_images(manifest: dict) -> dict[str, int | None]:
    """The image members the manifest's encoding allows: extension -> exact size (raw pixels) or None (any)."""
    shape = raw_shape(manifest)
    return {RAW_EXT: math.prod(shape)} if shape else dict.fromkeys(ENCODED_EXTS)


def _image_problem(parts: dict, expected: dict[str, int | None]) -> str | None:
    images = [e for e in parts if e != "cls"]
    if len(images) != 1 or images[0] not in expected:
        return f"image members {images}, the manifest's encoding wants one {'|'.join(expected)}"
    ext, size = images[0], expected[images[0]]
    if size is not None and parts[ext] != size:
        return f"{ext} member of {parts[ext]} bytes, the manifest's shape makes {size}"
    return None


def scan_tar(path: Path, num_classes: int, expected: dict[str, int | None]) -> _TarScan:
    """Members, labels, index text and sha256 of one tar, from one sequential read."""
    scan = _TarScan()
    samples: list[list[IndexEntry]] = []
    members: dict[str, dict[str, bytes | int]] = {}  # cls: its bytes; image: its size
    with open(path, "rb") as fh:
        reader = _HashingReader(fh)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    if unsafe_member_name(member.name):
                        scan.problems.append(f"{path}: unsafe member name {member.name!r}")
                        continue
                    if not member.isreg():
                        scan.problems.append(f"{path}: {member.name} is not a regular file")
                        continue
                    key, _, ext = member.name.partition(".")
                    entry = IndexEntry(ext, member.offset_data, member.size, member.name)
                    if samples and samples[-1][0].name.partition(".")[0] == key:
                        samples[-1].append(entry)
                    else:
                        samples.append([entry])
                    # reading every member (not seeking past it) makes a cut-off member an error
                    data = tar.extractfile(member).read()
                    members.setdefault(key, {})[ext] = data if ext == "cls" else len(data)
        except (tarfile.TarError, EOFError, OSError) as exc:
            scan.problems.append(f"{path}: truncated or corrupt tar ({exc})")
        while reader.read(1 << 20):
            pass
    scan.sha256, scan.size = reader.hash.hexdigest(), reader.size
    if not scan.problems and scan.size % tarfile.RECORDSIZE:
        scan.problems.append(
            f"{path}: truncated or corrupt tar (not a whole number of {tarfile.RECORDSIZE}-byte records)"
        )
    scan.index = format_index(samples)
    for key, parts in members.items():
        label = _label(parts.get("cls"))
        if label is None or label >= num_classes or len(parts) != 2:
            scan.problems.append(f"{path}: sample {key} has members {sorted(parts)} / label {parts.get('cls')!r}")
            continue
        kind = _image_problem(parts, expected)
        if kind:
            scan.problems.append(f"{path}: sample {key}: {kind}")
            continue
        scan.keys.append(key)
        scan.labels.append(label)
    return scan


def _label(data: bytes | None) -> int | None:
    try:
        return int(data.decode("ascii")) if data is not None else None
    except ValueError:
        return None


def _verify_index(path: Path, scan: _TarScan, problems: list[str]) -> None:
    index = path.with_suffix(".idx")
    if not index.is_file():
        problems.append(f"{index}: missing")
    elif index.read_text() != scan.index:
        problems.append(f"{index}: does not match the tar's members and offsets")


def _verify_subsets(shards_dir: Path, manifest: dict, train_keys: set[str], problems: list[str]) -> None:
    for name in FRACTIONS:
        path = shards_dir / "subsets" / f"{name}.txt"
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        keys = path.read_text().split()
        if len(keys) != manifest["subsets"].get(name):
            problems.append(f"{path}: {len(keys)} keys, the manifest says {manifest['subsets'].get(name)}")
        unknown = sorted(set(keys) - train_keys)
        if unknown:
            problems.append(f"{path}: {len(unknown)} key(s) not in the train shards, e.g. {unknown[0]}")
