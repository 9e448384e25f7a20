"""Backbones, heads and the encoder file other stages load."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from sslflow.errors import UserError
from sslflow.models.backbone import build_backbone, count_params_m, describe
from sslflow.models.config import ModelCfg
from sslflow.models.encoder import load_encoder, save_encoder
from sslflow.models.heads import head_cfg, projection_head


def test_full_width_resnet50_is_torchvisions_trunk():
    """Width 1 with the ImageNet stem: the same parameter count as torchvision's ResNet-50 without fc (23.5 M)."""
    ours = build_backbone(ModelCfg(arch="resnet50", width=1.0, small_stem=False), 3)
    reference = torchvision.models.resnet50()
    reference.fc = nn.Identity()
    assert count_params_m(ours) == count_params_m(reference)
    assert ours.out_dim == 2048


@pytest.mark.parametrize(
    "arch, width, out_dim", [("resnet18", 0.5, 256), ("resnet18", 0.25, 128), ("resnet50", 0.25, 512)]
)
def test_width_scales_every_stage(arch, width, out_dim):
    net = build_backbone(ModelCfg(arch=arch, width=width), 1)
    assert net.out_dim == out_dim
    assert net.conv1.out_channels == round(64 * width)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, out_dim)


@pytest.mark.parametrize("side", [28, 20])  # a 4x4 last map (passed through), a 3x3 one (pooled up to 4x4)
def test_the_pool_gives_adaptive_poolings_values_and_gradients(side):
    import copy

    torch.manual_seed(0)
    ours = build_backbone(ModelCfg(width=0.125, pool=4), 1).to(memory_format=torch.channels_last)
    reference = copy.deepcopy(ours)
    reference.avgpool = nn.AdaptiveAvgPool2d(4)
    x = torch.randn(8, 1, side, side).contiguous(memory_format=torch.channels_last)
    outputs = []
    for net in (ours, reference):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = net(x)
        (y.float() ** 2).mean().backward()
        outputs.append(y)
    assert torch.equal(outputs[0], outputs[1])
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours.parameters(), reference.parameters()))


def test_small_stem_keeps_resolution_and_stride_two_halves_it():
    keep = build_backbone(ModelCfg(width=0.25, stem_stride=1), 3)
    half = build_backbone(ModelCfg(width=0.25, stem_stride=2), 3)
    x = torch.randn(1, 3, 32, 32)
    assert keep.maxpool(keep.conv1(x)).shape[-1] == 32
    assert half.maxpool(half.conv1(x)).shape[-1] == 16
    assert describe(ModelCfg(width=0.25, stem_stride=2)) == "ResNet-18 (0.25x, small stem /2)"
    assert describe(ModelCfg(arch="resnet50", width=1.0, small_stem=False)) == "ResNet-50"


def test_projection_head_depths():
    v1 = projection_head(**head_cfg(32, 64, 16, 2))
    v2 = projection_head(**head_cfg(32, 64, 16, 3))
    assert [type(m).__name__ for m in v1] == ["Sequential", "Linear"]
    assert [type(m).__name__ for m in v2] == ["Sequential", "Sequential", "Linear"]
    assert isinstance(v2[0][1], nn.BatchNorm1d)
    assert v2(torch.randn(4, 32)).shape == (4, 16)


def save_test_encoder(path, head_layers=3, method="simclr_v2"):
    """An encoder file with a projection head (SimCLRv2's 3 layers by default), BN statistics non-trivial."""
    torch.manual_seed(0)
    cfg = ModelCfg(width=0.125)
    backbone = build_backbone(cfg, 1)
    hcfg = head_cfg(backbone.out_dim, 24, 8, head_layers)
    head = projection_head(**hcfg)
    for module in (backbone, head):  # non-trivial BN statistics, so a load that forgot buffers would show
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
    save_encoder(
        path,
        method=method,
        model_cfg=cfg,
        in_channels=1,
        image_size=28,
        backbone=backbone,
        out_dim=backbone.out_dim,
        backbone_name=describe(cfg),
        params_m=count_params_m(backbone),
        head=head,
        head_cfg=hcfg,
    )
    return backbone.eval(), head.eval()


def test_encoder_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "encoder.pt"
    backbone, head = save_test_encoder(path)
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"method", "model", "in_channels", "image_size", "backbone", "head", "head_cfg", "fingerprint"}
    x = torch.randn(3, 1, 28, 28)
    encoder, info = load_encoder(path)
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    torch.testing.assert_close(encoder(x), backbone(x), rtol=0, atol=0)
    assert info["out_dim"] == backbone.out_dim and info["method"] == "simclr_v2"
    with_head, info = load_encoder(path, head_layers=1)
    torch.testing.assert_close(with_head(x), head[0](backbone(x)), rtol=0, atol=0)
    assert info["out_dim"] == 24


def test_encoder_refuses_bad_head_layers_and_corruption(tmp_path):
    path = tmp_path / "encoder.pt"
    save_test_encoder(path, head_layers=2)
    with pytest.raises(UserError, match="head_layers must be between 1 and 1"):
        load_encoder(path, head_layers=2)
    payload = torch.load(path, weights_only=True)
    payload["backbone"]["conv1.weight"] += 1
    torch.save(payload, path)
    with pytest.raises(UserError, match="do not match their fingerprint"):
        load_encoder(path)
    with pytest.raises(UserError, match="encoder not found"):
        load_encoder(tmp_path / "missing.pt")


def test_raw_pixels_encoder_flattens(tmp_path):
    path = tmp_path / "encoder.pt"
    save_encoder(
        path,
        method="raw_pixels",
        model_cfg=ModelCfg(),
        in_channels=1,
        image_size=28,
        backbone=nn.Flatten(),
        out_dim=784,
        backbone_name="raw pixels",
        params_m=0.0,
    )
    encoder, info = load_encoder(path)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(encoder(x), x.reshape(2, -1)) and info["out_dim"] == 784
