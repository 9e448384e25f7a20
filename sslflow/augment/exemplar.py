"""Exemplar surrogate classes (Dosovitskiy et al.): N patches drawn once from the training images.

The draw is seeded and stored as ``models/exemplar/patches.npz`` (uint8
(N, p, p, C) patches, the source key of each, and a fingerprint of what made
them), beside the exemplar encoder that is trained on them. Surrogate class i
is patch i; the loader augments each patch `copies` times per epoch.

As in the paper, patches go where there is something to see: of `candidates`
random positions per image, one is kept with probability proportional to its
mean squared gradient, so flat background is rarely a class of its own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from sslflow import paths
from sslflow.atomic import atomic_path
from sslflow.augment.catalogue import Catalogue, load_catalogue
from sslflow.augment.spec import ExemplarView
from sslflow.augment.torchvision_ops import stored_image
from sslflow.data.manifest import raw_shape

ARTEFACT = paths.MODELS / "exemplar" / "patches.npz"


def surrogate_patches(
    cfg: ExemplarView, seed: int, channels: int, shards_dir: Path, manifest: dict, exclude=None
) -> np.ndarray:
    """The stored patches if they were made from these shards and settings, else a fresh draw (then stored).

    exclude: train keys no patch may come from (the validation slice, under `eval.split: val`).
    """
    fingerprint = _fingerprint(cfg, seed, channels, manifest, exclude)
    if ARTEFACT.exists():
        with np.load(ARTEFACT) as stored:
            if str(stored["fingerprint"]) == fingerprint:
                return stored["patches"]
    catalogue = load_catalogue(shards_dir, "train")
    patches, keys = sample_patches(catalogue, cfg, seed, channels, exclude, raw_shape(manifest))
    with atomic_path(ARTEFACT) as tmp:
        np.savez(tmp, patches=patches, keys=np.array(keys), fingerprint=np.array(fingerprint))
    return patches


def sample_patches(
    cat: Catalogue, cfg: ExemplarView, seed: int, channels: int, exclude=None, stored_shape=None
) -> tuple[np.ndarray, list[str]]:
    """(N, p, p, C) uint8 patches and the key each came from; distinct images while N <= the images drawn from.

    stored_shape: the manifest's raw (H, W, C) when the shards hold raw pixels."""
    rng = np.random.default_rng([seed, cfg.classes, cfg.patch])
    pool = cat.positions(set(cat.keys) - set(exclude)) if exclude else np.arange(len(cat))
    sources = pool[rng.choice(len(pool), size=cfg.classes, replace=cfg.classes > len(pool))]
    patches = np.empty((cfg.classes, cfg.patch, cfg.patch, channels), np.uint8)
    for n, i in enumerate(tqdm(sources, desc="exemplar patches", unit="patch", disable=None, leave=False)):
        image = _at_least(decode(cat.read_image(int(i)), channels, stored_shape), cfg.patch)
        patches[n] = _pick_patch(image, cfg.patch, cfg.candidates, rng)
    return patches, [cat.keys[int(i)] for i in sources]


def decode(data: bytes, channels: int, stored_shape=None) -> np.ndarray:
    """A shard's image member (encoded, or raw pixels at `stored_shape`) -> HWC uint8 with `channels` channels."""
    return stored_image(data, channels, stored_shape).permute(1, 2, 0).numpy()


def _at_least(image: np.ndarray, side: int) -> np.ndarray:
    """Upscale an image whose shorter side is below the patch side (tiny sources)."""
    if min(image.shape[:2]) >= side:
        return image
    chw = torch.from_numpy(image).permute(2, 0, 1)
    return TF.resize(chw, side, antialias=True).permute(1, 2, 0).numpy()


def _pick_patch(image: np.ndarray, side: int, candidates: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    tops = rng.integers(0, h - side + 1, size=candidates)
    lefts = rng.integers(0, w - side + 1, size=candidates)
    crops = [image[top : top + side, left : left + side] for top, left in zip(tops, lefts)]
    energy = np.array([gradient_energy(c) for c in crops])
    weights = energy / energy.sum() if energy.sum() > 0 else None
    return crops[rng.choice(candidates, p=weights)]


def gradient_energy(patch: np.ndarray) -> float:
    """Mean squared finite-difference gradient of the channel-mean image."""
    grey = patch.astype(np.float64).mean(axis=2)
    return float((np.diff(grey, axis=0) ** 2).mean() + (np.diff(grey, axis=1) ** 2).mean())


def _fingerprint(cfg: ExemplarView, seed: int, channels: int, manifest: dict, exclude=None) -> str:
    shards = [s["sha256"] for s in manifest["splits"]["train"]["shards"]]
    made_from = {
        "seed": seed,
        "classes": cfg.classes,
        "patch": cfg.patch,
        "candidates": cfg.candidates,
        "channels": channels,
        "shards": shards,
    }
    if exclude:
        made_from["excluded"] = hashlib.sha256("\n".join(sorted(exclude)).encode()).hexdigest()
    return json.dumps(made_from, sort_keys=True)
