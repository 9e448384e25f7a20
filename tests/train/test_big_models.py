"""The lecture's bigger networks: deeper (ResNet-101/152), wider (2x-4x) and selective kernels (SK).

Parameter counts are taken on the meta device, so a 375 M or 795 M network costs no memory.
The SK conv is checked against its attention written out by hand, branch by branch.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslflow.errors import UserError
from sslflow.models.backbone import SKBottleneck, build_backbone, count_params_m, describe
from sslflow.models.config import ModelCfg
from sslflow.models.encoder import load_encoder, save_encoder
from sslflow.models.sk import SKConv2d
from sslflow.params import load_params
from sslflow.report.tables import params_m


def _imagenet_cfg(arch: str, width: float, sk: bool = False) -> ModelCfg:
    return ModelCfg(arch=arch, width=width, sk=sk, small_stem=False)


def _meta_count(cfg: ModelCfg) -> float:
    with torch.device("meta"):
        return count_params_m(build_backbone(cfg, 3))


# SimCLR's table 6 / SimCLRv2's table 1: millions of parameters of the trunk, no classifier.
PAPER = [
    ("resnet50", 1, False, "ResNet-50", 24),
    ("resnet50", 2, False, "ResNet-50 (2x)", 94),
    ("resnet50", 4, False, "ResNet-50 (4x)", 375),
    ("resnet50", 1, True, "ResNet-50 (1x+SK)", 35),
    ("resnet101", 2, True, "ResNet-101 (2x+SK)", 257),
    ("resnet152", 2, True, "ResNet-152 (2x+SK)", 354),
    ("resnet152", 3, True, "ResNet-152 (3x+SK)", 795),
]


@pytest.mark.parametrize("arch, width, sk, label, paper_m", PAPER)
def test_parameter_counts_match_the_papers(arch, width, sk, label, paper_m):
    cfg = _imagenet_cfg(arch, width, sk)
    count = _meta_count(cfg)
    assert abs(count - paper_m) < 1, f"{label}: {count:.2f} M, paper {paper_m} M"
    assert describe(cfg) == label


def test_report_prints_the_papers_param_column():
    """The report's Param (M) cell of each lecture network reads as the lecture's table does."""
    cells = {label: params_m(_meta_count(_imagenet_cfg(a, w, sk))) for a, w, sk, label, _ in PAPER[:3]}
    assert cells == {"ResNet-50": "24", "ResNet-50 (2x)": "94", "ResNet-50 (4x)": "375"}
    assert params_m(0.6999) == "0.70" and params_m(0.0) == "0" and params_m(None) == "-"


@pytest.mark.parametrize("arch, blocks", [("resnet101", [3, 4, 23, 3]), ("resnet152", [3, 8, 36, 3])])
def test_deeper_archs_have_hes_block_counts(arch, blocks):
    with torch.device("meta"):
        net = build_backbone(_imagenet_cfg(arch, 3), 3)
    assert [len(getattr(net, f"layer{i}")) for i in (1, 2, 3, 4)] == blocks
    assert net.out_dim == 3 * 2048 and net.conv1.out_channels == 192


def test_sk_is_refused_for_basic_blocks():
    with pytest.raises(ValueError, match="model.sk needs a bottleneck arch"):
        ModelCfg(arch="resnet18", sk=True)
    with pytest.raises(UserError, match=r"model: Value error, model.sk needs a bottleneck arch .* not resnet34"):
        load_params("params.yaml", ["model.arch=resnet34", "model.sk=true"])


def _randomise_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def _bn(t: torch.Tensor, bn: nn.BatchNorm2d, channels: slice) -> torch.Tensor:
    """Inference-mode batch norm of (B, C, ...) over the given channels, written out."""
    shape = (1, -1) + (1,) * (t.dim() - 2)
    mean, var = bn.running_mean[channels].view(shape), bn.running_var[channels].view(shape)
    gamma, beta = bn.weight[channels].view(shape), bn.bias[channels].view(shape)
    return (t - mean) / torch.sqrt(var + bn.eps) * gamma + beta


def _reference_sk(sk: SKConv2d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLRv2's sk_conv2d by hand: two 3x3 branches, sum, pool, fc-BN-ReLU-fc, softmax over branches."""
    c = sk.channels
    stride = sk.conv.stride
    branches = []
    for b in (0, 1):
        rows = slice(b * c, (b + 1) * c)
        y = F.conv2d(x, sk.conv.weight[rows], stride=stride, padding=1)
        branches.append(torch.clamp(_bn(y, sk.bn, rows), min=0))
    pooled = (branches[0] + branches[1]).mean(dim=(2, 3))  # (B, C)
    fc1, fc2 = sk.fuse[0].weight[:, :, 0, 0], sk.select.weight[:, :, 0, 0]  # (mid, C), (2C, mid)
    hidden = torch.clamp(_bn(pooled @ fc1.T, sk.fuse[1], slice(None)), min=0)
    logits = hidden @ fc2.T  # (B, 2C): first C for branch 0, last C for branch 1
    e0, e1 = torch.exp(logits[:, :c]), torch.exp(logits[:, c:])
    a0 = e0 / (e0 + e1)
    out = a0[:, :, None, None] * branches[0] + (1 - a0)[:, :, None, None] * branches[1]
    return out, a0


@pytest.mark.parametrize("stride", [1, 2])
def test_sk_conv_is_attention_over_two_branches(stride):
    torch.manual_seed(0)
    sk = SKConv2d(12, 40, stride).double()
    _randomise_bn(sk)
    sk.eval()
    x = torch.randn(3, 12, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        expected, attention = _reference_sk(sk, x)
        got = sk(x)
    assert got.shape == (3, 40, 9 // stride + (9 % stride), 9 // stride + (9 % stride))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # The mix is really input-dependent, not a fixed half-half: the check above would miss a constant 0.5.
    assert attention.std() > 0.01 and (attention[0] - attention[1]).abs().max() > 1e-3
    assert sk.fuse[0].out_channels == 32  # max(40 * 0.0625, 32): SimCLRv2's min_dim


def test_sk_backbone_is_resnet_d_and_runs():
    """SK bottlenecks everywhere, a 3-conv stem and avg-pool shortcuts; a forward and a backward pass run."""
    torch.manual_seed(0)
    net = build_backbone(ModelCfg(arch="resnet50", width=0.125, sk=True, small_stem=False), 3)
    blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
    assert all(isinstance(b, SKBottleneck) and isinstance(b.conv2, SKConv2d) for b in blocks)
    assert [type(m).__name__ for m in net.conv1 if isinstance(m, nn.Conv2d)] == ["Conv2d"] * 3
    assert isinstance(net.layer1[0].downsample[0], nn.Conv2d)  # stride 1: no pooling
    for layer in (net.layer2, net.layer3, net.layer4):
        pool, conv, _ = layer[0].downsample
        assert isinstance(pool, nn.AvgPool2d) and conv.stride == (1, 1)
    x = torch.randn(2, 3, 64, 64)
    out = net(x)
    assert out.shape == (2, net.out_dim) == (2, 256)
    out.square().mean().backward()
    assert net.layer4[-1].conv2.select.weight.grad is not None


def test_sk_encoder_file_round_trip(tmp_path):
    """An SK encoder saves and loads through the encoder file as any other (its cfg rebuilds the same net)."""
    torch.manual_seed(0)
    cfg = ModelCfg(arch="resnet50", width=0.125, sk=True)
    backbone = build_backbone(cfg, 1)
    _randomise_bn(backbone)
    backbone.eval()
    save_encoder(
        tmp_path / "encoder.pt",
        method="simclr_v2",
        model_cfg=cfg,
        in_channels=1,
        image_size=28,
        backbone=backbone,
        out_dim=backbone.out_dim,
        backbone_name=describe(cfg),
        params_m=count_params_m(backbone),
    )
    encoder, info = load_encoder(tmp_path / "encoder.pt")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(encoder(x), backbone(x), rtol=0, atol=0)
    assert info["backbone_name"] == "ResNet-50 (0.125x+SK, small stem)"
