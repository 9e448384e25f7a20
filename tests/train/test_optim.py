"""LARS exclusions, the lr schedule and its scaling with the batch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sslflow.schedule import TrainCfg
from sslflow.train.optim import build_optimizer, scaled_lr, warmup_cosine


def test_lars_leaves_bn_and_biases_out_of_decay_and_adaptation():
    """Weights: lr x trust x (g + wd w), trust = 0.001 |w| / (|g| + wd |w|). BN and biases: plain SGD, lr x g."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    grads = {n: torch.randn_like(p) for n, p in net.named_parameters()}
    wd, lr = 0.1, 0.5
    opt = build_optimizer(net, TrainCfg(optimizer="lars", weight_decay=wd, momentum=0.0), lr=lr)
    for name, p in net.named_parameters():
        p.grad = grads[name]
    opt.step()
    w, g = before["0.weight"], grads["0.weight"]
    trust = 0.001 * w.norm() / (g.norm() + wd * w.norm())
    torch.testing.assert_close(net[0].weight.detach(), w - lr * trust * (g + wd * w))
    for name in ("0.bias", "1.weight", "1.bias"):
        torch.testing.assert_close(dict(net.named_parameters())[name].detach(), before[name] - lr * grads[name])


def test_lars_adapts_weights_even_without_decay():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    w = layer.weight.detach().clone()
    opt = build_optimizer(layer, TrainCfg(optimizer="lars", weight_decay=0.0, momentum=0.0), lr=1.0)
    grad = torch.randn_like(w)
    layer.weight.grad, layer.bias.grad = grad, torch.zeros(3)
    opt.step()
    trust = 0.001 * w.norm() / grad.norm()
    torch.testing.assert_close(layer.weight.detach(), w - trust * grad)


def test_sgd_updates_every_tensor_at_once_with_the_same_arithmetic():
    """The foreach update gives the per-tensor loop's weights bit for bit (decay, Nesterov momentum, 3 steps)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 3))
    twin = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 3))
    twin.load_state_dict(net.state_dict())
    cfg = TrainCfg(optimizer="sgd", weight_decay=1e-4, momentum=0.9)
    ours = build_optimizer(net, cfg, lr=0.3)
    groups = [{"params": [p for p in twin.parameters() if p.ndim > 1], "weight_decay": 1e-4}]
    groups.append({"params": [p for p in twin.parameters() if p.ndim <= 1], "weight_decay": 0.0})
    loop = torch.optim.SGD(groups, lr=0.3, momentum=0.9, nesterov=True, foreach=False)
    assert ours.defaults["foreach"] is True
    for _ in range(3):
        grads = [torch.randn_like(p) for p in net.parameters()]
        for a, b, g in zip(net.parameters(), twin.parameters(), grads):
            a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        loop.step()
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), twin.parameters()))


def test_warmup_then_cosine():
    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110) == pytest.approx(0.5)
    assert warmup_cosine(110, 10, 110) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(5, 0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


@pytest.mark.parametrize("scaling, expected", [("linear", 0.3 * 16), ("sqrt", 0.3 * 4), ("none", 0.3)])
def test_lr_scales_with_global_batch(scaling, expected):
    assert scaled_lr(TrainCfg(lr=0.3, lr_scaling=scaling), 4096) == pytest.approx(expected)
