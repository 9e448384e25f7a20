"""Each method learns from a few real Fashion-MNIST batches: on batches it never trained on, the loss
falls and the pretext task beats chance."""

from __future__ import annotations

import pytest
import torch

from sslflow.augment.loader import in_channels, make_loader
from sslflow.methods.registry import build_method
from sslflow.params import load_params
from sslflow.schedule import TrainCfg
from sslflow.train.optim import build_optimizer

from .conftest import SMALL_MODEL

CHANCE = {"rotation": 1 / 4, "relpos": 1 / 8, "exemplar": 1 / 32, "supervised": 1 / 10}


def fit(method_name: str, overrides: list[str] = (), batches: int = 16, passes: int = 3, batch_size: int = 32):
    """Train on `batches` batches for `passes` passes; return (loss, acc) on two held-out batches before and after."""
    params = load_params("params.yaml", [*SMALL_MODEL, *overrides])
    torch.manual_seed(0)
    method = build_method(method_name, params, in_channels(params), 10)
    loader = iter(make_loader(params, kind=method.kind, batch_size=batch_size))
    data = [next(loader) for _ in range(batches)]
    held_out = [next(loader) for _ in range(2)]
    optimizer = build_optimizer(method, TrainCfg(optimizer="adamw", weight_decay=0.0), lr=3e-3)
    before = measure(method, held_out)
    for _ in range(passes):
        for batch in data:
            loss, _ = method(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            method.after_step()
    return before, measure(method, held_out)


@torch.no_grad()
def measure(method, batches) -> tuple[float, float]:
    """Mean loss and pretext accuracy over `batches` (BN on batch statistics, as in training)."""
    results = [method(batch) for batch in batches]
    return (
        sum(loss.item() for loss, _ in results) / len(results),
        sum(metrics["acc"].item() for _, metrics in results) / len(results),
    )


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("simclr", []),
        ("simclr_v2", ["pretrain.simclr_v2.queue_size=0"]),  # a filling queue raises the loss; the bank: below
        ("rotation", []),
        ("relpos", []),
        ("exemplar", ["augment.exemplar.classes=32", "augment.exemplar.copies=20"]),  # 20 batches of 32
        ("supervised", []),
    ],
)
def test_method_learns(train_project, name, overrides):
    (first_loss, first_acc), (last_loss, last_acc) = fit(name, overrides)
    assert last_loss < 0.9 * first_loss, (first_loss, last_loss)
    if name in CHANCE:
        assert last_acc > 1.5 * CHANCE[name] and last_acc > first_acc + 0.1, (first_acc, last_acc)
    else:  # contrastive: the positive is found among 2N-1 = 63 candidates far more often than by chance
        assert last_acc > 0.08 and last_acc > first_acc + 0.05, (first_acc, last_acc)


def test_momentum_encoder_follows_the_online_one(train_project):
    params = load_params(
        "params.yaml", [*SMALL_MODEL, "pretrain.simclr_v2.queue_size=64", "pretrain.simclr_v2.momentum=0.5"]
    )
    torch.manual_seed(0)
    method = build_method("simclr_v2", params, 1, 10)
    online, ema = method.backbone.conv1.weight, method.momentum_encoder.copies[0].conv1.weight
    start = ema.detach().clone()
    with torch.no_grad():
        online.add_(1.0)
    method.after_step()
    torch.testing.assert_close(ema.detach(), start + 0.5)
    assert not ema.requires_grad


@torch.no_grad()
def view_retrieval(method, batches) -> float:
    """How often the backbone feature of an image's first view is closest (cosine) to its own second view's."""
    hits = []
    for batch in batches:
        n = batch["view1"].shape[0]
        h = torch.nn.functional.normalize(method.backbone(torch.cat([batch["view1"], batch["view2"]])), dim=1)
        hits.append(((h[:n] @ h[n:].T).argmax(dim=1) == torch.arange(n)).float().mean().item())
    return sum(hits) / len(hits)


@pytest.mark.parametrize(
    "name, lr, overrides",
    [
        ("moco", 3e-3, ["pretrain.moco.queue_size=128", "pretrain.moco.proj_hidden=128"]),
        # SimCLRv2 with its memory bank: a momentum encoder's keys and a queue of 128 earlier ones
        ("simclr_v2", 3e-3, ["pretrain.simclr_v2.queue_size=128", "pretrain.simclr_v2.proj_hidden=128"]),
        (
            "byol",
            1e-2,
            [
                *("pretrain.byol.proj_hidden=128", "pretrain.byol.pred_hidden=128", "pretrain.byol.momentum=0.9"),
                # the momentum schedule spans the 48 steps trained
                *("train.batch_size=32", "train.epochs=2", "pretrain.byol.max_steps=48"),
            ],
        ),
    ],
)
def test_momentum_method_learns_what_holds_on_held_out_images(train_project, name, lr, overrides):
    """Two passes over 24 batches of the tiny split; measured on the 7 batches never trained on."""
    params = load_params("params.yaml", [*SMALL_MODEL, *overrides])
    torch.manual_seed(0)
    method = build_method(name, params, in_channels(params), 10)
    data = [batch for _, batch in zip(range(31), make_loader(params, kind=method.kind, batch_size=32))]
    train, held_out = data[:24], data[24:]
    optimizer = build_optimizer(method, TrainCfg(optimizer="adamw", weight_decay=0.0), lr=lr)
    before = view_retrieval(method, held_out)
    losses = []
    for _ in range(2):
        for batch in train:
            loss, _ = method(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            method.after_step()
            losses.append(loss.item())
    after = view_retrieval(method, held_out)
    assert after > before + 0.05, (before, after)  # 224 held-out pairs: 11 more found
    assert sum(losses[-24:]) < sum(losses[:24]), losses
