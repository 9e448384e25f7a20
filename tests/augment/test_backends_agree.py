"""DALI and torchvision run the same spec: their views agree in distribution, and grey sources pass every op.

Agreement is judged on what the augmentation does to each image (shift of its
mean, ratio of its std, mean absolute pixel change, against the un-augmented
image) over the 1,000
tiny-project train images, the same images on both sides:
a two-sample Kolmogorov-Smirnov test must not reject at p = 0.001, and the
means of the statistics must lie within 4 standard errors of each other.
At n = 1,000 this catches a colour-jitter strength of 0.7 against 0.5; finer
differences (crop scale 0.2 against 0.3) are below its power, which is why
each op also has an exact test of its own in test_op_statistics. The
backends differ only in details neither test should see: rounding happens
in uint8 in DALI and in float in torchvision, and DALI's saturation scales S
in HSV where torchvision blends with the grey image. Both apply the jitter
factors in a random order and pivot contrast on each image's own mean.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import ks_2samp

from sslflow.augment.loader import make_loader
from tests.augment.conftest import BACKENDS, collect, params_in

ALL_OPS = (
    "[{op: random_resized_crop, scale: [0.2, 1.0]}, {op: flip}, {op: color_jitter}, {op: grayscale},"
    " {op: gaussian_blur}, {op: rotate}, {op: cutout}, {op: gaussian_noise}, {op: sobel, p: 0.2}]"
)


def view_stats(project, backend: str, *overrides: str) -> torch.Tensor:
    """Per image: view mean minus source mean, and log of view std over source std.

    Both backends read the same images in the same order (unshuffled), so taking
    each source's own statistics out leaves what the augmentation did, without
    the much larger spread between images.
    """
    params = params_in(project, f"augment.backend={backend}", *overrides)
    views = _flat(params, "simclr", "view1")
    sources = _flat(params, "eval", "image")
    mean_shift = views.mean(dim=1) - sources.mean(dim=1)
    log_std_ratio = torch.log(views.std(dim=1) + 1e-3) - torch.log(sources.std(dim=1) + 1e-3)
    change = (views - sources).abs().mean(dim=1)  # geometry and colour together
    return torch.stack([mean_shift, log_std_ratio, change], dim=1).double()


def _flat(params, kind: str, name: str) -> torch.Tensor:
    loader = make_loader(params, kind=kind, batch_size=100, shuffle=False, drop_last=False)
    return collect(loader)[name].flatten(1)


def assert_same_distribution(a: torch.Tensor, b: torch.Tensor) -> None:
    for column, name in enumerate(("mean shift", "log std ratio", "mean absolute change")):
        x, y = a[:, column], b[:, column]
        assert ks_2samp(x.numpy(), y.numpy()).pvalue > 1e-3, f"per-view {name}: distributions differ"
        standard_error = math.sqrt(x.var() / len(x) + y.var() / len(y))
        assert abs(x.mean() - y.mean()) < 4 * standard_error, f"per-view {name}: {x.mean():.4f} vs {y.mean():.4f}"


@pytest.mark.parametrize(
    "overrides",
    [
        (),  # the Fashion-MNIST SimCLR profile of params.yaml
        ("augment.channels=3", f"augment.simclr.ops={ALL_OPS}"),  # every op, grey replicated to RGB
    ],
    ids=["fmnist-simclr", "rgb-every-op"],
)
def test_dali_and_torchvision_views_agree_in_distribution(tiny_project, monkeypatch, overrides):
    monkeypatch.chdir(tiny_project)
    dali, tv = (view_stats(tiny_project, backend, *overrides) for backend in BACKENDS)
    assert len(dali) == len(tv) == 1000
    assert_same_distribution(dali, tv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grey_sources_pass_every_op(tiny_project, monkeypatch, backend):
    monkeypatch.chdir(tiny_project)
    params = params_in(tiny_project, f"augment.backend={backend}", f"augment.simclr.ops={ALL_OPS}")
    batch = next(iter(make_loader(params, kind="simclr", batch_size=64)))
    assert batch["view1"].shape == (64, 1, 28, 28) and torch.isfinite(batch["view1"]).all()
    # forced to 3 channels, a grey image stays grey through crop, flip, jitter, grayscale and blur
    colour_ops = (
        "[{op: random_resized_crop}, {op: flip}, {op: color_jitter, p: 1.0}, {op: grayscale}, {op: gaussian_blur}]"
    )
    params = params_in(
        tiny_project, f"augment.backend={backend}", "augment.channels=3", f"augment.simclr.ops={colour_ops}"
    )
    view = next(iter(make_loader(params, kind="simclr", batch_size=64)))["view1"]
    assert view.shape == (64, 3, 28, 28)
    assert (view[:, 0] - view[:, 1]).abs().max() < 0.05 and (view[:, 1] - view[:, 2]).abs().max() < 0.05
