"""BYOL: the loss is the paper's, gradients reach only the online network, the target follows the cosine EMA."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from sslflow.methods.byol import BYOL, regression_loss

N, IN_DIM = 6, 5


def _byol(momentum: float = 0.9, total_steps: int = 4) -> BYOL:
    torch.manual_seed(0)
    return BYOL(
        nn.Linear(IN_DIM, 8),
        8,
        proj_dim=4,
        proj_hidden=16,
        pred_hidden=16,
        momentum=momentum,
        total_steps=total_steps,
    )


def _batch() -> dict:
    g = torch.Generator().manual_seed(1)
    return {"view1": torch.randn(N, IN_DIM, generator=g), "view2": torch.randn(N, IN_DIM, generator=g)}


def paper_loss(p: np.ndarray, z: np.ndarray) -> float:
    """||p/||p|| - z/||z||||^2, averaged over the batch (Grill et al. 2020, eq. 2)."""
    p_bar = p / np.sqrt((p**2).sum(axis=1, keepdims=True))
    z_bar = z / np.sqrt((z**2).sum(axis=1, keepdims=True))
    return float(((p_bar - z_bar) ** 2).sum(axis=1).mean())


def test_regression_loss_is_two_minus_two_cosine():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 0.0]])
    z = torch.tensor([[0.0, 2.0], [2.0, 2.0], [-1.0, 0.0]])
    assert math.isclose(regression_loss(p, z).item(), (2.0 + 0.0 + 4.0) / 3, abs_tol=1e-6)


def test_loss_is_the_symmetric_normalised_mse_of_prediction_and_target():
    method, batch = _byol(), _batch()
    loss, _ = method(batch)
    views = torch.cat([batch["view1"], batch["view2"]])
    with torch.no_grad():
        p = method.predictor(method.projector(method.backbone(views))).double().numpy()
        z = method.target(views).double().numpy()
    expected = paper_loss(p[:N], z[N:]) + paper_loss(p[N:], z[:N])  # L + L~: each view predicts the other
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)


def test_target_gets_no_gradient():
    method = _byol()
    loss, _ = method(_batch())
    loss.backward()
    target = list(method.target.parameters())
    assert target and all(p.grad is None and not p.requires_grad for p in target)
    for online in (method.backbone, method.projector, method.predictor):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in online.parameters())


def test_target_follows_the_ema_with_a_cosine_momentum_schedule():
    base, total = 0.9, 4
    method = _byol(base, total)
    online, target = method.backbone.weight, method.target.copies[0].weight
    expected = target.detach().double().clone()
    for k in range(total + 2):  # past the end the momentum stays 1
        with torch.no_grad():
            online.copy_(torch.randn_like(online))
        tau = 1 - (1 - base) * (math.cos(math.pi * min(k, total) / total) + 1) / 2
        expected = tau * expected + (1 - tau) * online.detach().double()
        method.after_step()
        torch.testing.assert_close(target.detach().double(), expected, rtol=1e-5, atol=1e-6)
    assert math.isclose(method.target.momentum(), 1.0)
    assert int(method.target.step) == total + 2  # a buffer: saved in last.pt, so a resumed run keeps the schedule
