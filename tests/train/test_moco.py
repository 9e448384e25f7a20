"""MoCo v2: the queue is a FIFO of the key encoder's outputs, gathered from every rank in rank order."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from sslflow.methods.moco import MoCo
from tests.processes import free_port

WORLD, LOCAL_N, IN_DIM, QUEUE, STEPS = 2, 3, 6, 16, 3  # 12 keys a step into 16 slots: it wraps mid-batch


def _moco() -> MoCo:
    torch.manual_seed(0)
    return MoCo(nn.Linear(IN_DIM, 8), 8, temperature=0.2, proj_dim=4, proj_hidden=8, queue_size=QUEUE, momentum=0.5)


def _views(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * step + rank)
    return torch.randn(LOCAL_N, IN_DIM, generator=g), torch.randn(LOCAL_N, IN_DIM, generator=g)


def _rank_main(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        method = _moco()
        log = []
        for step in range(STEPS):
            v1, v2 = _views(rank, step)
            views = torch.cat([v1, v2])
            with torch.no_grad():
                keys = method.keys(views)
                queries = method.head(method.backbone(views))
            method({"view1": v1, "view2": v2})
            log.append((keys, queries))
            with torch.no_grad():  # the online encoder moves (an optimiser step), the key encoder follows by EMA
                for p in method.parameters():
                    if p.requires_grad:
                        p.add_(0.1 * torch.randn_like(p))
            method.after_step()
        results[rank] = (log, method.queue.keys.clone(), int(method.queue.ptr))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_queue_is_a_fifo_of_every_ranks_keys_under_two_gloo_processes():
    manager = mp.Manager()
    results = manager.dict()
    mp.start_processes(_rank_main, args=(free_port(), results), nprocs=WORLD, start_method="spawn", join=True)

    pushed = []  # what should enter the queue, step by step: view1 keys of rank 0, 1, then view2 keys of rank 0, 1
    for step in range(STEPS):
        keys = [results[rank][0][step][0] for rank in range(WORLD)]
        pushed += [k[:LOCAL_N] for k in keys] + [k[LOCAL_N:] for k in keys]
    expected = F.normalize(torch.cat(pushed), dim=1)[-QUEUE:]  # oldest first

    total = STEPS * 2 * WORLD * LOCAL_N
    for rank in range(WORLD):
        log, queue, ptr = results[rank]
        assert ptr == total % QUEUE
        oldest_first = torch.roll(queue, -ptr, dims=0)
        torch.testing.assert_close(oldest_first, expected)
        # the keys are the momentum encoder's, not the online one's (they part after the first update)
        keys, queries = log[-1]
        assert not torch.allclose(keys, queries, atol=1e-3)
    torch.testing.assert_close(results[0][1], results[1][1])


def test_key_encoder_gets_no_gradient_and_follows_the_online_one():
    method = _moco()
    v1, v2 = _views(0, 0)
    loss, metrics = method({"view1": v1, "view2": v2})
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in method.key_encoder.parameters())
    assert all(p.grad is not None for p in method.backbone.parameters())
    assert 0.0 <= metrics["acc"].item() <= 1.0

    online, key = method.backbone.weight, method.key_encoder.copies[0].weight
    start = key.detach().clone()
    with torch.no_grad():
        online.add_(1.0)
    method.after_step()
    torch.testing.assert_close(key.detach(), start + 0.5)  # m = 0.5: halfway to the online weights
