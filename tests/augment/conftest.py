"""Fixtures for the loader tests: the shared Fashion-MNIST project, and a 'probe' project of coordinate images.

Probe images are 64x64 RGB PNGs whose red channel is 4 * (x + 0.5) and green
4 * (y + 0.5) (pixel-centre coordinates times 4, so 2..254) and blue a
per-image constant: the value of any output pixel says where in the source it
came from, which is what measuring crops, flips and patch offsets needs.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslflow.params import load_params
from tests.conftest import make_project, shard_in

PROBE_SIDE = 64
BACKENDS = ("dali", "torchvision")


def probe_pixels(blue: int) -> np.ndarray:
    ramp = (4 * np.arange(PROBE_SIDE) + 2).astype(np.uint8)
    image = np.empty((PROBE_SIDE, PROBE_SIDE, 3), np.uint8)
    image[..., 0] = ramp[None, :]
    image[..., 1] = ramp[:, None]
    image[..., 2] = blue
    return image


@pytest.fixture(scope="session")
def probe_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    source = root / "source"
    for split, count in (("train", 120), ("val", 20)):
        for n in range(count):
            folder = source / split / f"c{n % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            Image.fromarray(probe_pixels(40 + n)).save(buf, format="PNG")
            (folder / f"{n:04d}.png").write_bytes(buf.getvalue())
    project = make_project(root / "project", {"source": str(source), "layout": "imagefolder", "class_names": None})
    shard_in(project)
    return project


def params_in(project: Path, *overrides: str):
    return load_params(project / "params.yaml", list(overrides))


def probe_params(*overrides: str):
    """Probe views: 64 px, mean 0 / std 1, so that de-normalising is a multiplication by 255."""
    return ("augment.size=64", "augment.mean=[0.0]", "augment.std=[1.0]") + overrides


def collect(loader, limit: int | None = None) -> dict:
    """Concatenate a loader's batches (up to `limit` samples) into one dict."""
    out: dict[str, list] = {}
    for batch in loader:
        for k, v in batch.items():
            out.setdefault(k, []).append(v)
        if limit is not None and sum(len(v) for v in out[next(iter(out))]) >= limit:
            break
    return {k: (torch.cat(v) if torch.is_tensor(v[0]) else sum(v, [])) for k, v in out.items()}


def to_pixels(images: torch.Tensor, params) -> torch.Tensor:
    """Normalised views back to 0-255 pixel values."""
    channels = images.shape[1]
    mean = torch.tensor(params.augment.mean * (channels if len(params.augment.mean) == 1 else 1)).view(1, -1, 1, 1)
    std = torch.tensor(params.augment.std * (channels if len(params.augment.std) == 1 else 1)).view(1, -1, 1, 1)
    return (images * std + mean) * 255.0
