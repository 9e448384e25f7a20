"""Contrastive losses as pure functions of embeddings.

Under DDP each rank holds a slice of the global batch. The embeddings are
gathered from every rank with ``torch.distributed.nn.functional.all_gather``,
whose backward sums the gradients that every rank's copy of the loss sends to
this rank's slice; every rank computes the same global-batch loss, so each
slice receives ``world_size`` times its global-batch gradient, and DDP's
gradient averaging divides that back: the update equals the single-process
update on the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """bf16 embeddings (autocast) are compared in float32: the softmax over 2N logits needs the mantissa."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks in rank order, keeping the autograd graph (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return torch.cat(dist_fn.all_gather(x), dim=0)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks in rank order, without gradients (momentum-encoder keys)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's NT-Xent over the global batch; returns (loss, positive-retrieval accuracy).

    z1[k], z2[k] are the projections of two views of image k (this rank's slice).
    With the 2N gathered projections, sim = cosine similarity and
    l(i, j) = -log exp(sim(z_i, z_j)/t) / sum_{k != i} exp(sim(z_i, z_k)/t),
    L = 1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]: a cross-entropy over each row of
    the similarity matrix with the diagonal removed and the other view as target.
    """
    if gather:
        z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
    n = z1.shape[0]
    z = F.normalize(_at_least_float32(torch.cat([z1, z2])), dim=1)
    logits = (z @ z.T) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = torch.arange(2 * n, device=z.device).roll(n)  # row i's positive is i + n (mod 2n)
    loss = F.cross_entropy(logits, targets)
    accuracy = (logits.argmax(dim=1) == targets).float().mean()
    return loss, accuracy


def info_nce_with_queue(
    q1: torch.Tensor,
    q2: torch.Tensor,
    k1: torch.Tensor,
    k2: torch.Tensor,
    queue: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory-bank contrastive loss (MoCo-style, as SimCLRv2 adds it); returns (loss, accuracy).

    q1, q2: online projections of the two views (this rank, with grad);
    k1, k2: momentum-encoder projections of the same views, gathered from all
    ranks (no grad); queue: (Q, d) normalised keys of earlier batches. Each query
    must pick the other view's key among every key of the global batch and the
    queue, for both orders of the pair, averaged.
    """
    rank = torch.distributed.get_rank() if dist.is_available() and dist.is_initialized() else 0
    n_local = q1.shape[0]
    targets = torch.arange(n_local, device=q1.device) + rank * n_local
    losses, hits = [], []
    for q, k in ((q1, k2), (q2, k1)):
        q = F.normalize(_at_least_float32(q), dim=1)
        candidates = torch.cat([F.normalize(_at_least_float32(k), dim=1), queue.to(q.dtype)])
        logits = q @ candidates.T / temperature
        losses.append(F.cross_entropy(logits, targets))
        hits.append((logits.argmax(dim=1) == targets).float().mean())
    return (losses[0] + losses[1]) / 2, (hits[0] + hits[1]) / 2
