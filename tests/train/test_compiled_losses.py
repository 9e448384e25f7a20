"""The methods' losses compiled by Inductor: the same value and gradients as eager, and no fused NLL kernel.

On an H200 (torch 2.11, Triton 3.6) Inductor fused NT-Xent's `F.cross_entropy` over the
-inf-masked similarity matrix, with the argmax beside it, into one persistent reduction
(`triton_per_fused_nll_loss_forward_*`) that Triton failed to lower, and every compiled run died
at its first step. The CPU backend generates its kernels from the same fused graph, so the kernel
names it prints say whether that reduction is still there.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch._inductor.utils import run_and_get_code

from sslflow.methods.base import classification
from sslflow.methods.losses import info_nce_with_queue, nt_xent


def _kernel_names(code: list[str]) -> set[str]:
    return {name for source in code for name in re.findall(r"\b(?:cpp|triton)_\w*fused\w*", source)}


def _compiled_and_eager(loss_fn, *inputs: torch.Tensor):
    """(compiled loss, gradients, kernel names), (eager loss, gradients) of `loss_fn` on copies of `inputs`."""

    def forward_backward(*xs):
        loss = loss_fn(*xs)
        loss.backward()
        return loss.detach()

    torch._dynamo.reset()
    leaves = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
    compiled = torch.compile(forward_backward, backend="inductor", fullgraph=False)
    loss, code = run_and_get_code(compiled, *leaves)
    eager_leaves = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
    eager_loss = forward_backward(*eager_leaves)
    grads = [x.grad for x in leaves if x.requires_grad]
    eager_grads = [x.grad for x in eager_leaves if x.requires_grad]
    return (loss, grads, _kernel_names(code)), (eager_loss, eager_grads)


def _assert_same(compiled, eager) -> None:
    (loss, grads, names), (eager_loss, eager_grads) = compiled, eager
    assert names, "Inductor generated no kernel: the loss did not go through the compiler"
    assert not [n for n in names if "nll_loss" in n], names
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ntxent_compiles_without_the_fused_nll_reduction_and_matches_eager():
    """The graph that failed on the GPU: the projection head's output -> NT-Xent, SimCLR's batch and width."""
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(128, 128, generator=g), torch.randn(128, 128, generator=g)
    head = torch.nn.Linear(128, 128)
    weight = head.weight.detach().clone().requires_grad_(True)

    def loss_fn(a, b, w):
        return nt_xent(F.linear(a, w), F.linear(b, w), 0.1, gather=False)[0]

    _assert_same(*_compiled_and_eager(loss_fn, z1, z2, weight))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_queue_and_classification_losses_compile_without_the_fused_nll_reduction():
    """SimCLRv2's memory bank and every classification pretext task (rotation, relative position,
    exemplar, the supervised control), in one graph: one compile covers both."""
    g = torch.Generator().manual_seed(1)
    q1, q2 = torch.randn(64, 32, generator=g), torch.randn(64, 32, generator=g)
    k1, k2 = torch.randn(64, 32, generator=g), torch.randn(64, 32, generator=g)
    queue = F.normalize(torch.randn(256, 32, generator=g), dim=1)
    logits = torch.randn(64, 10, generator=g)
    targets = torch.randint(0, 10, (64,), generator=g)

    def loss_fn(a, b, c, d, e, x):
        return info_nce_with_queue(a, b, c, d, e, 0.2)[0] + classification(x, targets)[0]

    q1.requires_grad_(True)
    q2.requires_grad_(True)
    logits.requires_grad_(True)
    _assert_same(*_compiled_and_eager(loss_fn, q1, q2, k1, k2, queue, logits))


def test_the_written_out_cross_entropy_equals_torchs():
    """ranked_cross_entropy is F.cross_entropy (value and gradient) and argmax's accuracy."""
    from sslflow.methods.losses import ranked_cross_entropy

    g = torch.Generator().manual_seed(2)
    logits = torch.randn(32, 50, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (32,), generator=g)
    targets[:8] = logits[:8].argmax(dim=1)  # some hits
    loss, accuracy = ranked_cross_entropy(logits, targets)
    expected = F.cross_entropy(logits, targets)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-15)
    assert accuracy.item() == (logits.argmax(dim=1) == targets).double().mean().item()
