"""SimCLRv2's distillation loss against its formula (eq. 3) at temperatures other than 1."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sslflow.eval.distill import distillation_loss

CLASSES, SIDE, BATCH = 5, 3, 4


def reference_distillation(teacher_logits: torch.Tensor, student_logits: torch.Tensor, t: float) -> torch.Tensor:
    """SimCLRv2 eq. 3, literally: L = -1/B sum_x sum_y P_T(y|x; t) log P_S(y|x; t),
    P(y|x; t) = exp(f(x)[y] / t) / sum_y' exp(f(x)[y'] / t), the same t for teacher and student."""
    total = 0.0
    for x in range(teacher_logits.shape[0]):
        teacher_z = sum(math.exp(teacher_logits[x, c].item() / t) for c in range(CLASSES))
        student_z = sum(torch.exp(student_logits[x, c] / t) for c in range(CLASSES))
        for y in range(CLASSES):
            p_teacher = math.exp(teacher_logits[x, y].item() / t) / teacher_z
            total = total - p_teacher * torch.log(torch.exp(student_logits[x, y] / t) / student_z)
    return total / teacher_logits.shape[0]


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, CLASSES)).double()


def _batch() -> dict:
    image = torch.randn(BATCH, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return {"image": 3 * image}  # logits of a few units: t moves the distributions far


@pytest.mark.parametrize("temperature", [0.25, 0.5, 2.0, 5.0])
def test_loss_and_gradient_match_the_formula(temperature):
    teacher, student = _net(0), _net(1)
    batch = _batch()
    loss = distillation_loss(teacher, temperature, "cpu")(student, batch)
    got = torch.autograd.grad(loss, list(student.parameters()))
    with torch.no_grad():
        teacher_logits = teacher(batch["image"])
    expected = reference_distillation(teacher_logits, student(batch["image"]), temperature)
    want = torch.autograd.grad(expected, list(student.parameters()))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    for g_got, g_want in zip(got, want):
        torch.testing.assert_close(g_got, g_want, rtol=1e-9, atol=1e-12)
    # and the closed form: d L / d student logits = (P_S - P_T) / (t B)
    student_logits = student(batch["image"]).detach().requires_grad_()
    (by_logits,) = torch.autograd.grad(
        distillation_loss(teacher, temperature, "cpu")(lambda _: student_logits, batch), student_logits
    )
    closed = (torch.softmax(student_logits / temperature, 1) - torch.softmax(teacher_logits / temperature, 1)) / (
        temperature * BATCH
    )
    torch.testing.assert_close(by_logits, closed, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("temperature", [0.5, 3.0])
def test_soft_targets_are_the_teachers_at_that_temperature(temperature):
    """A student that outputs the teacher's logits is at the loss's minimum (zero gradient), and the loss there is the
    entropy of the teacher's tempered distribution; the teacher receives no gradient and runs in eval mode."""
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, CLASSES), nn.BatchNorm1d(CLASSES)).double()
    with torch.no_grad():
        teacher[2].running_mean.uniform_(-1, 1)
    teacher.train()
    batch = _batch()
    loss_fn = distillation_loss(teacher, temperature, "cpu")
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        teacher_logits = teacher(batch["image"])
    copy = teacher_logits.clone().requires_grad_()
    loss = loss_fn(lambda _: copy, batch)
    (grad,) = torch.autograd.grad(loss, copy)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-12)
    p = torch.softmax(teacher_logits / temperature, dim=1)
    assert loss.item() == pytest.approx(-(p * p.log()).sum(1).mean().item(), rel=1e-10)
    assert all(param.grad is None for param in teacher.parameters())
