"""What the training loop needs from a method, and the pieces methods share."""

from __future__ import annotations

import torch
from torch import nn

from sslflow.methods.losses import ranked_cross_entropy


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
    """Cross-entropy and top-1 accuracy: the loss of every pretext task that is a classification
    (written out so that it compiles for a GPU, sslflow.methods.losses)."""
    loss, accuracy = ranked_cross_entropy(logits.float(), target)
    return loss, {"acc": accuracy}
