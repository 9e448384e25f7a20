"""An encoder in the form other codebases read: safetensors weights under torchvision's names, plus config.json.

sslflow's backbone is torchvision's ``ResNet`` subclassed (models/backbone.py), so
its parameter names already are torchvision's. Where the architecture is one
torchvision builds (ResNet-18/34/50/101/152, width 1x, the ImageNet 7x7 stem,
no SK, a global pool, 3 input channels), ``backbone.safetensors`` loads with
``strict=True`` into ``torchvision.models.resnetNN()`` whose ``fc`` is
``nn.Identity()``, and config.json names that builder under ``"torchvision"``.
Elsewhere (the small stem, other widths, SK, a 2x2 or 4x4 pool) ``"torchvision"``
is null and the network is rebuilt from config.json's fields by
``build_network`` (what ``sslflow.load_encoder`` does).

config.json is also what makes the features reproducible outside sslflow: the
resize, crop and normalisation of the eval view, the precision `extract` ran in,
the pooling and the feature width, and the params the encoder trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslflow.errors import UserError

FORMAT = "sslflow-encoder/1"
CONFIG = "config.json"
WEIGHTS = "backbone.safetensors"
HEAD_WEIGHTS = "head.safetensors"  # only when the features come after projection-head layers
ONNX = "encoder.onnx"
RAW_PIXELS = "raw_pixels"  # sslflow.models.encoder.RAW_PIXELS: the control whose "network" is a Flatten


def torchvision_builder(model: dict, in_channels: int) -> str | None:
    """The torchvision.models function whose network this backbone is, name for name; None when there is none."""
    plain = model["width"] == 1 and not model["sk"] and not model["small_stem"] and model["pool"] == 1
    return model["arch"] if plain and in_channels == 3 else None


def stem(model: dict) -> str:
    if model["small_stem"]:
        return f"small (3x3 conv, stride {model['stem_stride']}, no max-pool)"
    return "ResNet-D (three 3x3 convs, max-pool)" if model["sk"] else "imagenet (7x7 conv stride 2, max-pool)"


def portable_config(
    payload: dict[str, Any],
    *,
    preprocess: dict,
    precision: str,
    features_dtype: str,
    head_layers: int,
    trained_with: dict,
) -> dict[str, Any]:
    """config.json for an encoder file's contents (sslflow.models.encoder) and the eval view it was scored with."""
    method, model, channels = payload["method"], payload["model"], payload["in_channels"]
    network = method != RAW_PIXELS
    out_dim = payload["out_dim"]
    if head_layers:
        out_dim = payload["head_cfg"]["hidden_dim"]
    return {
        "format": FORMAT,
        "method": method,
        "fingerprint": payload["fingerprint"],
        "backbone": payload.get("backbone_name"),
        "architecture": model["arch"] if network else "flatten",
        "width": model["width"] if network else None,
        "stem": stem(model) if network else None,
        "sk": model["sk"] if network else None,
        "pool": {"kind": "adaptive_avg", "output_size": model["pool"]} if network else None,
        "model": model if network else None,
        "torchvision": torchvision_builder(model, channels) if network else None,
        "in_channels": channels,
        "input_size": payload["image_size"],
        "preprocess": preprocess,
        "precision": precision,
        "features_dtype": features_dtype,
        "head_layers": head_layers,
        "head": payload["head_cfg"] if head_layers else None,
        "feature_dim": out_dim,
        "params_m": payload.get("params_m"),
        "trained_with": trained_with,
        "files": {"weights": WEIGHTS, "onnx": ONNX, "head": HEAD_WEIGHTS if head_layers else None},
    }


def eval_preprocess(size: int, crop_frac: float, mean: list[float], std: list[float], channels: int) -> dict:
    """The eval view as data (augment.eval, augment.mean/std): what turns a picture into the network's input."""
    return {
        "resize_shorter_to": round(size / crop_frac),
        "center_crop": size,
        "interpolation": "bilinear",
        "antialias": True,
        "scale": "pixels / 255",
        "mean": per_channel(mean, channels),
        "std": per_channel(std, channels),
    }


def per_channel(values: list[float], channels: int) -> list[float]:
    return list(values) * channels if len(values) == 1 else list(values)


def write_config(path: Path, config: dict) -> None:
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_config(path: Path) -> dict[str, Any]:
    """config.json, checked: UserError naming it when missing, not JSON or not an sslflow encoder's."""
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found (an exported encoder folder holds {CONFIG} and {WEIGHTS})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable encoder config ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserError(f'{path}: not an sslflow encoder config (no "format": "{FORMAT}")')
    return config


def save_tensors(path: Path, state: dict[str, torch.Tensor], config: dict) -> None:
    from safetensors.torch import save

    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    metadata = {"format": "pt", "method": config["method"], "fingerprint": config["fingerprint"]}
    path.write_bytes(save(tensors, metadata=metadata))  # save_file would make the file private (0600)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors on the CPU; UserError naming it when missing, truncated or not safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"{path}: not found")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None


def build_network(config: dict) -> nn.Module:
    """The untrained network config.json describes: torchvision's own where it builds it, else sslflow's backbone."""
    if config["architecture"] == "flatten":
        return nn.Flatten()
    if config["torchvision"]:
        import torchvision

        network = getattr(torchvision.models, config["torchvision"])()
        network.fc = nn.Identity()
        return network
    from sslflow.models.backbone import build_backbone
    from sslflow.models.config import ModelCfg

    return build_backbone(ModelCfg(**config["model"]), config["in_channels"])


def head_prefix(config: dict) -> nn.Module | None:
    """The projection-head layers extract kept on the backbone (eval.extract.head_layers), or None."""
    if not config["head_layers"]:
        return None
    from sslflow.models.heads import projection_head

    return projection_head(**config["head"])[: config["head_layers"]]


def load_weights(network: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """strict=True: every name and shape as config.json says, or a UserError naming the file."""
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(
            f"{path}: weights do not fit the network its {CONFIG} describes ({str(exc).splitlines()[0]})"
        ) from None
