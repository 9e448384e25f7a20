"""The inputs the `linear` and `lowlabel` stages share: a method's features, checked against its encoder."""

from __future__ import annotations

import numpy as np

from sslflow import paths
from sslflow.errors import UserError
from sslflow.eval.features import FeatureSet, load_features
from sslflow.eval.split import EvalSplit


def encoder_fingerprint(method: str) -> str:
    """The fingerprint recorded in models/<method>/encoder.pt.

    Read straight from the file (memory-mapped, weights_only) rather than through
    sslflow.models.encoder, whose torchvision import costs seconds a stage that
    only compares two strings should not pay. The weights' integrity is checked
    where they are used (extract, fine-tuning).
    """
    import torch

    path = paths.encoder(method)
    if not path.exists():
        raise UserError(f"{path}: encoder not found (run `sslflow pretrain --method {method}` first)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return str(payload["fingerprint"])
    except Exception as exc:  # truncated file, not a dict, no fingerprint
        raise UserError(f"{path}: not a readable encoder file ({type(exc).__name__})") from None


def method_features(method: str, split: EvalSplit) -> tuple[FeatureSet, FeatureSet]:
    """(train, scored) features of `method` under the protocol's split: train.npz and val.npz, or under
    `eval.split: val` train.npz's rows outside and inside the validation slice. UserError naming the file
    if one was made by another encoder."""
    fingerprint = encoder_fingerprint(method)
    train_path = paths.features(method, "train")
    train = load_features(train_path, fingerprint=fingerprint, method=method)
    if split.name == "test":
        return train, load_features(paths.features(method, "val"), fingerprint=fingerprint, method=method)
    held_out = np.isin(train.keys, np.array(sorted(split.held_out)))
    if held_out.sum() != len(split.held_out):
        raise UserError(f"{train_path}: holds {held_out.sum()} of the validation slice's {len(split.held_out)} images")
    return train.take(np.flatnonzero(~held_out)), train.take(np.flatnonzero(held_out))


def num_classes(*sets: FeatureSet) -> int:
    """Classes the probe scores: one past the largest label seen (ids are dense, from the manifest)."""
    return int(max(int(s.labels.max()) for s in sets)) + 1
