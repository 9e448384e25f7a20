"""The encoder file every evaluation stage reads: models/<method>/encoder.pt.

Tensors and primitive types only, so ``torch.load(weights_only=True)`` opens it
without running code: {"method", "model" (model-cfg dict), "in_channels",
"image_size", "backbone" (state dict), "head" (projection head state dict or
None), "head_cfg" (dict or None), "out_dim", "backbone_name", "params_m",
"fingerprint" (sha256 of the weights, so a report can tell two encoders apart)}.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslflow.atomic import atomic_path
from sslflow.errors import UserError
from sslflow.models.backbone import build_backbone
from sslflow.models.config import ModelCfg
from sslflow.models.heads import projection_head

RAW_PIXELS = "raw_pixels"
REQUIRED = ("method", "model", "in_channels", "image_size", "backbone", "head", "head_cfg", "fingerprint")


def fingerprint(*state_dicts: dict[str, torch.Tensor] | None) -> str:
    """sha256 over names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for index, state in enumerate(state_dicts):
        for name in sorted(state or {}):
            tensor = state[name].detach().cpu().contiguous()
            digest.update(f"{index}:{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cpu_state(module: nn.Module | None) -> dict[str, torch.Tensor] | None:
    if module is None:
        return None
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_encoder(
    path: Path | str,
    *,
    method: str,
    model_cfg: ModelCfg,
    in_channels: int,
    image_size: int,
    backbone: nn.Module,
    out_dim: int,
    backbone_name: str,
    params_m: float,
    head: nn.Module | None = None,
    head_cfg: dict | None = None,
) -> dict[str, Any]:
    """Write the encoder file atomically and return what was written."""
    backbone_state, head_state = cpu_state(backbone), cpu_state(head)
    payload = {
        "method": method,
        "model": model_cfg.model_dump(),
        "in_channels": in_channels,
        "image_size": image_size,
        "backbone": backbone_state,
        "head": head_state,
        "head_cfg": head_cfg,
        "out_dim": out_dim,
        "backbone_name": backbone_name,
        "params_m": params_m,
        "fingerprint": fingerprint(backbone_state, head_state),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return payload


def read_encoder(path: Path | str) -> dict[str, Any]:
    """The raw file contents, checked: UserError naming the path if missing, unsafe, incomplete or corrupt."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: encoder not found (run `sslflow pretrain` for this method first)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncation, non-tensor objects refused by weights_only
        raise UserError(
            f"{path}: not a readable encoder file ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from None
    missing = [key for key in REQUIRED if not isinstance(payload, dict) or key not in payload]
    if missing:
        raise UserError(f"{path}: not an encoder file (missing {', '.join(missing)})")
    if fingerprint(payload["backbone"], payload["head"]) != payload["fingerprint"]:
        raise UserError(f"{path}: weights do not match their fingerprint (file corrupt)")
    return payload


def load_encoder(
    path: Path | str, *, head_layers: int = 0, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Frozen feature extractor (eval mode, no grad) mapping (B, C, H, W) -> (B, D), and the file's metadata.

    head_layers > 0 appends that many layers of the projection head (SimCLRv2
    fine-tunes from the head's first layer). Callers that fine-tune re-enable
    gradients themselves.
    """
    payload = read_encoder(path)
    info = {k: v for k, v in payload.items() if k not in ("backbone", "head")}
    if payload["method"] == RAW_PIXELS:
        if head_layers:
            raise UserError(f"{path}: raw_pixels has no projection head to keep")
        module: nn.Module = nn.Flatten()
    else:
        backbone = build_backbone(ModelCfg(**payload["model"]), payload["in_channels"])
        backbone.load_state_dict(payload["backbone"])
        module = backbone
        if head_layers:
            module = nn.Sequential(backbone, _head_prefix(path, payload, head_layers))
            info["out_dim"] = payload["head_cfg"]["hidden_dim"]
    module.to(device).eval().requires_grad_(False)
    return module, info


def _head_prefix(path: Path | str, payload: dict, layers: int) -> nn.Module:
    cfg = payload["head_cfg"]
    if payload["head"] is None or cfg is None:
        raise UserError(f"{path}: {payload['method']} has no projection head (head_layers must be 0)")
    if not 0 < layers < cfg["layers"]:
        raise UserError(
            f"{path}: head_layers must be between 1 and {cfg['layers'] - 1} (the hidden layers of the head)"
        )
    head = projection_head(**cfg)
    head.load_state_dict(payload["head"])
    return head[:layers]
