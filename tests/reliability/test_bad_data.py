"""Bad data that tests/data does not already feed to the real stages.

Already covered, not repeated here: truncated JPEG, non-image, zero-byte file,
corrupt PNG, dangling link, with `on_bad_image: skip` too
(tests/data/test_shard_errors.py); a tar truncated mid-member and a changed byte
(sha256 no longer the manifest's) reported by `sslflow shard --verify`
(tests/data/test_shard_verify.py); stale features refused by load_features
(tests/eval/test_features.py, in-process). Here: CMYK JPEG and PNG-named-.JPEG
(stored, by design), a truncated shard and stale features as the pipeline's later
stages meet them, through the CLI.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from sslflow.data.read import iter_samples
from tests.conftest import make_project
from tests.data.imagetrees import jpeg_bytes, make_imagenet, png_bytes, write

from .conftest import METHOD, copy_outputs, new_project, one_error_line, snapshot, sslflow


def test_cmyk_jpeg_stored_as_png_and_png_named_jpeg_kept_as_png(tmp_path):
    root = make_imagenet(tmp_path / "src")
    write(root / "train/n01440764/n01440764_20000.JPEG", jpeg_bytes(7, mode="CMYK"))
    png = write(root / "train/n01443537/n01443537_20001.JPEG", png_bytes(8)).read_bytes()
    project = make_project(tmp_path / "p", {"source": str(root), "layout": "imagenet", "class_names": None})

    sslflow(project, "shard", check=True)
    manifest = json.loads((project / "data/shards/manifest.json").read_text())
    assert manifest["skipped"] == []
    samples = {key: (ext, data) for key, data, ext, _ in iter_samples(project / "data/shards", "train")}
    ext, data = samples["n01440764_20000"]
    assert ext == "png"
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGB" and image.size == (64, 48)
    assert samples["n01443537_20001"] == ("png", png)  # the very bytes, under the extension they are
    assert sslflow(project, "shard", "--verify").returncode == 0


def test_extract_refuses_a_shard_truncated_mid_member(tmp_path, tiny_project, trained_project):
    """A tar cut inside an image: extract stops with one line naming the shard and writes no features."""
    project = tmp_path / "p"
    (project / "data").mkdir(parents=True)
    copy_outputs(tiny_project, project, ["data/shards"])
    copy_outputs(trained_project, project, [f"models/{METHOD}/encoder.pt"])
    (project / "params.yaml").write_text((trained_project / "params.yaml").read_text())
    tar = project / "data/shards/val/shard-000001.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2 + 100])  # inside a member's data, as a half-copied file

    message = one_error_line(sslflow(project, "extract", "--method", METHOD), "sslflow extract")
    assert message.startswith("data/shards/val/shard-000001.tar: "), message
    assert snapshot(project, [f"data/features/{METHOD}"]) == {f"data/features/{METHOD}": None}
    assert not list((project / "data/features").glob(".*"))


def test_linear_refuses_features_of_another_encoder(tmp_path, tiny_project, trained_project):
    """Features left from an earlier encoder (the encoder retrained since): linear refuses, writes nothing."""
    project = new_project(tmp_path / "p", tiny_project)
    copy_outputs(trained_project, project, [f"data/features/{METHOD}"])
    sslflow(project, "pretrain", "--method", METHOD, "-S", "pretrain.rotation.max_steps=3", check=True)

    message = one_error_line(sslflow(project, "linear", "--method", METHOD), "sslflow linear")
    assert message.startswith(f"data/features/{METHOD}/train.npz: stale features: extracted with encoder "), message
    assert message.endswith(f"(run `sslflow extract --method {METHOD}`)")
    assert not (project / f"metrics/{METHOD}/linear.json").exists()
    assert np.load(project / f"data/features/{METHOD}/train.npz")["features"].shape[0] == 1000  # left as it was
