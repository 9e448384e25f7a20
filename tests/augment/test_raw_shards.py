"""Raw shards give the loaders the same pixels as PNG shards of the same images, with no decode.

The probe images (64 x 64 RGB PNGs) are small enough to be stored raw; sharded
a second time with the raw limit set to 0 they are stored as the PNGs they are.
Every view is seeded per sample, so each backend must give identical tensors
from both: the raw path changes where pixels come from, nothing after.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from sslflow.augment.loader import make_loader
from sslflow.data import encode
from sslflow.data.manifest import load_manifest
from sslflow.data.read import iter_samples
from tests.augment.conftest import BACKENDS, collect, params_in, probe_params
from tests.conftest import make_project, shard_in


@pytest.fixture(scope="module")
def png_probe_project(probe_project, tmp_path_factory) -> Path:
    source = yaml.safe_load((probe_project / "params.yaml").read_text())["data"]["source"]
    project = make_project(
        tmp_path_factory.mktemp("png-probe") / "project",
        {"source": source, "layout": "imagefolder", "class_names": None},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encode, "RAW_MAX_SIDE", 0)
        shard_in(project)
    return project


def test_probe_shards_raw_and_png(probe_project, png_probe_project):
    raw = load_manifest(probe_project / "data/shards")
    png = load_manifest(png_probe_project / "data/shards")
    assert (raw["encoding"], raw["shape"]) == ("raw", [64, 64, 3])
    assert (png["encoding"], png["shape"]) == ("encoded", None)
    assert {ext for _, _, ext, _ in iter_samples(probe_project / "data/shards", "val")} == {"raw"}
    assert {ext for _, _, ext, _ in iter_samples(png_probe_project / "data/shards", "val")} == {"png"}


def views(project: Path, backend: str, kind: str, split: str = "train", keys=None, *overrides: str) -> dict:
    """Every batch of an unshuffled loader over `project`'s shards (a keyed subset when `keys`)."""
    params = params_in(project, *probe_params(f"augment.backend={backend}", *overrides))
    loader = make_loader(
        params,
        kind=kind,
        split=split,
        batch_size=8,
        keys=keys,
        shuffle=False,
        drop_last=False,
        shards_dir=project / "data/shards",
    )
    return collect(loader)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["eval", "simclr", "relpos", "rotation"])
def test_same_views_from_raw_and_png_shards(probe_project, png_probe_project, backend, kind):
    """eval reads the whole val split through the shard reader; the training views a keyed train subset."""
    if kind == "eval":
        args = ("val",)
    else:
        keys = sorted(k for k, *_ in iter_samples(probe_project / "data/shards", "train"))[:16]
        args = ("train", keys, f"augment.simclr.ops={_OPS}")
    raw, png = views(probe_project, backend, kind, *args), views(png_probe_project, backend, kind, *args)
    assert raw.keys() == png.keys()
    for name in raw:
        same = torch.equal(raw[name], png[name]) if torch.is_tensor(raw[name]) else raw[name] == png[name]
        assert same, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_rgb_to_the_channels_asked_for(probe_project, backend):
    """augment.channels=1 on an RGB source: the luma of the raw pixels, within rounding to uint8."""
    grey = views(probe_project, backend, "eval", "val", None, "augment.channels=1")["image"]
    rgb = views(probe_project, backend, "eval", "val")["image"]
    assert grey.shape[1] == 1 and rgb.shape[1] == 3
    luma = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    assert (grey - luma).abs().max() * 255 <= 1.5


# crops, flips, colour and blur: every random op reads the pixels, so any difference in them shows
_OPS = "[{op: random_resized_crop, scale: [0.2, 1.0]}, {op: flip}, {op: color_jitter}, {op: gaussian_blur}]"
