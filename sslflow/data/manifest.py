"""data/shards/manifest.json: what the shards hold, the one file later stages read about them.

{"format": 2, "source": {"layout", "path", "description"},
 "classes": [name, ...] (index == class id), "channels": 1|3, "image_size": [h, w] | null,
 "encoding": "raw" | "encoded", "shape": [h, w, c] | null,
 "splits": {split: {"count", "per_class": {name: n},
                    "shards": [{"name", "samples", "sha256", "bytes"}]}},
 "skipped": [{"file", "reason"}], "subsets": {"1pct": n, "10pct": n}}

"encoding" is the one fact that says how images are stored: "raw" (every image a
``<key>.raw`` member of uint8 pixels at "shape", HWC; small sources, see
encode.RAW_MAX_SIDE) or "encoded" (``.jpg`` / ``.png`` members; "shape" null).
Format 2 added them; a format-1 manifest (PNG Fashion-MNIST shards) is refused
so that old shards are rebuilt, not misread.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sslflow import paths
from sslflow.data.records import Source
from sslflow.data.tarwriter import ShardInfo
from sslflow.errors import UserError

FORMAT = 2
MANIFEST = "manifest.json"
KEYS = ("format", "source", "classes", "channels", "image_size", "encoding", "shape", "splits", "skipped", "subsets")
RAW, ENCODED = "raw", "encoded"


def split_entry(classes: list[str], labels: list[int], shards: list[ShardInfo]) -> dict:
    counts = Counter(labels)
    return {
        "count": len(labels),
        "per_class": {name: counts.get(i, 0) for i, name in enumerate(classes)},
        "shards": [{"name": s.name, "samples": s.samples, "sha256": s.sha256, "bytes": s.bytes} for s in shards],
    }


def build_manifest(source: Source, splits: dict[str, dict], skipped: list[dict], subset_sizes: dict[str, int]) -> dict:
    return {
        "format": FORMAT,
        "source": {"layout": source.layout, "path": str(source.path), "description": source.description},
        "classes": source.classes,
        "channels": source.channels,
        "image_size": source.image_size,
        "encoding": RAW if source.raw_shape else ENCODED,
        "shape": source.raw_shape,
        "splits": splits,
        "skipped": skipped,
        "subsets": subset_sizes,
    }


def load_manifest(shards_dir: Path | str = paths.SHARDS) -> dict:
    """The manifest of `shards_dir`; UserError if it is missing or not a manifest of this format."""
    path = Path(shards_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found (run `sslflow shard` first)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable JSON manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path}: not a shard manifest of format {FORMAT} (rerun `sslflow shard`)")
    missing = [k for k in KEYS if k not in manifest]
    if missing:
        raise UserError(f"{path}: missing {', '.join(missing)}")
    return manifest


def raw_shape(manifest: dict) -> tuple[int, int, int] | None:
    """(H, W, C) of every image when the shards hold raw pixels, None when they hold JPEG/PNG bytes."""
    return tuple(manifest["shape"]) if manifest["encoding"] == RAW else None


def check_shard_sizes(manifest: dict, shards_dir: Path | str = paths.SHARDS, splits=None) -> None:
    """UserError naming the first shard (of `splits`, default all) that is missing or not the size the manifest records.

    One stat per shard, cheap enough for every stage that reads shards: it stops a
    truncated or half-copied tar before a reader meets it mid-member (DALI aborts
    with a C++ assertion). A changed byte keeps the size; `sslflow shard --verify`
    hashes every shard.
    """
    for split, entry in manifest["splits"].items():
        if splits is not None and split not in splits:
            continue
        for shard in entry["shards"]:
            path = Path(shards_dir) / split / shard["name"]
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise UserError(f"{path}: missing (listed in the manifest; rerun `sslflow shard`)") from None
            if size != shard["bytes"]:
                raise UserError(
                    f"{path}: {size} bytes, the manifest says {shard['bytes']} "
                    "(truncated or replaced; rerun `sslflow shard`, or `sslflow shard --verify` to check every shard)"
                )
