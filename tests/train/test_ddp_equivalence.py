"""Two gloo ranks at global batch B take the same steps as one process at batch B, where the maths says they must.

SimCLR gathers every rank's projections with their gradients (sslflow.methods.losses), SimCLRv2's memory
bank gathers the momentum keys and pushes them in rank order, and DDP averages the ranks' gradients: so
the update is the single-process update on the global batch, step after step, optimiser state and
momentum encoder included. That holds for every layer that treats images one at a time. BatchNorm does
not: on CPU each rank normalises with its own half-batch statistics (SyncBatchNorm, which would make
them global, needs a GPU, sslflow/train/loop.py), so a head with BatchNorm takes a different step, as the
last test shows. The equality is tested on BN-free networks (an MLP backbone, a one-layer head).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sslflow.methods.simclr import SimCLR
from sslflow.schedule import TrainCfg
from sslflow.train.optim import build_optimizer
from tests.processes import free_port

WORLD, GLOBAL_BATCH, IN_DIM, STEPS = 2, 8, 10, 3
SETTINGS = {
    "simclr": dict(proj_layers=1),
    "simclr_v2_queue": dict(proj_layers=1, queue_size=12, momentum=0.5),  # 16 keys a step into 12 slots
    "simclr_bn_head": dict(proj_layers=2),
}


def _method(setting: str) -> SimCLR:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(IN_DIM, 12), nn.ReLU(), nn.Linear(12, 8))
    method = SimCLR(backbone, 8, temperature=0.3, proj_dim=4, proj_hidden=6, **SETTINGS[setting])
    return method.double()


def _batches():
    g = torch.Generator().manual_seed(1)
    return [
        {"view1": torch.randn(GLOBAL_BATCH, IN_DIM, generator=g, dtype=torch.float64), "view2": None}
        for _ in range(STEPS)
    ]


def _views(step_batch, part: slice) -> dict:
    # the second view: a fixed distortion of the first, so positives are learnable
    v1 = step_batch["view1"]
    v2 = v1.flip(1) * 0.5 + 0.1 * v1
    return {"view1": v1[part], "view2": v2[part]}


def _train(method: SimCLR, model: nn.Module, part: slice) -> dict[str, torch.Tensor]:
    optimizer = build_optimizer(method, TrainCfg(optimizer="lars", weight_decay=1e-4, momentum=0.9), lr=0.5)
    for batch in _batches():
        loss, _ = model(_views(batch, part))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.after_step()
    return {name: t.detach().clone() for name, t in method.state_dict().items()}


def _rank_main(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        local = GLOBAL_BATCH // WORLD
        trained = {}
        for setting in SETTINGS:
            method = _method(setting)
            ddp = nn.parallel.DistributedDataParallel(method, broadcast_buffers=False)
            trained[setting] = _train(method, ddp, slice(rank * local, (rank + 1) * local))
        results[rank] = trained
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks() -> list[dict]:
    """Each rank's final state per setting (one pair of processes for every setting)."""
    results = mp.Manager().dict()
    mp.start_processes(_rank_main, args=(free_port(), results), nprocs=WORLD, start_method="spawn", join=True)
    return [results[rank] for rank in range(WORLD)]


def _one_process(setting: str) -> dict:
    method = _method(setting)
    return _train(method, method, slice(None))


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["simclr", "simclr_v2_queue"])
def test_two_ranks_end_with_the_single_process_weights(two_ranks, setting):
    single = _one_process(setting)
    start = _method(setting).state_dict()
    assert any(not torch.equal(single[k], start[k]) for k in single)  # the steps moved the weights
    for rank, states in enumerate(two_ranks):
        state = states[setting]
        assert state.keys() == single.keys()
        for name, tensor in single.items():  # weights, momentum encoder, queue and its pointer
            torch.testing.assert_close(state[name], tensor, rtol=1e-9, atol=1e-12, msg=f"rank {rank}: {name}")


@pytest.mark.slow
def test_a_batchnorm_head_normalises_each_ranks_half_batch_on_cpu(two_ranks):
    """Per-rank BN statistics: the ranks agree with each other (DDP) but not with the single process."""
    single = _one_process("simclr_bn_head")
    ranks = [states["simclr_bn_head"] for states in two_ranks]
    weight = "head.1.weight"
    torch.testing.assert_close(ranks[0][weight], ranks[1][weight], rtol=1e-12, atol=1e-14)
    assert (ranks[0][weight] - single[weight]).abs().max() > 1e-6
