"""Loader throughput: source images/s of each backend and view maker, with its thread/worker count.

    sslflow bench loader                  # the project's shards at augment.size (Fashion-MNIST: 28 px)
    sslflow bench loader --size 224       # ImageNet-sized JPEGs (a synthetic set unless --shards)
    sslflow bench loader --epochs 20      # also: 20 epochs of the 1% subset, one pipeline vs one per epoch

At 224 px the views follow the papers' ImageNet recipe (the class defaults of
`augment`: SimCLR with blur, ImageNet mean/std), keeping this params file's
backend-independent knobs (threads, prefetch, roi_decode). Without --shards a
set of ~500x375 JPEGs (~80 KB, like ILSVRC's) is generated and sharded by the
real shard stage in a temporary project, removed afterwards.

images/s counts source images; views/s counts what the network receives
(SimCLR 2 per image, rotation 4, relpos 2 patches).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from sslflow import paths
from sslflow.atomic import write_json
from sslflow.augment.views import KINDS
from sslflow.errors import UserError

VIEWS_PER_IMAGE = {"simclr": 2, "rotation": 4, "relpos": 2, "exemplar": 1, "supervised": 1, "eval": 1}
BACKENDS = ("dali", "torchvision")
JPEG_SIZE = (500, 375)  # ILSVRC2012's typical train image (w, h)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size", type=int, default=None, help="view side; 224 uses ImageNet-sized JPEGs (default: augment.size)"
    )
    parser.add_argument(
        "--shards",
        type=Path,
        default=None,
        help="shards dir to read (default: data/shards, or generated JPEGs with --size)",
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated view makers")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: dali, torchvision")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="images per batch (default: 256 at <= 64 px, else 64)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per (backend, kind)")
    parser.add_argument("--warmup", type=int, default=2, help="batches before timing starts")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repetitions; the median is reported")
    parser.add_argument(
        "--images", type=int, default=1536, help="generated JPEGs (train split) with --size and no --shards"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="also time this many epochs of the 1%% subset (fine-tuning's loader), carried by one pipeline "
        "(next_epoch) against a loader built per epoch",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")


def run(
    params,
    size: int | None = None,
    shards: Path | None = None,
    kinds: str = ",".join(KINDS),
    backends: str = ",".join(BACKENDS),
    batch_size: int | None = None,
    seconds: float = 10.0,
    warmup: int = 2,
    rounds: int = 1,
    images: int = 1536,
    epochs: int = 0,
    json: Path | None = None,
) -> list[dict]:
    """Measure every (backend, kind) `rounds` times, interleaved, and report the median of each."""
    kind_list, backend_list = _names(kinds, KINDS, "--kinds"), _names(backends, BACKENDS, "--backends")
    if rounds < 1:
        raise UserError(f"--rounds {rounds}: must be >= 1")
    bench_params = _bench_params(params, size)
    side = bench_params.augment.size
    batch = batch_size or (256 if side <= 64 else 64)
    runs: dict[tuple[str, str], list[dict]] = {(b, k): [] for b in backend_list for k in kind_list}
    with _shards(size, shards, images) as (shards_dir, workdir), _cwd(workdir):
        print(f"shards: {shards_dir} | {os.cpu_count()} CPU cores | batch {batch} | {side} px | {rounds} round(s)")
        print(f"{'round':<7}{'backend':<12}{'kind':<12}{'threads':>8}{'batches':>9}{'images/s':>11}{'views/s':>11}")
        for round_no in range(1, rounds + 1):
            for backend, kind in runs:
                row = measure(bench_params, kind, backend, batch, warmup, seconds, shards_dir)
                runs[(backend, kind)].append(row)
                print(f"{round_no:<7}{_line(row)}", flush=True)
        rows = [_median(measured) for measured in runs.values()]
        if rounds > 1:
            print("median over rounds:")
            for row in rows:
                print(f"{'':<7}{_line(row)}")
        _print_ratios(rows)
        if epochs:
            rows.append(_epochs_row(bench_params, epochs, batch, rounds, shards_dir))
    if json is not None:
        write_json(json, rows)
    return rows


def _line(row: dict) -> str:
    return (
        f"{row['backend']:<12}{row['kind']:<12}{row['threads']:>8}{row['batches']:>9}"
        f"{row['images_per_s']:>11.1f}{row['views_per_s']:>11.1f}"
    )


def _median(measured: list[dict]) -> dict:
    """The round with the median images/s (interleaved rounds share the machine's load fairly)."""
    ordered = sorted(measured, key=lambda r: r["images_per_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["rounds"] = [r["images_per_s"] for r in measured]
    return row


def measure(params, kind: str, backend: str, batch_size: int, warmup: int, seconds: float, shards_dir: Path) -> dict:
    """Steady-state rate inside one epoch: time from the end of the warm-up batches to the last batch taken."""
    from sslflow.augment.loader import make_loader

    run_params = params.model_copy(update={"augment": params.augment.model_copy(update={"backend": backend})})
    loader = make_loader(run_params, kind=kind, batch_size=batch_size, shards_dir=shards_dir)
    if len(loader) <= warmup:
        raise UserError(
            f"{shards_dir}: {len(loader)} batches of {batch_size} per epoch; need more than --warmup {warmup}"
        )
    batches = iter(loader)
    for _ in range(warmup):
        next(batches)
    taken, start = 0, time.perf_counter()
    for _ in batches:
        taken += 1
        if time.perf_counter() - start >= seconds:
            break
    elapsed = time.perf_counter() - start
    rate = taken * batch_size / elapsed
    return {
        "backend": backend,
        "kind": kind,
        "size": params.augment.size,
        "threads": loader.plan.threads,
        "batch_size": batch_size,
        "batches": taken,
        "images_per_s": round(rate, 1),
        "views_per_s": round(rate * VIEWS_PER_IMAGE[kind], 1),
        "cpu_cores": os.cpu_count(),
    }


def _epochs_row(params, epochs: int, batch_size: int, rounds: int, shards_dir: Path) -> dict:
    """Seconds per epoch of the 1% subset with the project's backend: one loader carried from epoch to epoch
    (`next_epoch`, as fine-tuning and pretraining run) against one built per epoch, interleaved rounds, medians."""
    from sslflow.augment.loader import make_loader, pick_backend
    from sslflow.data.read import read_subset

    keys = read_subset("1pct", shards_dir)
    batch = min(batch_size, len(keys))

    def carried() -> None:
        loader = make_loader(params, kind="supervised", batch_size=batch, keys=keys, shards_dir=shards_dir)
        for _ in range(epochs):
            for _ in loader:
                pass
            loader = loader.next_epoch()

    def rebuilt() -> None:
        for epoch in range(epochs):
            for _ in make_loader(
                params, kind="supervised", batch_size=batch, keys=keys, epoch=epoch, shards_dir=shards_dir
            ):
                pass

    times: dict[str, list[float]] = {"carried": [], "rebuilt": []}
    for _ in range(rounds):
        for name, fn in (("carried", carried), ("rebuilt", rebuilt)):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / epochs)
    per_epoch = {name: float(np.median(values)) for name, values in times.items()}
    row = {
        "measure": "epochs of the 1% subset",
        "backend": pick_backend(params.augment.backend),
        "images": len(keys),
        "batch_size": batch,
        "epochs": epochs,
        "carried_s_per_epoch": round(per_epoch["carried"], 6),
        "rebuilt_s_per_epoch": round(per_epoch["rebuilt"], 6),
        "rebuilt_over_carried": round(per_epoch["rebuilt"] / per_epoch["carried"], 2),
    }
    print(
        f"1% subset ({len(keys)} images, batch {batch}), {epochs} epochs: one loader carried over "
        f"{row['carried_s_per_epoch']:.3f} s/epoch, built per epoch {row['rebuilt_s_per_epoch']:.3f} s/epoch, "
        f"built / carried = {row['rebuilt_over_carried']:.2f}x"
    )
    return row


def _bench_params(params, size: int | None):
    """The params file's knobs; at a size other than its own, the ImageNet recipe at that size."""
    if size is None or size == params.augment.size:
        return params
    from sslflow.augment.spec import AugmentCfg, ExemplarView

    own = params.augment
    keep = {"backend": own.backend, "threads": own.threads, "prefetch": own.prefetch, "roi_decode": own.roi_decode}
    # 1,000 surrogate classes: drawing the default 8,000 patches would dominate a benchmark's start-up
    exemplar = ExemplarView(classes=1000, copies=8)
    return params.model_copy(update={"augment": AugmentCfg(size=size, exemplar=exemplar, **keep)})


@contextmanager
def _shards(size: int | None, shards: Path | None, images: int) -> Iterator[tuple[Path, Path]]:
    """(shards dir, working dir): given shards, the project's, or generated JPEG shards in a temp project."""
    if shards is not None:
        yield Path(shards), Path.cwd()
    elif size is None:
        yield paths.SHARDS, Path.cwd()
    else:
        with synthetic_jpeg_project(images) as project:
            yield project / paths.SHARDS, project


@contextmanager
def synthetic_jpeg_project(images: int, classes: int = 10, seed: int = 0) -> Iterator[Path]:
    """A temp project whose data/shards hold `images` train (+10% val) JPEGs of ILSVRC-like size and bytes."""
    root = Path(tempfile.mkdtemp(prefix="sslflow-bench-"))
    try:
        build_jpeg_project(root, images, classes, seed)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def build_jpeg_project(root: Path, images: int, classes: int = 10, seed: int = 0, workers: int = 0) -> None:
    """root/data/shards: generated JPEGs (`write_jpeg_folder`) sharded by the real shard stage."""
    from sslflow.data.config import DataCfg
    from sslflow.params import Params
    from sslflow.stages import shard

    source = root / "source"
    write_jpeg_folder(source, images, classes, seed, workers)
    shard_params = Params(data=DataCfg(source=source, layout="imagefolder", shard_size_mb=64.0))
    with _cwd(root):
        shard.run(shard_params, show_progress=False)
    shutil.rmtree(source)


def write_jpeg_folder(root: Path, images: int, classes: int, seed: int, workers: int = 0) -> None:
    """imagefolder layout: root/{train,val}/class_<c>/<n>.jpg, quality 92 (~80 KB at 500x375).

    Each image has its own generator, seeded by (seed, split, n), so the set is the same on any
    number of `workers` (0: every core): an ImageNet-sized measurement needs ~10,000 of them, a
    minute and a half on one core and seconds on a GPU node's sixteen.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from tqdm import tqdm

    counts = {"train": images, "val": max(classes, images // 10)}
    jobs = [(root, split, n, classes, seed) for split, count in counts.items() for n in range(count)]
    from sslflow.bench.trees import write_photo

    for split in counts:
        for c in range(classes):
            (root / split / f"class_{c}").mkdir(parents=True, exist_ok=True)
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    progress = tqdm(total=len(jobs), desc="JPEGs", disable=None, leave=False)
    if workers == 1:
        for job in jobs:
            write_photo(job)
            progress.update()
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for _ in pool.map(write_photo, jobs, chunksize=max(1, len(jobs) // (workers * 8))):
                progress.update()
    progress.close()


def _print_ratios(rows: list[dict]) -> None:
    by = {(r["backend"], r["kind"]): r["images_per_s"] for r in rows}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        if ("dali", kind) in by and ("torchvision", kind) in by and by[("torchvision", kind)] > 0:
            print(f"{kind}: dali / torchvision = {by[('dali', kind)] / by[('torchvision', kind)]:.2f}x")


def _names(value: str, allowed: tuple[str, ...], option: str) -> list[str]:
    names = [v for v in value.split(",") if v]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise UserError(f"{option} {value}: expected a comma-separated subset of {', '.join(allowed)}")
    return names


@contextmanager
def _cwd(path: Path):
    """Run in `path` so that artefacts written relative to the project (exemplar patches) land there."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)
