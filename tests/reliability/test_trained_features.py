"""The features `extract` wrote for the session's trained encoder are that encoder applied to the eval view
of the same image: a few keys of each split, read here from the shard tars with tarfile (raw members as the
manifest's HWC shape, encoded ones with PIL)."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from .conftest import METHOD

KEYS_PER_SPLIT = 6


def decoded(project, split: str, keys: set[str]) -> dict[str, np.ndarray]:
    """{key: (H, W) uint8 grey pixels} of `keys`, read member by member from the split's tars."""
    shape = json.loads((project / "data/shards/manifest.json").read_text()).get("shape")
    found = {}
    for tar in sorted((project / "data/shards" / split).glob("shard-*.tar")):
        with tarfile.open(tar) as archive:
            for member in archive.getmembers():
                key, _, ext = member.name.partition(".")
                if key not in keys:
                    continue
                data = archive.extractfile(member).read()
                if ext == "raw":
                    found[key] = np.frombuffer(data, np.uint8).reshape(shape)[..., 0]
                elif ext in ("png", "jpg"):
                    with Image.open(io.BytesIO(data)) as image:
                        found[key] = np.asarray(image)
    assert set(found) == keys
    return found


@pytest.mark.parametrize("split", ["train", "val"])
def test_features_are_the_trained_encoder_on_the_eval_view(trained_project, split):
    from sslflow.models.encoder import load_encoder
    from sslflow.precision import autocast, use_bf16

    params = yaml.safe_load((trained_project / "params.yaml").read_text())
    augment = params["augment"]
    with np.load(trained_project / f"data/features/{METHOD}/{split}.npz") as npz:
        features, keys = npz["features"], npz["keys"].tolist()
    rows = np.linspace(0, len(keys) - 1, KEYS_PER_SPLIT).astype(int)  # first, last and between
    pixels = decoded(trained_project, split, {keys[i] for i in rows})
    # a 28 px source at augment.size 28 with eval.crop_frac 1: the eval view is the whole image, normalised
    assert augment["size"] == 28 and augment["eval"]["crop_frac"] == 1.0
    assert all(p.shape == (28, 28) for p in pixels.values())
    images = np.stack([pixels[keys[i]] for i in rows]).astype(np.float32)[:, None] / 255.0
    x = torch.from_numpy((images - augment["mean"][0]) / augment["std"][0])

    encoder, _ = load_encoder(trained_project / f"models/{METHOD}/encoder.pt", device="cpu")
    bf16 = use_bf16(params["train"]["precision"], "cpu")
    with torch.inference_mode(), autocast("cpu", bf16):
        expected = encoder(x.contiguous(memory_format=torch.channels_last)).float().numpy()
    with torch.inference_mode():
        exact = encoder(x).float().numpy()
    got = features[rows].astype(np.float32)
    scale = np.abs(exact).max()
    assert scale > 0 and np.abs(exact - exact.mean(0)).max() > 0.1 * scale  # the images give different features
    # at the run's precision (bf16 autocast where the CPU has AMX), to float16 storage's precision
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-3 * scale)
    # and each row is its own image's: closer to it than to any other key's
    distance = np.linalg.norm(got[:, None] - exact[None], axis=2)
    assert (distance.argmin(axis=1) == np.arange(len(rows))).all()
