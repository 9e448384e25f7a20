"""Exported encoders to test against: an ImageNet-profile ResNet-50 (random weights, no data needed) and the
tiny Fashion-MNIST project's untrained encoder (and raw pixels) at the CPU profile's defaults (4x4 pool, float16 features,
the precision `train.precision: auto` picks here), with its features extracted by the real stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.eval.conftest import in_project

FMNIST_METHODS = ("random_init", "raw_pixels")  # a network and the control whose "network" is a Flatten
R50_SIZE = 64  # the ImageNet profile's network at a smaller input: same names and layers, seconds not minutes


@pytest.fixture(scope="session")
def r50_project(tmp_path_factory) -> Path:
    """A project holding only models/simclr/encoder.pt: a ResNet-50 (ImageNet stem, 1x) with random weights."""
    import torch

    from sslflow.models.backbone import build_backbone, count_params_m, describe
    from sslflow.models.config import ModelCfg
    from sslflow.models.encoder import save_encoder

    project = tmp_path_factory.mktemp("r50-project")
    params = yaml.safe_load((REPO / "params" / "imagenet-r50.yaml").read_text())
    params["augment"]["size"] = R50_SIZE
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    torch.manual_seed(0)
    cfg = ModelCfg(**{**params["model"], "zero_init_residual": False})  # every block contributes
    backbone = build_backbone(cfg, 3)
    for module in backbone.modules():  # BN statistics away from 0 / 1, so eval-mode BN is exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    save_encoder(
        project / "models/simclr/encoder.pt",
        method="simclr",
        model_cfg=cfg,
        in_channels=3,
        image_size=R50_SIZE,
        backbone=backbone,
        out_dim=backbone.out_dim,
        backbone_name=describe(cfg),
        params_m=count_params_m(backbone),
    )
    return project


def export_in(project: Path, *args: str) -> None:
    from sslflow.params import load_params
    from sslflow.stages import export

    def run():
        export.run(load_params("params.yaml", []), *args)

    in_project(project, run)


@pytest.fixture(scope="session")
def r50_export(r50_project) -> Path:
    export_in(r50_project, ["simclr"])
    return r50_project / "exports/simclr"


@pytest.fixture(scope="session")
def fmnist_project(tmp_path_factory, tiny_project) -> Path:
    """The tiny shards with the CPU profile's model and features; random_init pretrained, extracted, exported."""
    from sslflow.params import load_params
    from sslflow.stages import extract, pretrain

    project = tmp_path_factory.mktemp("fmnist-export")
    (project / "data").mkdir()
    (project / "data" / "shards").symlink_to(tiny_project / "data" / "shards")
    (project / "params.yaml").write_text((tiny_project / "params.yaml").read_text())

    def run():
        params = load_params("params.yaml", [])
        for method in FMNIST_METHODS:
            pretrain.run(params, method)
            extract.run(params, method)

    in_project(project, run)
    export_in(project, list(FMNIST_METHODS))
    return project
