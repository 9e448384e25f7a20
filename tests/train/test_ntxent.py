"""NT-Xent against a direct loop over the formula, on one process and gathered over two."""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sslflow.methods.losses import float32_logits, info_nce_with_queue, nt_xent
from tests.processes import free_port


def reference_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's algorithm, literally: z_{2k-1}, z_{2k} are the views of image k,
    l(i, j) = -log exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau),
    L = 1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]."""
    n = z1.shape[0]
    z = [None] * (2 * n)
    for k in range(n):
        z[2 * k], z[2 * k + 1] = z1[k], z2[k]

    def sim(u, v):
        return torch.dot(u, v) / (torch.linalg.vector_norm(u) * torch.linalg.vector_norm(v))

    def ell(i, j):
        denominator = sum(torch.exp(sim(z[i], z[k]) / tau) for k in range(2 * n) if k != i)
        return -torch.log(torch.exp(sim(z[i], z[j]) / tau) / denominator)

    return sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


# two images is the smallest batch with a negative (one image's pair has none: its loss and gradients are 0)
@pytest.mark.parametrize("n, dim, tau", [(2, 3, 0.5), (5, 8, 0.1), (8, 16, 1.0)])
def test_loss_and_gradients_match_the_formula(n, dim, tau):
    g = torch.Generator().manual_seed(n * 100 + dim)
    z1 = torch.randn(n, dim, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(n, dim, generator=g, dtype=torch.float64, requires_grad=True)
    expected = reference_loss(z1, z2, tau)
    grads_expected = torch.autograd.grad(expected, (z1, z2))
    loss, _ = nt_xent(z1, z2, tau, gather=False)
    grads = torch.autograd.grad(loss, (z1, z2))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    assert expected.item() > 0 and all(g.abs().max() > 0 for g in grads_expected)  # a case that can fail
    for got, want in zip(grads, grads_expected):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_low_precision_embeddings_are_compared_in_float32():
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    loss, _ = nt_xent(z1.bfloat16(), z2.bfloat16(), 0.2, gather=False)
    assert loss.dtype == torch.float32
    expected = reference_loss(z1.bfloat16().double(), z2.bfloat16().double(), 0.2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def _bf16_embeddings(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g).bfloat16(), torch.randn(n, dim, generator=g).bfloat16()


def test_ntxent_under_bf16_autocast_equals_float32_on_the_same_embeddings():
    """Autocast casts a matmul back to bf16; the logits must stay float32 (at t = 0.1 bf16 logits move the loss ~1e-3)."""
    z1, z2 = _bf16_embeddings(8, 16, seed=5)
    expected, _ = nt_xent(z1.float(), z2.float(), 0.1, gather=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = nt_xent(z1, z2, 0.1, gather=False)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - expected.item()) < 1e-5


def test_queue_loss_under_bf16_autocast_equals_float32_on_the_same_embeddings():
    q1, q2 = _bf16_embeddings(8, 16, seed=6)
    k1, k2 = _bf16_embeddings(8, 16, seed=7)
    queue = torch.nn.functional.normalize(torch.randn(64, 16, generator=torch.Generator().manual_seed(8)), dim=1)
    expected, _ = info_nce_with_queue(q1.float(), q2.float(), k1.float(), k2.float(), queue, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = info_nce_with_queue(q1, q2, k1, k2, queue, 0.1)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - expected.item()) < 1e-5


def test_classifier_logits_under_bf16_autocast_are_float32():
    """Exemplar's N-way head: autocast would run it in bf16; the logits equal the float32 layer's."""
    head = torch.nn.Linear(16, 2000)
    features = torch.randn(8, 16, generator=torch.Generator().manual_seed(9)).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = float32_logits(head, features)
    assert logits.dtype == torch.float32
    assert torch.equal(logits, head(features.float()))


def test_identical_views_are_retrieved_and_cost_less():
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    matched, accuracy = nt_xent(z, z.clone(), 0.1, gather=False)
    mismatched, _ = nt_xent(z, z.roll(1, 0), 0.1, gather=False)
    assert accuracy.item() == 1.0
    assert matched < mismatched


def test_scale_invariant():
    """Cosine similarity: scaling an embedding changes nothing."""
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    a, _ = nt_xent(z1, z2, 0.5, gather=False)
    b, _ = nt_xent(z1 * 7.0, z2 * 0.1, 0.5, gather=False)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


# ---- two real processes (gloo) --------------------------------------------------------------

WORLD, LOCAL_N, IN_DIM, DIM, TAU = 2, 4, 6, 5, 0.3


def _global_inputs():
    g = torch.Generator().manual_seed(42)
    x1 = torch.randn(WORLD * LOCAL_N, IN_DIM, generator=g, dtype=torch.float64)
    x2 = torch.randn(WORLD * LOCAL_N, IN_DIM, generator=g, dtype=torch.float64)
    weight = torch.randn(DIM, IN_DIM, generator=g, dtype=torch.float64)
    return x1, x2, weight


def _rank_main(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        x1, x2, weight = _global_inputs()
        part = slice(rank * LOCAL_N, (rank + 1) * LOCAL_N)
        z1 = x1[part].clone().requires_grad_()
        z2 = x2[part].clone().requires_grad_()
        loss, _ = nt_xent(z1, z2, TAU)
        loss.backward()
        # the same through a DDP-wrapped projection: parameter gradients as DDP applies them
        projection = nn.Linear(IN_DIM, DIM, bias=False).double()
        projection.weight.data.copy_(weight)
        ddp = nn.parallel.DistributedDataParallel(projection)
        ddp_loss, _ = nt_xent(ddp(x1[part]), ddp(x2[part]), TAU)
        ddp_loss.backward()
        results[rank] = (loss.item(), z1.grad, z2.grad, projection.weight.grad.clone())
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gathered_two_process_loss_equals_global_batch_loss():
    x1, x2, weight = _global_inputs()
    g1, g2 = x1.clone().requires_grad_(), x2.clone().requires_grad_()
    expected = reference_loss(g1, g2, TAU)
    grad1, grad2 = torch.autograd.grad(expected, (g1, g2))
    w = weight.clone().requires_grad_()
    (weight_grad,) = torch.autograd.grad(reference_loss(x1 @ w.T, x2 @ w.T, TAU), (w,))

    manager = mp.Manager()
    results = manager.dict()
    mp.start_processes(_rank_main, args=(free_port(), results), nprocs=WORLD, start_method="spawn", join=True)

    for rank in range(WORLD):
        loss, z1_grad, z2_grad, ddp_weight_grad = results[rank]
        part = slice(rank * LOCAL_N, (rank + 1) * LOCAL_N)
        assert math.isclose(loss, expected.item(), rel_tol=1e-5, abs_tol=1e-5)
        # every rank's copy of the global loss sends its gradient to this slice: world x the global gradient,
        # which DDP's averaging divides back
        torch.testing.assert_close(z1_grad / WORLD, grad1[part], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(z2_grad / WORLD, grad2[part], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ddp_weight_grad, weight_grad, rtol=1e-5, atol=1e-5)


def _rank_warnings(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        x1, x2, _ = _global_inputs()
        part = slice(rank * LOCAL_N, (rank + 1) * LOCAL_N)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss, _ = nt_xent(x1[part].clone().requires_grad_(), x2[part].clone().requires_grad_(), TAU)
            loss.backward()
        results[rank] = [f"{w.category.__name__}: {w.message}" for w in caught]
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gathering_warns_nothing():
    """torch 2.14 deprecates torch.distributed.nn.functional.all_gather; the gather uses its replacement."""
    results = mp.Manager().dict()
    mp.start_processes(_rank_warnings, args=(free_port(), results), nprocs=WORLD, start_method="spawn", join=True)
    assert [results[rank] for rank in range(WORLD)] == [[], []]
