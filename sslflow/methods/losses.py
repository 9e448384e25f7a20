"""Contrastive losses as pure functions of embeddings.

Under DDP each rank holds a slice of the global batch. A rank scores only its
own rows (its 2n projections) against the columns of every rank (the 2N
gathered projections), as lightly and google-research/simclr do: an (2n, 2N)
logit matrix instead of everyone building the same (2N, 2N) one. The gather
keeps the autograd graph and its backward sums, over ranks, the gradients the
columns receive, so this rank's slice gets the gradient of the sum of all
ranks' losses, which is ``world_size`` times its global-batch gradient; DDP's
gradient averaging divides that back: the update equals the single-process
update on the global batch. The loss value each rank returns is the
global-batch mean (one scalar all-reduce), so every rank logs the same number.

Logits are computed in float32 with autocast off: under bf16 autocast a matmul
is cast back to bf16, whose 8-bit mantissa shifts a softmax over thousands of
logits at temperature 0.1 by ~1e-3.

Every cross-entropy here is written out (`ranked_cross_entropy`: logsumexp
minus the target's logit, self-similarity masked with a finite value) rather
than `F.cross_entropy` over a matrix masked with -inf: compiled for a GPU,
Inductor fuses the latter, with the argmax beside it, into one persistent
reduction (`triton_per_fused_nll_loss_forward_*`) that Triton 3.6 fails to
lower on an H200 (`PassManager::run failed` in make_ttgir), killing the run at
its first step. The value and gradient are the same.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """float32 at least (float64 stays): the softmax over many logits needs the mantissa."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks in rank order, keeping the autograd graph (identity when not distributed).

    The backward reduce-scatters the gradients of every rank's copy back to the
    slice each rank contributed, summed.
    """
    if not _distributed():
        return x
    # what torch 2.14's deprecation of torch.distributed.nn.functional.all_gather points to; differentiable
    from torch.distributed._functional_collectives import all_gather_single

    return all_gather_single(x.contiguous(), gather_dim=0, group=dist.group.WORLD)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks in rank order, without gradients (momentum-encoder keys)."""
    if not _distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def global_mean(local: torch.Tensor) -> torch.Tensor:
    """`local` with the value of its mean over ranks and the gradient of `local` (equal batches per rank)."""
    if not _distributed():
        return local
    total = local.detach().clone()
    dist.all_reduce(total)
    return local + (total / dist.get_world_size() - local.detach())


# The self-similarity's logit: far enough below any cosine / temperature that exp() of it minus the
# row's maximum is exactly 0 in float32 (so the loss is the -inf-masked one), yet finite.
MASKED_LOGIT = -1e9


def ranked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of each row against its target column, and how often the target ranks first.

    F.cross_entropy's value and gradient, in the form that compiles everywhere (module docstring).
    The accuracy compares the target's logit with the row's maximum (a tie, of measure zero for
    float logits, counts as a hit where argmax would pick the lower index).
    """
    target_logits = logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    loss = (torch.logsumexp(logits, dim=1) - target_logits).mean()
    accuracy = (target_logits.detach() >= logits.detach().amax(dim=1)).float().mean()
    return loss, accuracy


def float32_logits(head: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    """A classifier head's logits in float32 with autocast off (Exemplar's thousands of surrogate classes)."""
    with torch.autocast(features.device.type, enabled=False):
        return head(full_precision(features))


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's NT-Xent over the global batch; returns (loss, positive-retrieval accuracy), both global means.

    z1[k], z2[k] are the projections of two views of image k (this rank's slice).
    With the 2N gathered projections, sim = cosine similarity and
    l(i, j) = -log exp(sim(z_i, z_j)/t) / sum_{k != i} exp(sim(z_i, z_k)/t),
    L = 1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]: a cross-entropy over each row of
    the similarity matrix with the diagonal removed and the other view as target.
    This rank computes the rows of its own 2n projections.
    """
    with torch.autocast(z1.device.type, enabled=False):
        rows1 = F.normalize(full_precision(z1), dim=1)
        rows2 = F.normalize(full_precision(z2), dim=1)
        cols1, cols2 = (gather_with_grad(rows1), gather_with_grad(rows2)) if gather else (rows1, rows2)
        n, big_n = rows1.shape[0], cols1.shape[0]
        rows = torch.cat([rows1, rows2])
        logits = rows @ torch.cat([cols1, cols2]).T / temperature
        # global column of local row i: view 1 at offset rank * n, view 2 another N on; the positive is the other view
        first = torch.arange(n, device=z1.device) + (_rank() * n if gather else 0)
        own = torch.cat([first, first + big_n])
        targets = torch.cat([first + big_n, first])
        logits = logits.masked_fill(F.one_hot(own, 2 * big_n).bool(), MASKED_LOGIT)
        loss, accuracy = ranked_cross_entropy(logits, targets)
    if gather:
        loss, accuracy = global_mean(loss), global_mean(accuracy)
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
    queue, for both orders of the pair, averaged. Logits in float32, autocast off.
    """
    n_local = q1.shape[0]
    targets = torch.arange(n_local, device=q1.device) + _rank() * n_local
    losses, hits = [], []
    with torch.autocast(q1.device.type, enabled=False):
        for q, k in ((q1, k2), (q2, k1)):
            q = F.normalize(full_precision(q), dim=1)
            candidates = torch.cat([F.normalize(full_precision(k), dim=1), queue.to(q.dtype)])
            loss, accuracy = ranked_cross_entropy(q @ candidates.T / temperature, targets)
            losses.append(loss)
            hits.append(accuracy)
    return (losses[0] + losses[1]) / 2, (hits[0] + hits[1]) / 2
