"""What the training loop needs from a method, and the pieces methods share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Method(nn.Module):
    """A backbone plus whatever a pretext task adds; forward(batch) -> (loss, metrics).

    `kind` names the loader views the method consumes (sslflow.augment.loader
    kinds); the registry sets it from the method's MethodSpec. Metrics are
    detached scalar tensors ("acc": pretext accuracy).
    """

    kind: str = ""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def batch_images(self, batch: dict) -> int:
        """Dataset images in a batch (not views): the unit of images/s."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each optimizer step (momentum encoders update here)."""

    def encoder_head(self) -> tuple[nn.Module | None, dict | None]:
        """The projection head saved beside the backbone in encoder.pt, and its config."""
        return None, None


def classification(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy and top-1 accuracy: the loss of every pretext task that is a classification."""
    loss = F.cross_entropy(logits.float(), target)
    accuracy = (logits.detach().argmax(dim=1) == target).float().mean()
    return loss, {"acc": accuracy}
