"""Method names -> method modules, built from params (torch is imported only to build one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sslflow.errors import UserError
from sslflow.train.config import CONTROLS

if TYPE_CHECKING:
    from sslflow.methods.base import Method

TRAINED = ("simclr", "simclr_v2", "rotation", "relpos", "exemplar", "supervised")
ALL = TRAINED + CONTROLS


def check_method(name: str) -> str:
    if name not in ALL:
        raise UserError(f"--method {name}: unknown method (known: {', '.join(ALL)})")
    return name


def build_method(name: str, params, in_channels: int, num_classes: int) -> Method:
    """The method module with a fresh backbone; call under a seeded generator for reproducible weights."""
    from sslflow.models.backbone import build_backbone

    backbone = build_backbone(params.model, in_channels)
    dim = backbone.out_dim
    section = getattr(params.pretrain, check_method(name))
    if name in ("simclr", "simclr_v2"):
        from sslflow.methods.simclr import SimCLR

        return SimCLR(
            backbone,
            dim,
            temperature=section.temperature,
            proj_dim=section.proj_dim,
            proj_hidden=section.proj_hidden or dim,
            proj_layers=section.proj_layers,
            queue_size=section.queue_size,
            momentum=section.momentum,
        )
    if name == "rotation":
        from sslflow.methods.rotation import Rotation

        return Rotation(backbone, dim, section.hidden)
    if name == "relpos":
        from sslflow.methods.relative_position import RelativePosition

        return RelativePosition(backbone, dim, section.hidden)
    if name == "exemplar":
        from sslflow.methods.exemplar import Exemplar

        return Exemplar(backbone, dim, params.augment.exemplar.classes)
    if name == "supervised":
        from sslflow.methods.supervised import Supervised

        return Supervised(backbone, dim, num_classes)
    raise UserError(f"--method {name}: a control; it has nothing to train")
