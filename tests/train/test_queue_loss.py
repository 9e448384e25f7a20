"""The memory-bank loss (MoCo's InfoNCE, SimCLRv2's queue) against a direct loop over the formula,
on one process and with the keys gathered over two."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from sslflow.methods.losses import gather_no_grad, info_nce_with_queue
from tests.processes import free_port


def reference_queue_loss(q1, q2, k1, k2, queue, tau: float, offset: int = 0) -> tuple[torch.Tensor, float]:
    """MoCo's InfoNCE (He et al. 2020, eq. 1), literally, symmetrised over the two views as SimCLRv2's
    memory bank uses it:

        l(q, k+) = -log exp(q . k+ / tau) / sum_{c in C} exp(q . c / tau),

    q the normalised online projection of one view of image i, k+ the normalised momentum key of the
    *other* view of the same image, C every key of the global batch of that other view and every queue
    entry. This rank holds images offset .. offset + n - 1 of the global batch; the loss is the mean
    of l over its n images and both orders of the pair; the accuracy how often the positive scores highest.
    """
    n, big_n = q1.shape[0], k1.shape[0]

    def unit(v):
        return v / torch.linalg.vector_norm(v)

    total, hits = 0.0, 0
    for i in range(n):
        for q, k in ((q1, k2), (q2, k1)):
            query = unit(q[i])
            candidates = [unit(k[j]) for j in range(big_n)] + [queue[m] for m in range(queue.shape[0])]
            scores = [torch.dot(query, c) / tau for c in candidates]
            positive = scores[offset + i]
            total = total - torch.log(torch.exp(positive) / sum(torch.exp(s) for s in scores))
            hits += int(max(range(len(scores)), key=lambda c: scores[c].item()) == offset + i)
    return total / (2 * n), hits / (2 * n)


def _inputs(n: int, big_n: int, dim: int, queue_size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    q1, q2 = (torch.randn(n, dim, generator=g, dtype=torch.float64) for _ in range(2))
    k1, k2 = (torch.randn(big_n, dim, generator=g, dtype=torch.float64) for _ in range(2))
    # keys correlated with their queries, so the positive is often (not always) found
    k1[:n] += 2 * q1
    k2[:n] += 2 * q2
    queue = F.normalize(torch.randn(queue_size, dim, generator=g, dtype=torch.float64), dim=1)
    return q1, q2, k1, k2, queue


@pytest.mark.parametrize("n, dim, queue_size, tau", [(2, 3, 0, 0.5), (5, 8, 16, 0.2), (8, 16, 7, 1.0)])
def test_loss_accuracy_and_gradients_match_the_formula(n, dim, queue_size, tau):
    q1, q2, k1, k2, queue = _inputs(n, n, dim, queue_size, seed=n * 100 + dim)
    leaves = [t.clone().requires_grad_() for t in (q1, q2, k1, k2)]
    expected, expected_acc = reference_queue_loss(*leaves, queue, tau)
    grads_expected = torch.autograd.grad(expected, leaves)
    got = [t.clone().requires_grad_() for t in (q1, q2, k1, k2)]
    loss, accuracy = info_nce_with_queue(*got, queue, tau)
    grads = torch.autograd.grad(loss, got)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    assert accuracy.item() == pytest.approx(expected_acc)
    for name, g_got, g_want in zip(("q1", "q2", "k1", "k2"), grads, grads_expected):
        torch.testing.assert_close(g_got, g_want, rtol=1e-9, atol=1e-12, msg=f"d loss / d {name}")


def test_the_positive_is_the_other_views_key():
    """q1 is found by view 2's keys and q2 by view 1's, not by their own view's: with k2 = q1 and k1 = q2
    every positive is retrieved; with each view's keys equal to its own queries, almost none is."""
    g = torch.Generator().manual_seed(4)
    q1, q2 = torch.randn(6, 8, generator=g, dtype=torch.float64), torch.randn(6, 8, generator=g, dtype=torch.float64)
    queue = torch.zeros(0, 8, dtype=torch.float64)
    crossed, crossed_acc = info_nce_with_queue(q1, q2, q2.clone(), q1.clone(), queue, 0.1)
    same, same_acc = info_nce_with_queue(q1, q2, q1.clone(), q2.clone(), queue, 0.1)
    assert crossed_acc.item() == 1.0 and same_acc.item() < 0.5
    assert crossed < same


# ---- two real processes (gloo): each rank's targets sit at its offset in the gathered keys --------

WORLD, LOCAL_N, DIM, QUEUE, TAU = 2, 3, 5, 4, 0.3


def _rank_main(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        q1, q2, k1, k2, queue = _inputs(WORLD * LOCAL_N, WORLD * LOCAL_N, DIM, QUEUE, seed=7)
        part = slice(rank * LOCAL_N, (rank + 1) * LOCAL_N)
        mine1, mine2 = q1[part].clone().requires_grad_(), q2[part].clone().requires_grad_()
        loss, accuracy = info_nce_with_queue(
            mine1, mine2, gather_no_grad(k1[part]), gather_no_grad(k2[part]), queue, TAU
        )
        loss.backward()
        results[rank] = (loss.item(), accuracy.item(), mine1.grad, mine2.grad)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_each_rank_scores_its_own_images_against_every_ranks_keys():
    q1, q2, k1, k2, queue = _inputs(WORLD * LOCAL_N, WORLD * LOCAL_N, DIM, QUEUE, seed=7)
    results = mp.Manager().dict()
    mp.start_processes(_rank_main, args=(free_port(), results), nprocs=WORLD, start_method="spawn", join=True)
    per_rank = []
    for rank in range(WORLD):
        part = slice(rank * LOCAL_N, (rank + 1) * LOCAL_N)
        mine1, mine2 = q1[part].clone().requires_grad_(), q2[part].clone().requires_grad_()
        expected, expected_acc = reference_queue_loss(mine1, mine2, k1, k2, queue, TAU, offset=rank * LOCAL_N)
        grad1, grad2 = torch.autograd.grad(expected, (mine1, mine2))
        loss, accuracy, got1, got2 = results[rank]
        assert loss == pytest.approx(expected.item(), rel=1e-10), rank
        assert accuracy == pytest.approx(expected_acc), rank
        torch.testing.assert_close(got1, grad1, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got2, grad2, rtol=1e-9, atol=1e-12)
        per_rank.append(loss)
    # DDP averages the ranks: the mean of their losses is the single-process loss on the global batch
    whole, _ = reference_queue_loss(q1, q2, k1, k2, queue, TAU)
    assert sum(per_rank) / WORLD == pytest.approx(whole.item(), rel=1e-10)
