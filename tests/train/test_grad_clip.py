"""train.grad_clip: the update is taken with the gradient's global norm capped, and a method's own value wins."""

from __future__ import annotations

import torch

from sslflow.augment.loader import in_channels, make_loader
from sslflow.methods.registry import build_method
from sslflow.params import load_params
from sslflow.schedule import TrainCfg, method_train_cfg
from sslflow.train.loop import train_step

from .conftest import SMALL_MODEL


def grads_after_step(params, grad_clip):
    """(gradient global norm seen by the optimiser, the parameter change) for one SGD step, lr 1, no momentum."""
    torch.manual_seed(0)
    method = build_method("rotation", params, in_channels(params), 10)
    batch = next(iter(make_loader(params, kind="rotation", batch_size=16)))
    before = [p.detach().clone() for p in method.parameters()]
    optimizer = torch.optim.SGD(method.parameters(), lr=1.0)
    train_step(method, method, batch, optimizer, None, bf16=False, grad_clip=grad_clip)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in method.parameters()]))
    change = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.detach() - b) for p, b in zip(method.parameters(), before)])
    )
    return float(norm), float(change)


def test_the_update_uses_the_clipped_gradient(train_project):
    params = load_params("params.yaml", SMALL_MODEL)
    free_norm, free_change = grads_after_step(params, None)
    assert free_norm > 0.5  # the cap below bites
    assert abs(free_change - free_norm) < 1e-4 * free_norm  # lr 1: the step is the gradient
    norm, change = grads_after_step(params, 0.25)
    assert abs(norm - 0.25) < 1e-5 and abs(change - 0.25) < 1e-5


def test_a_method_sets_its_own_clip(train_project):
    params = load_params("params.yaml", [*SMALL_MODEL, "train.grad_clip=5", "pretrain.rotation.grad_clip=1"])
    assert method_train_cfg(params.train, params.pretrain, "rotation").grad_clip == 1.0
    assert method_train_cfg(params.train, params.pretrain, "simclr").grad_clip == 5.0
    assert TrainCfg().grad_clip is None
