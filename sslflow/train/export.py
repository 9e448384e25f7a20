"""The outputs of a pretrain stage besides the checkpoint: encoder.pt and metrics/<method>/pretrain.json."""

from __future__ import annotations

from torch import nn

from sslflow import paths
from sslflow.atomic import write_json
from sslflow.models.backbone import count_params_m, describe
from sslflow.models.encoder import RAW_PIXELS, save_encoder


def export_encoder(params, name: str, backbone: nn.Module, in_channels: int, head=None, head_cfg=None) -> dict:
    """models/<name>/encoder.pt from a backbone (or the raw-pixels Flatten) and an optional projection head."""
    size = params.augment.size
    if name == RAW_PIXELS:
        out_dim, label, params_m = in_channels * size * size, "raw pixels", 0.0
    else:
        out_dim, label, params_m = backbone.out_dim, describe(params.model), count_params_m(backbone)
    return save_encoder(
        paths.encoder(name),
        method=name,
        model_cfg=params.model,
        in_channels=in_channels,
        image_size=size,
        backbone=backbone,
        out_dim=out_dim,
        backbone_name=label,
        params_m=round(params_m, 4),
        head=head,
        head_cfg=head_cfg,
    )


def write_metrics(name: str, summary: dict) -> None:
    write_json(paths.metrics(name, "pretrain"), summary)
