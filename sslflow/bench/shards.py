"""Generated ILSVRC-sized JPEG shards, written once and measured many times.

    sslflow bench shards --images 12000 --to bench-data/jpeg        # then:
    sslflow bench pretrain --size 224 --shards bench-data/jpeg/data/shards ...

`sslflow bench loader|pretrain --size 224` without --shards generate such a set
for each call; a run of several measurements (benchmarks/gpu_checks.sh) makes
it once here, on every core, and passes --shards to each.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from sslflow.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", type=Path, required=True, help="project folder to create; shards in TO/data/shards")
    parser.add_argument("--images", type=int, default=12000, help="train images (val: a tenth more)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="processes generating JPEGs (0: every core)")


def run(params, to: Path, images: int = 12000, classes: int = 10, seed: int = 0, workers: int = 0) -> Path:
    """TO/data/shards, built in TO.partial and renamed: a stopped run leaves no shards that look finished."""
    from sslflow import paths
    from sslflow.bench.loader import build_jpeg_project

    if min(images, classes) < 1 or workers < 0:
        raise UserError("--images and --classes must be >= 1, --workers >= 0")
    if to.exists():
        raise UserError(f"{to}: already exists; remove it or pass it to --shards as {to / paths.SHARDS}")
    partial = to.with_name(to.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    build_jpeg_project(partial, images, classes, seed, workers)
    partial.rename(to)
    print(f"{to / paths.SHARDS}: {images} train JPEGs in {classes} classes")
    return to / paths.SHARDS
