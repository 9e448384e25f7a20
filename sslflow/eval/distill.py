"""SimCLRv2 self-distillation: a fine-tuned teacher labels unlabelled train images for a student.

The loss is SimCLRv2's (eq. 3), the cross-entropy between the teacher's and the
student's tempered class distributions on the same augmented image,

    -sum_y P_T(y | x; t) log P_S(y | x; t),

so the teacher labels each train image as it is seen (no stored label table is
needed and every crop gets its own soft label). No ground-truth labels are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslflow.eval.device import to_model
from sslflow.eval.finetune import LossFn


def distillation_loss(teacher: nn.Module, temperature: float, device: str) -> LossFn:
    """Loss of a student against a frozen teacher's soft labels at `temperature`."""
    teacher.eval().requires_grad_(False)

    def loss(student: nn.Module, batch: dict) -> torch.Tensor:
        images = to_model(batch["image"], device)
        with torch.no_grad():
            target = F.softmax(teacher(images) / temperature, dim=1)
        return -(target * F.log_softmax(student(images) / temperature, dim=1)).sum(dim=1).mean()

    return loss
