"""Feature extraction over real shards, and the refusal of features made by another encoder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sslflow.data.read import iter_samples
from sslflow.errors import UserError
from sslflow.eval.features import load_features
from tests.eval.conftest import in_project, new_project


def val_samples(project: Path) -> dict[str, tuple[bytes, int]]:
    return {key: (image, label) for key, image, _, label in iter_samples(project / "data" / "shards", "val")}


def test_every_val_key_exactly_once_with_its_label(eval_project):
    features = load_features(eval_project / "data/features/random_init/val.npz", fingerprint=None, method="random_init")
    expected = val_samples(eval_project)
    keys = features.keys.tolist()
    assert len(keys) == len(set(keys)) == len(expected) == 200
    assert set(keys) == set(expected)
    assert [expected[k][1] for k in keys] == features.labels.tolist()
    assert features.features.shape == (200, 128) and features.features.dtype == np.float32
    assert np.isfinite(features.features).all() and features.features.std() > 0


def test_features_record_the_encoder_that_made_them(eval_project):
    import torch

    payload = torch.load(eval_project / "models/random_init/encoder.pt", weights_only=True)
    features = load_features(
        eval_project / "data/features/random_init/train.npz", fingerprint=None, method="random_init"
    )
    assert features.fingerprint == payload["fingerprint"]
    assert features.backbone == payload["backbone_name"] and features.params_m == payload["params_m"]
    assert len(features.keys) == 1000


def test_raw_pixel_features_are_the_normalised_pixels(eval_project):
    """raw_pixels' features, recomputed from the stored raw pixels: (pixel / 255 - mean) / std."""
    import yaml

    augment = yaml.safe_load((eval_project / "params.yaml").read_text())["augment"]
    features = load_features(eval_project / "data/features/raw_pixels/val.npz", fingerprint=None, method="raw_pixels")
    samples = val_samples(eval_project)
    pixels = np.stack([np.frombuffer(samples[k][0], np.uint8).astype(np.float32) for k in features.keys.tolist()])
    expected = (pixels / 255.0 - augment["mean"][0]) / augment["std"][0]
    np.testing.assert_allclose(features.features, expected, atol=1e-5)


def test_missing_features_name_the_stage_to_run(tmp_path):
    with pytest.raises(
        UserError, match=r"simclr/train.npz: features not found \(run `sslflow extract --method simclr` first\)"
    ):
        load_features(tmp_path / "simclr/train.npz", fingerprint="abc", method="simclr")


def test_stale_features_are_refused_with_exit_code_2(tmp_path, tiny_project, eval_project):
    """Features of one random_init encoder, then a new encoder (another seed): `linear` must refuse them."""
    project = new_project(tmp_path / "project", tiny_project)
    shutil.copytree(eval_project / "data/features/random_init", project / "data/features/random_init")
    from sslflow.params import load_params
    from sslflow.stages import pretrain

    in_project(project, pretrain.run, load_params(project / "params.yaml", ["seed=1"]), "random_init")
    done = subprocess.run(
        [sys.executable, "-m", "sslflow", "linear", "--method", "random_init"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        "sslflow linear: error: data/features/random_init/train.npz: stale features: extracted with encoder "
    )
    assert "(run `sslflow extract --method random_init`)" in done.stderr
    assert not (project / "metrics/random_init/linear.json").exists()


def test_head_layers_take_simclr_v2_features_from_its_first_head_layer(tmp_path, tiny_project):
    """A 3-layer head (hidden width 48): head_layers=1 gives 48-d features; a headless encoder keeps its backbone."""
    from sslflow.models.backbone import build_backbone
    from sslflow.models.encoder import save_encoder
    from sslflow.models.heads import head_cfg, projection_head
    from sslflow.params import load_params
    from sslflow.stages import extract

    project = new_project(tmp_path / "project", tiny_project)
    params = load_params(project / "params.yaml", ["eval.extract.head_layers=1", "eval.extract.dtype=float16"])
    backbone = build_backbone(params.model, 1)
    cfg = head_cfg(backbone.out_dim, 48, 16, 3)
    common = dict(
        model_cfg=params.model,
        in_channels=1,
        image_size=params.augment.size,
        backbone=backbone,
        out_dim=backbone.out_dim,
        backbone_name="test backbone",
        params_m=0.5,
    )
    save_encoder(
        project / "models/simclr_v2/encoder.pt", method="simclr_v2", head=projection_head(**cfg), head_cfg=cfg, **common
    )
    save_encoder(project / "models/rotation/encoder.pt", method="rotation", **common)
    for method, dim, kept in (("simclr_v2", 48, 1), ("rotation", backbone.out_dim, 0)):
        in_project(project, extract.run, params, method)
        features = load_features(project / f"data/features/{method}/val.npz", fingerprint=None, method=method)
        assert features.features.shape == (200, dim) and features.features.dtype == np.float16
        assert features.head_layers == kept
    # after BatchNorm + ReLU: non-negative, and not all zero
    v2 = load_features(project / "data/features/simclr_v2/train.npz", fingerprint=None, method="simclr_v2").features
    assert (v2 >= 0).all() and (v2 > 0).mean() > 0.2
