"""Turn the image source in params `data` into WebDataset shards, DALI indexes, label subsets and a manifest.

With --verify, re-read the existing shards and check them against the manifest instead.
"""

from __future__ import annotations

import argparse
import time

from sslflow import paths
from sslflow.atomic import atomic_dir
from sslflow.params import Params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verify", action="store_true", help="check data/shards against its manifest (sha256, counts, labels)"
    )


def run(params: Params, verify: bool = False, show_progress: bool = True) -> dict:
    """Build data/shards atomically (or verify it) and return the manifest."""
    if verify:
        from sslflow.data.verify import verify_shards

        return verify_shards(paths.SHARDS)
    from sslflow.data.build import build_shards

    start = time.perf_counter()
    with atomic_dir(paths.SHARDS) as tmp:
        manifest = build_shards(params.data, tmp, show_progress)
    took = time.perf_counter() - start
    for split, entry in manifest["splits"].items():
        print(f"{paths.shard_dir(split)}: {entry['count']} samples in {len(entry['shards'])} shards")
    sizes = ", ".join(f"{name} {n}" for name, n in manifest["subsets"].items())
    skipped = f", {len(manifest['skipped'])} skipped" if manifest["skipped"] else ""
    print(f"{paths.SHARDS}: {len(manifest['classes'])} classes, subsets {sizes}{skipped} ({took:.1f} s)")
    return manifest
