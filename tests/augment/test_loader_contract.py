"""The loader API: shapes and types per kind, order, keys, rank splits, determinism and resuming, on both backends."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from sslflow.augment.loader import in_channels, make_loader
from sslflow.data.read import iter_samples, read_subset
from sslflow.errors import UserError
from tests.augment.conftest import BACKENDS, collect, params_in

B = 32


@pytest.fixture
def fm(tiny_project, monkeypatch):
    monkeypatch.chdir(tiny_project)
    return tiny_project


def fm_params(project, backend, *overrides):
    return params_in(project, f"augment.backend={backend}", *overrides)


EXPECTED = {
    "simclr": {"view1": (B, 1, 28, 28), "view2": (B, 1, 28, 28), "label": (B,)},
    "rotation": {"image": (4 * B, 1, 28, 28), "target": (4 * B,)},
    "relpos": {"center": (B, 1, 10, 10), "neighbour": (B, 1, 10, 10), "target": (B,)},
    "exemplar": {"image": (B, 1, 28, 28), "target": (B,)},
    "supervised": {"image": (B, 1, 28, 28), "label": (B,)},
    "eval": {"image": (B, 1, 28, 28), "label": (B,)},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(EXPECTED))
def test_batch_shapes_types_and_ranges(fm, backend, kind):
    params = fm_params(fm, backend, "augment.exemplar.classes=50", "augment.exemplar.copies=4")
    loader = make_loader(params, kind=kind, batch_size=B)
    batch = next(iter(loader))
    assert {k: tuple(v.shape) for k, v in batch.items() if k != "key"} == EXPECTED[kind]
    for name, value in batch.items():
        if name in ("label", "target"):
            assert value.dtype == torch.int64
        elif name != "key":
            assert value.dtype == torch.float32 and torch.isfinite(value).all()
    if kind in ("simclr", "supervised", "eval"):
        assert batch["label"].min() >= 0 and batch["label"].max() <= 9
    if kind == "rotation":
        assert torch.equal(batch["target"], torch.arange(4).repeat_interleave(B))
    if kind == "relpos":
        assert batch["target"].min() >= 0 and batch["target"].max() <= 7
    if kind == "exemplar":
        assert batch["target"].min() >= 0 and batch["target"].max() < 50
    if kind == "eval":
        assert len(batch["key"]) == B
    samples = 50 * 4 if kind == "exemplar" else 1000  # surrogate classes x copies, or the train split
    assert len(loader) == samples // B
    assert in_channels(params) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_yields_every_sample_once_in_shard_order_with_its_pixels(fm, backend):
    params = fm_params(fm, backend)
    got = collect(make_loader(params, kind="eval", split="val", batch_size=64, shuffle=False, drop_last=False))
    samples = list(iter_samples("data/shards", "val"))
    assert got["key"] == [s[0] for s in samples]
    assert got["label"].tolist() == [s[3] for s in samples]
    # crop_frac 1.0 at 28 px: the eval view is the image itself, normalised
    pixels = np.stack([np.frombuffer(s[1], np.uint8).reshape(28, 28) for s in samples]).astype(np.float32)
    expected = (torch.from_numpy(pixels) / 255.0 - 0.2860) / 0.3530
    assert torch.allclose(got["image"][:, 0], expected, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keys_restrict_to_the_subset_in_shard_order(fm, backend):
    params = fm_params(fm, backend)
    keys = read_subset("10pct", "data/shards")
    got = collect(make_loader(params, kind="eval", batch_size=16, keys=set(keys), shuffle=False, drop_last=False))
    order = [s[0] for s in iter_samples("data/shards", "train")]
    assert got["key"] == [k for k in order if k in set(keys)]
    labels = {s[0]: s[3] for s in iter_samples("data/shards", "train")}
    assert got["label"].tolist() == [labels[k] for k in got["key"]]
    # a training view of the subset: shuffled, each key once per epoch
    batches = collect(make_loader(params, kind="supervised", batch_size=10, keys=keys, drop_last=False))
    assert len(batches["label"]) == len(keys)
    assert sorted(batches["label"].tolist()) == sorted(labels[k] for k in keys)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ranks_split_the_split_disjointly_and_step_together(fm, backend):
    params = fm_params(fm, backend)
    seen = [
        collect(
            make_loader(
                params, kind="eval", split="val", batch_size=16, rank=r, world_size=3, shuffle=False, drop_last=False
            )
        )["key"]
        for r in range(3)
    ]
    assert sorted(sum(seen, [])) == sorted(s[0] for s in iter_samples("data/shards", "val"))
    assert [len(s) for s in seen] == [66, 67, 67]  # DALI's shard_id slices of 200
    lengths = {len(make_loader(params, kind="simclr", batch_size=16, rank=r, world_size=3, epoch=1)) for r in range(3)}
    assert lengths == {1000 // 3 // 16}


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_gives_identical_batches_and_another_epoch_does_not(fm, backend):
    params = fm_params(fm, backend)

    def first_batches(epoch, n=3):
        loader = iter(make_loader(params, kind="simclr", batch_size=B, epoch=epoch))
        return [next(loader) for _ in range(n)]

    a, b, c = first_batches(0), first_batches(0), first_batches(1)
    for x, y in zip(a, b):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(a[0]["view1"], c[0]["view1"])
    assert not torch.equal(a[0]["view1"], a[0]["view2"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_skip_batches_resumes_at_the_same_batch(fm, backend):
    params = fm_params(fm, backend)
    full = make_loader(params, kind="simclr", batch_size=B, epoch=2)
    batches = [b for _, b in zip(range(5), full)]
    resumed = make_loader(params, kind="simclr", batch_size=B, epoch=2, skip_batches=3)
    assert len(resumed) == len(full) - 3
    again = [b for _, b in zip(range(2), resumed)]
    for x, y in zip(batches[3:5], again):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_bad_requests_are_user_errors(fm):
    params = fm_params(fm, "dali")
    with pytest.raises(UserError, match="kind 'simclr2'"):
        make_loader(params, kind="simclr2", batch_size=8)
    with pytest.raises(UserError, match="skip_batches 99"):
        make_loader(params, kind="simclr", batch_size=256, skip_batches=99)
    with pytest.raises(UserError, match="not in this split"):
        make_loader(params, kind="eval", batch_size=8, keys={"nope_1"})
    with pytest.raises(UserError, match="augment.mean: 3 values for 1-channel"):
        make_loader(fm_params(fm, "dali", "augment.mean=[0.1, 0.2, 0.3]"), kind="eval", batch_size=8)
    with pytest.raises(UserError, match="give no batch of 4096"):
        make_loader(params, kind="simclr", batch_size=4096)


def test_ranks_on_one_machine_share_its_cores(fm, monkeypatch):
    """torchrun's LOCAL_WORLD_SIZE ranks each get cores / ranks DALI threads (1 each for 2 ranks on 2 cores)."""
    from sslflow.augment.dali_pipeline import build_pipeline

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    cores = len(os.sched_getaffinity(0))
    loaders = [make_loader(fm_params(fm, "dali"), kind="simclr", batch_size=B, rank=r, world_size=2) for r in range(2)]
    for loader in loaders:
        assert build_pipeline(loader.plan, loader.cfg).num_threads == max(1, cores // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert make_loader(fm_params(fm, "dali"), kind="simclr", batch_size=B).plan.threads == cores
    assert make_loader(fm_params(fm, "dali", "augment.threads=3"), kind="simclr", batch_size=B).plan.threads == 3


@pytest.mark.parametrize("kind, name", [("simclr", "view1"), ("rotation", "image"), ("eval", "image")])
def test_dali_batches_are_channels_last_and_the_loop_does_not_copy_them(fm, kind, name):
    from sslflow.train.loop import to_device

    params = fm_params(fm, "dali", "augment.channels=3")
    batch = next(iter(make_loader(params, kind=kind, batch_size=B)))
    images = batch[name]
    assert images.shape[1] == 3 and images.is_contiguous(memory_format=torch.channels_last)
    assert to_device(batch, torch.device("cpu"), channels_last=True)[name].data_ptr() == images.data_ptr()
