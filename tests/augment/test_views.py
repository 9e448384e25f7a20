"""The method-specific view makers: rotation targets, relative-position targets, exemplar surrogate classes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from sslflow.augment.exemplar import ARTEFACT
from sslflow.augment.loader import make_loader
from sslflow.augment.views import NEIGHBOURS
from sslflow.data.read import iter_samples
from tests.augment.conftest import BACKENDS, collect, params_in, probe_params, to_pixels


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_targets_match_the_pixels(probe_project, monkeypatch, backend):
    monkeypatch.chdir(probe_project)
    params = params_in(
        probe_project, f"augment.backend={backend}", *probe_params("augment.rotation.ops=[{op: flip, p: 0.5}]")
    )
    batch = next(iter(make_loader(params, kind="rotation", batch_size=20)))
    x, target = to_pixels(batch["image"], params), batch["target"]
    quarters = x.split(20)
    for k in range(4):
        assert (target[20 * k : 20 * (k + 1)] == k).all()
        assert torch.equal(quarters[k], torch.rot90(quarters[0], k, dims=(2, 3)))
    # independently of rot90: a quarter turn counter-clockwise sends the left edge (small red) to the bottom
    red = quarters[1][:, 0]
    unflipped = quarters[0][:, 0, 0, 0] < quarters[0][:, 0, 0, -1]
    assert (red[unflipped, -1, :].mean(dim=1) < red[unflipped, 0, :].mean(dim=1)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_relpos_targets_match_the_patch_offsets(probe_project, monkeypatch, backend):
    monkeypatch.chdir(probe_project)
    grid = "{grid: 64, patch: 14, gap: 6, jitter: 3, colour_drop: 0.0, projection: false}"
    params = params_in(probe_project, f"augment.backend={backend}", *probe_params(f"augment.relpos={grid}"))
    got = collect(make_loader(params, kind="relpos", batch_size=40, drop_last=False))
    centre, neighbour = to_pixels(got["center"], params), to_pixels(got["neighbour"], params)
    # the mean ramp value of a patch is 4 x (its centre coordinate): offsets in pixels, read from the pixels
    dx = (neighbour[:, 0].mean(dim=(1, 2)) - centre[:, 0].mean(dim=(1, 2))) / 4
    dy = (neighbour[:, 1].mean(dim=(1, 2)) - centre[:, 1].mean(dim=(1, 2))) / 4
    step, jitter = 14 + 6, 3
    expected = torch.tensor([NEIGHBOURS[t] for t in got["target"].tolist()], dtype=torch.float32)
    assert ((dy - expected[:, 0] * step).abs() <= 2 * jitter + 0.01).all()
    assert ((dx - expected[:, 1] * step).abs() <= 2 * jitter + 0.01).all()
    # centre patches sit in the middle cell, within the grid's free placement and the jitter
    cx = centre[:, 0].mean(dim=(1, 2)) / 4
    assert ((cx - 32).abs() <= (64 - (3 * 14 + 2 * 6 + 2 * 3)) / 2 + jitter + 0.01).all()
    counts = Counter(got["target"].tolist())
    assert set(counts) == set(range(8)) and max(counts.values()) <= 40  # 120 draws, ~15 per label


@pytest.mark.parametrize("backend", BACKENDS)
def test_relpos_colour_dropping_keeps_one_channel(probe_project, monkeypatch, backend):
    monkeypatch.chdir(probe_project)
    grid = "{grid: 64, patch: 14, gap: 6, jitter: 3, colour_drop: 1.0, projection: false}"
    params = params_in(
        probe_project,
        f"augment.backend={backend}",
        *probe_params(f"augment.relpos={grid}", "augment.mean=[0.1]", "augment.std=[0.25]"),
    )
    centre = to_pixels(next(iter(make_loader(params, kind="relpos", batch_size=40)))["center"], params)
    # a dropped channel is the mean (25.5) plus noise of 1/100 of the std (0.64 levels); a kept one is
    # a ramp spanning 56 levels, or the blue constant (40 or more)
    dropped = (centre - 25.5).abs().amax(dim=(2, 3)) < 4
    assert (dropped.sum(dim=1) == 2).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_exemplar_classes_are_stored_patches_copied_k_times(tiny_project, tmp_path, monkeypatch, backend):
    monkeypatch.chdir(tmp_path)  # the artefact is written under the working directory's models/
    (tmp_path / "params.yaml").write_text((tiny_project / "params.yaml").read_text())
    shards = tiny_project / "data" / "shards"
    ex = ["augment.exemplar.classes=30", "augment.exemplar.copies=3", "augment.exemplar.patch=20"]
    params = params_in(tmp_path, f"augment.backend={backend}", *ex)
    got = collect(make_loader(params, kind="exemplar", batch_size=16, drop_last=False, shards_dir=shards))
    assert Counter(got["target"].tolist()) == {c: 3 for c in range(30)}
    stored = np.load(ARTEFACT)
    assert stored["patches"].shape == (30, 20, 20, 1)
    # every patch is a crop of the image it names, and patches come from distinct images
    images = {key: np.frombuffer(data, np.uint8).reshape(28, 28) for key, data, _, _ in iter_samples(shards, "train")}
    assert len(set(stored["keys"].tolist())) == 30
    for patch, key in zip(stored["patches"][:, :, :, 0], stored["keys"]):
        image = images[str(key)]
        windows = np.lib.stride_tricks.sliding_window_view(image, (20, 20))
        assert (windows == patch).all(axis=(2, 3)).any()
    # the draw is seeded: a second loader reuses the stored file untouched
    before = ARTEFACT.stat().st_mtime_ns
    make_loader(params, kind="exemplar", batch_size=16, shards_dir=shards)
    assert ARTEFACT.stat().st_mtime_ns == before
    # a different draw (another seed) replaces it
    make_loader(
        params_in(tmp_path, f"augment.backend={backend}", "seed=1", *ex),
        kind="exemplar",
        batch_size=16,
        shards_dir=shards,
    )
    assert not np.array_equal(np.load(ARTEFACT)["keys"], stored["keys"])
