"""Each op does what the spec says, measured on the outputs of both backends.

Rates are checked within 4.5 binomial standard errors (a false alarm about once
in 150,000 runs); geometry is read back from the probe images' coordinate
ramps (red = 4 (x + 0.5), green = 4 (y + 0.5)).
"""

from __future__ import annotations

import math

import pytest
import torch

from sslflow.augment.loader import make_loader
from tests.augment.conftest import BACKENDS, PROBE_SIDE, collect, params_in, probe_params, to_pixels


def probe_views(project, backend, ops: str, n: int = 240, *extra: str) -> torch.Tensor:
    """n supervised views of the probe images (120 train images, several epochs), as 0-255 pixels."""
    params = params_in(project, f"augment.backend={backend}", *probe_params(f"augment.supervised.ops={ops}", *extra))
    views, epoch = [], 0
    while sum(len(v) for v in views) < n:
        views.append(collect(make_loader(params, kind="supervised", batch_size=40, epoch=epoch))["image"])
        epoch += 1
    return to_pixels(torch.cat(views)[:n], params)


def assert_rate(observed: float, p: float, n: int) -> None:
    tolerance = 4.5 * math.sqrt(p * (1 - p) / n)
    assert abs(observed - p) <= tolerance, f"rate {observed:.3f}, expected {p} +- {tolerance:.3f}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_flip_rate_matches_p(probe_project, monkeypatch, backend):
    monkeypatch.chdir(probe_project)
    x = probe_views(probe_project, backend, "[{op: flip, p: 0.3}]", 360)
    red = x[:, 0].mean(dim=1)  # (n, W): the x-coordinate ramp along a row
    flipped = red[:, 0] > red[:, -1]
    assert_rate(flipped.float().mean().item(), 0.3, len(x))
    # a flip mirrors the ramp exactly: 4 (W - 1 - x) + 2
    ramp = 4 * torch.arange(PROBE_SIDE, dtype=torch.float32) + 2
    assert torch.allclose(red[flipped], ramp.flip(0).expand(int(flipped.sum()), -1), atol=0.6)
    assert torch.allclose(red[~flipped], ramp.expand(int((~flipped).sum()), -1), atol=0.6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grayscale_rate_and_luma(probe_project, monkeypatch, backend):
    monkeypatch.chdir(probe_project)
    x = probe_views(probe_project, backend, "[{op: grayscale, p: 0.4}]", 360)
    grey = (x.max(dim=1).values - x.min(dim=1).values).amax(dim=(1, 2)) < 1.5
    assert_rate(grey.float().mean().item(), 0.4, len(x))
    # ITU-R 601 luma of the probe (red ramp, green ramp, blue constant), independently computed
    from tests.augment.conftest import probe_pixels

    g = x[grey][:, 0]
    blues = [int(round(v)) for v in x[~grey][:, 2, 0, 0].tolist()]
    assert len(set(blues)) > 1
    coloured = torch.stack([torch.from_numpy(probe_pixels(b)).float() for b in range(40, 160)])
    luma = coloured @ torch.tensor([0.299, 0.587, 0.114])
    best = (g[:, None] - luma[None]).abs().amax(dim=(2, 3)).min(dim=1).values
    assert (best <= 1.5).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_crop_area_and_aspect_stay_in_range_and_spread(probe_project, monkeypatch, backend):
    monkeypatch.chdir(probe_project)
    ops = "[{op: random_resized_crop, scale: [0.25, 0.75], ratio: [0.5, 2.0]}]"
    x = probe_views(probe_project, backend, ops, 360, "augment.size=32")
    side = x.shape[-1]
    red, green = x[:, 0].mean(dim=1), x[:, 1].mean(dim=2)  # along a row, along a column
    # ramp values at the first and last output pixel centres span (side - 1) / side of the crop
    width = (red[:, -1] - red[:, 0]) / 4 * side / (side - 1)
    height = (green[:, -1] - green[:, 0]) / 4 * side / (side - 1)
    area = width * height / PROBE_SIDE**2
    aspect = width / height
    assert area.min() >= 0.25 - 0.03 and area.max() <= 0.75 + 0.03
    assert aspect.min() >= 0.5 * 0.93 and aspect.max() <= 2.0 * 1.07
    # spread: both ends of each range are reached, and the area is roughly uniform
    assert area.min() < 0.32 and area.max() > 0.68
    assert aspect.min() < 0.6 and aspect.max() > 1.65
    assert 0.42 <= area.mean() <= 0.55


@pytest.mark.parametrize("backend", BACKENDS)
def test_blur_lowers_high_frequency_energy_at_rate_p(tiny_project, monkeypatch, backend):
    monkeypatch.chdir(tiny_project)

    def views(ops):
        params = params_in(tiny_project, f"augment.backend={backend}", f"augment.supervised.ops={ops}")
        loader = make_loader(params, kind="supervised", batch_size=100, keys=None, shuffle=False, drop_last=False)
        return collect(loader, 400)["image"][:400, 0]

    def energy(x):  # mean squared Laplacian: the high-frequency content of each image
        lap = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
        return (lap**2).mean(dim=(1, 2))

    sharp = energy(views("[]"))
    blurred = energy(views("[{op: gaussian_blur, p: 0.5, sigma: [1.0, 2.0], kernel_frac: 0.25}]"))
    ratio = blurred / sharp
    lowered = ratio < 0.8
    assert_rate(lowered.float().mean().item(), 0.5, len(ratio))
    assert ratio[lowered].median() < 0.45  # a 7 px window at sigma >= 1 removes most of it
    assert torch.allclose(ratio[~lowered], torch.ones(int((~lowered).sum())), atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cutout_erases_a_square_of_the_mean(probe_project, monkeypatch, backend):
    monkeypatch.chdir(probe_project)
    params = probe_params()
    x = probe_views(probe_project, backend, "[{op: cutout, p: 0.5, size: 0.25}]", 240, "augment.mean=[0.5]")
    filled = (x - 127.5).abs() < 1.0  # the fill is the normalisation mean
    windows = torch.nn.functional.avg_pool2d(filled.all(dim=1, keepdim=True).float(), 16, stride=1)
    erased = windows.amax(dim=(1, 2, 3)) == 1.0
    assert_rate(erased.float().mean().item(), 0.5, len(x))
    assert (
        filled.all(dim=1).sum(dim=(1, 2))[erased] <= 16 * 16 + 2 * 16
    ).all()  # one 16x16 square (+ ramp pixels at 127.5)
    del params


@pytest.mark.parametrize("backend", BACKENDS)
def test_gaussian_noise_has_the_given_std(probe_project, monkeypatch, backend):
    monkeypatch.chdir(probe_project)
    clean = probe_views(probe_project, backend, "[]", 120)
    noisy = probe_views(probe_project, backend, "[{op: gaussian_noise, p: 1.0, std: 0.04}]", 120)
    residual = (noisy - clean)[:, :, 8:-8, 8:-8]  # away from the ramps' ends, where clipping would bias it
    assert abs(residual.std().item() - 0.04 * 255) < 0.06 * 0.04 * 255
    assert abs(residual.mean().item()) < 0.3


@pytest.mark.parametrize("backend", BACKENDS)
def test_sobel_gives_the_gradient_magnitude_of_the_luma(probe_project, monkeypatch, backend):
    monkeypatch.chdir(probe_project)
    x = probe_views(probe_project, backend, "[{op: sobel, p: 1.0}]", 40)
    # luma slope: 4 * 0.299 per px along x, 4 * 0.587 along y; Sobel gain 8; scaled by 1/4
    expected = 8 * 4 * math.hypot(0.299, 0.587) / 4
    interior = x[:, :, 2:-2, 2:-2]
    assert (interior - expected).abs().max() < 1.0
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


@pytest.mark.parametrize(
    "ops, channels",
    [
        ("[{op: gaussian_blur, p: 1.0, sigma: [1.3, 1.3], kernel_frac: 0.25}]", "auto"),  # grey, 7-tap window
        ("[{op: grayscale, p: 1.0}]", "3"),
        ("[{op: sobel, p: 1.0}]", "3"),
    ],
    ids=["blur", "grayscale", "sobel"],
)
def test_deterministic_ops_give_the_same_pixels_on_both_backends(tiny_project, monkeypatch, ops, channels):
    """With the randomness pinned (p = 1, a one-point sigma range) the backends must agree pixel for pixel."""
    monkeypatch.chdir(tiny_project)
    views = []
    for backend in BACKENDS:
        params = params_in(
            tiny_project, f"augment.backend={backend}", f"augment.channels={channels}", f"augment.supervised.ops={ops}"
        )
        loader = make_loader(params, kind="supervised", batch_size=100, shuffle=False, drop_last=False)
        views.append(to_pixels(collect(loader, 200)["image"][:200], params))
    dali, tv = views
    assert (dali - tv).abs().max() <= 1.01  # uint8 rounding in DALI against float in torchvision
    assert (dali - tv).abs().mean() < 0.3
