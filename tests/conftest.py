"""Shared fixtures: a small real Fashion-MNIST source and a project with its shards already made.

`tiny_project` is what most stage tests start from: a directory with the repo's
params.yaml (data.source repointed at a 1,000 train / 200 val cut of the real
Fashion-MNIST, 100 / 20 per class, in the original order) and data/shards made
by the real `shard` stage, in several shards per split so that rank and worker
splitting can be exercised. Use it with ``monkeypatch.chdir(tiny_project)``;
treat it as read-only (it is shared by the whole session).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
TINY_PER_CLASS = {"train": 100, "val": 20}
TINY_SHARD_MB = 0.25  # ~100 samples a shard: 10 train shards, 2 val shards


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzipped or not) as an array, read independently of sslflow's reader."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an idx file (gzipped when the name ends in .gz, with a fixed gzip mtime)."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, np.uint8).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)


def cut_fashion_mnist(dest: Path, per_class: dict[str, int] = TINY_PER_CLASS) -> Path:
    """The first `per_class[split]` images of each class, in source order, as idx.gz files in `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for split, prefix in (("train", "train"), ("val", "t10k")):
        images = read_idx(FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz")
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[: per_class[split]] for c in range(10)]))
        write_idx(dest / f"{prefix}-images-idx3-ubyte.gz", images[keep])
        write_idx(dest / f"{prefix}-labels-idx1-ubyte.gz", labels[keep])
    return dest


def make_project(root: Path, data: dict) -> Path:
    """A project dir with the repo's params.yaml, its `data` block updated with `data`.

    No shared budget: on a few hundred images the epochs (and a test's max_steps) set each run's length.
    """
    root.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(data)
    params["train"]["budget_views"] = None
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def shard_in(project: Path, overrides: list[str] = (), show_progress: bool = False) -> dict:
    """Run the real shard stage in `project` (cwd changed for the call) and return the manifest."""
    from sslflow.params import load_params
    from sslflow.stages.shard import run

    before = os.getcwd()
    os.chdir(project)
    try:
        return run(load_params("params.yaml", overrides), show_progress=show_progress)
    finally:
        os.chdir(before)


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory) -> Path:
    """mnist-idx source dir: 1,000 train / 200 val real Fashion-MNIST images (100 / 20 per class)."""
    return cut_fashion_mnist(tmp_path_factory.mktemp("tiny-source"))


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory, tiny_source) -> Path:
    """A project dir with params.yaml pointing at `tiny_source` and data/shards already made."""
    project = make_project(
        tmp_path_factory.mktemp("tiny-project"), {"source": str(tiny_source), "shard_size_mb": TINY_SHARD_MB}
    )
    shard_in(project)
    return project


def pytest_collection_modifyitems(config, items):
    """`gpu` tests are deselected, not skipped, without CUDA: a CPU run reports no skips, so a skip means
    something was not tested that should have been."""
    import torch

    if torch.cuda.is_available():
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]
        config.hook.pytest_deselected(items=gpu)
