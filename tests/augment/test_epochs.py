"""Epoch after epoch from one loader: every epoch whole, each rank's slice rotating as the plan says, one
DALI pipeline per run, and a state that a new loader resumes from batch for batch."""

from __future__ import annotations

import pytest
import torch

from sslflow.augment.loader import make_loader
from sslflow.data.read import iter_samples, read_subset
from tests.augment.conftest import BACKENDS, collect, params_in

B = 32


@pytest.fixture
def fm(tiny_project, monkeypatch):
    monkeypatch.chdir(tiny_project)
    return tiny_project


def keys_of(selection: str) -> list[str] | None:
    return None if selection == "split" else read_subset("10pct", "data/shards")  # 100 of 1,000


def epochs(loader, n: int) -> list[list[dict]]:
    """n epochs' batches, each epoch from the previous one's `next_epoch()`."""
    out = []
    for _ in range(n):
        out.append(list(loader))
        loader = loader.next_epoch()
    return out


def same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("selection", ["split", "keyed"])
def test_every_epoch_reads_every_sample_once_in_a_new_order(fm, selection, drop_last):
    """drop_last leaves a partial batch unread (1,000 and 100 are no multiples of 24): the next epoch
    still starts at its own beginning, not with what the last one left."""
    params = params_in(fm, "augment.backend=dali")
    keys = keys_of(selection)
    loader = make_loader(params, kind="eval", batch_size=24, keys=keys, drop_last=drop_last)  # shuffled
    orders = [collect(loader)["key"] for loader in _chain(loader, 3)]
    expected = sorted(keys) if keys else sorted(s[0] for s in iter_samples("data/shards", "train"))
    for order in orders:
        if drop_last:
            assert len(set(order)) == len(order) == len(expected) // 24 * 24 and set(order) <= set(expected)
        else:
            assert sorted(order) == expected
    assert orders[0] != orders[1] and orders[1] != orders[2]


def test_each_epoch_reads_the_slice_the_plan_gives_the_rank(fm):
    """Three ranks over 1,000 images (333, 333, 334): the pipeline's own rotation matches a loader made for the epoch."""
    params = params_in(fm, "augment.backend=dali")
    common = dict(kind="eval", batch_size=50, rank=0, world_size=3, drop_last=False)
    chained = [collect(loader)["key"] for loader in _chain(make_loader(params, **common), 3)]
    fresh = [collect(make_loader(params, epoch=epoch, **common))["key"] for epoch in range(3)]
    assert [sorted(keys) for keys in chained] == [sorted(keys) for keys in fresh]
    assert [len(keys) for keys in chained] == [333, 333, 334]


def test_a_run_builds_one_pipeline(fm, monkeypatch):
    import sslflow.augment.dali_pipeline as dali

    built = []
    real = dali.build_pipeline
    monkeypatch.setattr(dali, "build_pipeline", lambda *args, **kwargs: built.append(1) or real(*args, **kwargs))
    params = params_in(fm, "augment.backend=dali")
    assert [len(epoch) for epoch in epochs(make_loader(params, kind="simclr", batch_size=B), 3)] == [1000 // B] * 3
    assert len(built) == 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("selection", ["split", "keyed"])
@pytest.mark.parametrize("skip", [0, 2], ids=["at-an-epoch-end", "mid-epoch"])
def test_a_loader_made_from_the_state_goes_on_as_the_first_would(fm, backend, selection, skip):
    """Random crops and flips, drop_last (the keyed 100 leave a partial batch unread each epoch): a loader
    stopped after epoch 0 and `skip` batches of epoch 1, and one made from its state, give the batches of an
    unbroken run."""
    params = params_in(fm, f"augment.backend={backend}")
    common = dict(kind="supervised", batch_size=B, keys=keys_of(selection))
    straight = epochs(make_loader(params, **common), 3)

    first = make_loader(params, **common)
    assert same(list(first), straight[0])
    if skip:
        first = first.next_epoch()
        stream = iter(first)
        assert same([next(stream) for _ in range(skip)], straight[1][:skip])
    resumed = make_loader(params, epoch=1, skip_batches=skip, state=first.state(), **common)
    assert same(list(resumed), straight[1][skip:])
    assert same(list(resumed.next_epoch()), straight[2])


def _chain(loader, n: int):
    for _ in range(n):
        yield loader
        loader = loader.next_epoch()
