"""The loader API every method and evaluation uses: `make_loader` and `in_channels`.

`make_loader` works out what this rank reads this epoch (a `Plan`) and hands it
to a backend: DALI when importable (``augment.backend: auto``), else, or when
asked, torchvision v2 over webdataset. Both yield the same dicts of float32,
normalised NCHW tensors; see `views.OUTPUTS` for the keys of each kind.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from sslflow import paths
from sslflow.augment.catalogue import load_catalogue, shard_counts
from sslflow.augment.plan import Plan, check_request, epoch_fields
from sslflow.data.manifest import raw_shape
from sslflow.errors import UserError


def make_loader(
    params,
    *,
    kind: str,
    split: str = "train",
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    epoch: int = 0,
    skip_batches: int = 0,
    keys=None,
    exclude=None,
    shuffle: bool = True,
    drop_last: bool = True,
    device="cpu",
    shards_dir: Path | str = paths.SHARDS,
    state: dict | None = None,
):
    """An iterable over one epoch of `kind` batches for this rank; len() = the batches it will yield.

    Same params.seed, epoch and rank -> identical batches; skip_batches=n yields
    batches n, n+1, ... of that same epoch (len() shrinks by n). keys: read only these
    samples; exclude: read every sample (of `keys`, else of the split) but these.

    Training goes on with `loader.next_epoch()`, which keeps the backend's pipeline
    (DALI: one per run, its streams continuing from epoch to epoch), and
    `loader.state()` is where it stands: passed back as `state` with the same epoch
    and skip_batches, a new loader yields what this one would have yielded next.
    """
    check_request(kind, split, batch_size, rank, world_size, skip_batches)
    cfg = params.augment
    shards_dir = Path(shards_dir)
    manifest = _manifest(shards_dir)
    channels = _channels(cfg, manifest)
    plan = Plan(
        kind=kind,
        split=split,
        batch_size=batch_size,
        rank=rank,
        world_size=world_size,
        skip_batches=skip_batches,
        shuffle=shuffle,
        drop_last=drop_last,
        torch_device=torch.device(device),
        shards_dir=shards_dir,
        channels=channels,
        mean=_per_channel(cfg.mean, channels, "augment.mean"),
        std=_per_channel(cfg.std, channels, "augment.std"),
        threads=cfg.threads or threads_per_rank(),
        total=0,
        base_seed=params.seed,
        raw_shape=raw_shape(manifest),
        **epoch_fields(params.seed, epoch, rank, world_size, kind, shuffle),
    )
    backend = pick_backend(cfg.backend)
    _select(plan, params, keys, exclude, backend, manifest)
    if plan.num_batches == 0:
        raise UserError(
            f"{shards_dir / split}: {plan.total} samples over {world_size} rank(s) give no batch of {batch_size}"
        )
    if skip_batches > plan.num_batches:
        raise UserError(f"loader skip_batches {skip_batches}: the epoch has only {plan.num_batches} batches")
    if backend == "dali":
        from sslflow.augment.dali_pipeline import DaliLoader

        return DaliLoader(plan, cfg, state)
    from sslflow.augment.torchvision_loader import TorchvisionLoader

    return TorchvisionLoader(plan, cfg)


def in_channels(params, shards_dir: Path | str = paths.SHARDS) -> int:
    """Channels the backbone gets: augment.channels, or the manifest's when 'auto' (1 grey, 3 colour)."""
    return _channels(params.augment, _manifest(Path(shards_dir)))


def threads_per_rank() -> int:
    """This process's share of the machine's cores: torchrun starts LOCAL_WORLD_SIZE ranks on it, each with a loader.

    Every rank taking all the cores would put ranks x cores threads on them.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def pick_backend(requested: str) -> str:
    """'auto' means DALI whenever it can be imported; asking for DALI without it is an error."""
    available = importlib.util.find_spec("nvidia.dali") is not None
    if requested == "dali" and not available:
        raise UserError("augment.backend: dali is not installed (pip install nvidia-dali-cuda130), or use torchvision")
    if requested == "auto":
        return "dali" if available else "torchvision"
    return requested


def _select(plan: Plan, params, keys, exclude, backend: str, manifest: dict) -> None:
    """Fill in what the plan reads: exemplar patches, a keyed subset, or the whole split."""
    if plan.kind == "exemplar":
        if keys is not None:
            raise UserError("loader keys: the exemplar view draws its own patches; keys do not apply")
        from sslflow.augment.exemplar import surrogate_patches

        ex = params.augment.exemplar
        plan.patches = surrogate_patches(ex, params.seed, plan.channels, plan.shards_dir, manifest, exclude)
        plan.total = ex.classes * ex.copies
        return
    if keys is not None or exclude is not None or backend == "torchvision":
        plan.catalogue = load_catalogue(plan.shards_dir, plan.split)
        if keys is not None or exclude is not None:
            wanted = set(plan.catalogue.keys if keys is None else keys) - set(exclude or ())
            plan.positions = plan.catalogue.positions(wanted)
            plan.total = len(plan.positions)
        else:
            plan.total = len(plan.catalogue)
        return
    plan.total = sum(shard_counts(plan.shards_dir, plan.split))


def _manifest(shards_dir: Path) -> dict:
    from sslflow.data.manifest import load_manifest

    return load_manifest(shards_dir)


def _channels(cfg, manifest: dict) -> int:
    return int(manifest["channels"]) if cfg.channels == "auto" else int(cfg.channels)


def _per_channel(values: list[float], channels: int, key: str) -> tuple[float, ...]:
    if len(values) == channels:
        return tuple(values)
    if len(values) == 1:
        return tuple(values) * channels
    raise UserError(f"{key}: {len(values)} values for {channels}-channel views; give 1 or {channels}")
