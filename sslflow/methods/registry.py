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


def method_class(name: str) -> type[Method]:
    """The module class of a trained method (imports torch)."""
    from sslflow.methods.exemplar import Exemplar
    from sslflow.methods.relative_position import RelativePosition
    from sslflow.methods.rotation import Rotation
    from sslflow.methods.simclr import SimCLR
    from sslflow.methods.supervised import Supervised

    classes = {"simclr": SimCLR, "simclr_v2": SimCLR, "rotation": Rotation, "relpos": RelativePosition}
    classes |= {"exemplar": Exemplar, "supervised": Supervised}
    if check_method(name) in CONTROLS:
        raise UserError(f"--method {name}: a control; it has nothing to train")
    return classes[name]


def view_kind(name: str) -> str | None:
    """The augmentation view a method trains on; None for the controls."""
    return None if check_method(name) in CONTROLS else method_class(name).kind


def build_method(name: str, params, in_channels: int, num_classes: int) -> Method:
    """The method module with a fresh backbone; call under a seeded generator for reproducible weights."""
    from sslflow.models.backbone import build_backbone

    backbone = build_backbone(params.model, in_channels)
    dim = backbone.out_dim
    section = getattr(params.pretrain, check_method(name))
    cls = method_class(name)
    if name in ("simclr", "simclr_v2"):
        return cls(
            backbone,
            dim,
            temperature=section.temperature,
            proj_dim=section.proj_dim,
            proj_hidden=section.proj_hidden or dim,
            proj_layers=section.proj_layers,
            queue_size=section.queue_size,
            momentum=section.momentum,
        )
    if name in ("rotation", "relpos"):
        return cls(backbone, dim, section.hidden)
    if name == "exemplar":
        return cls(backbone, dim, params.augment.exemplar.classes)
    return cls(backbone, dim, num_classes)  # supervised (method_class refused the controls)
