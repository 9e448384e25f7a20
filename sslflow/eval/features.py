"""Frozen features: running an encoder over a split, and the .npz files the probes read.

A features file holds ``features`` (N, D), ``labels`` (N,) int64 and ``keys``
(N,) in shard order, plus the fingerprint of the encoder that made them. The
later stages compare that fingerprint with the encoder file, so features left
over from another encoder are refused instead of silently evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sslflow.errors import UserError
from sslflow.testpoints import pause_point

ARRAYS = ("features", "labels", "keys", "fingerprint", "head_layers", "backbone", "params_m")


@dataclass(frozen=True)
class FeatureSet:
    """One split's frozen features and where they came from."""

    features: np.ndarray  # (N, D) float16 or float32
    labels: np.ndarray  # (N,) int64
    keys: np.ndarray  # (N,) str
    fingerprint: str  # sha256 of the encoder weights
    head_layers: int  # projection-head layers kept on top of the backbone
    backbone: str  # table name of the architecture, e.g. "ResNet-18 (small stem)"
    params_m: float  # encoder parameters in millions

    def take(self, rows: np.ndarray) -> FeatureSet:
        """These rows only (in this order), from the same encoder."""
        return replace(self, features=self.features[rows], labels=self.labels[rows], keys=self.keys[rows])

    def rows(self, keys: Iterable[str], path: Path | str) -> np.ndarray:
        """Row indices of `keys` (e.g. a label subset); UserError naming `path` if one is absent."""
        index = {key: i for i, key in enumerate(self.keys.tolist())}
        wanted = list(keys)
        missing = [key for key in wanted if key not in index]
        if missing:
            raise UserError(f"{path}: {len(missing)} subset key(s) not among the features, e.g. {missing[0]!r}")
        return np.array([index[key] for key in wanted], dtype=np.int64)


def extract(
    encoder: nn.Module,
    batches: Iterable[dict],
    *,
    total: int,
    device: str,
    dtype: str = "float32",
    desc: str = "extract",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features, labels, keys) of every batch of an eval loader, in its order.

    Streams: one batch on the device at a time, features written into one
    preallocated array of `total` rows (the split's sample count). Convolutions
    run channels-last, the faster layout for oneDNN on CPU and for cuDNN.
    """
    features: np.ndarray | None = None
    labels = np.empty(total, np.int64)
    keys: list[str] = []
    filled = 0
    encoder.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for batch in tqdm(batches, desc=desc, unit="batch", disable=None, leave=False):
            images = batch["image"].to(device, non_blocking=True, memory_format=torch.channels_last)
            out = encoder(images).float().cpu().numpy()
            if features is None:
                features = np.empty((total, out.shape[1]), dtype)
            n = len(out)
            if filled + n > total:
                raise UserError(f"{desc}: the loader yielded more than the {total} samples the manifest lists")
            features[filled : filled + n] = out
            labels[filled : filled + n] = batch["label"].cpu().numpy()
            keys.extend(batch["key"])
            filled += n
            pause_point("extract.rows", filled)
    if features is None or filled != total:
        raise UserError(f"{desc}: the loader yielded {filled} samples, the manifest lists {total}")
    if len(set(keys)) != total:
        raise UserError(f"{desc}: the loader yielded {total - len(set(keys))} repeated sample key(s)")
    return features, labels, keys


def save_features(path: Path | str, features: FeatureSet) -> None:
    """Write one split as an uncompressed .npz (no pickles: opened with allow_pickle=False)."""
    np.savez(
        path,
        features=features.features,
        labels=features.labels.astype(np.int64),
        keys=np.asarray(features.keys, dtype=str),
        fingerprint=np.asarray(features.fingerprint),
        head_layers=np.asarray(features.head_layers, np.int64),
        backbone=np.asarray(features.backbone),
        params_m=np.asarray(features.params_m, np.float64),
    )


def load_features(path: Path | str, *, fingerprint: str | None, method: str) -> FeatureSet:
    """Read a features file; UserError naming it when missing, malformed or made by another encoder."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: features not found (run `sslflow extract --method {method}` first)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in ARRAYS}
    except KeyError as exc:
        raise UserError(f"{path}: not a features file (missing {exc.args[0]!r})") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable features file ({exc})") from None
    found = str(arrays["fingerprint"])
    if fingerprint is not None and found != fingerprint:
        raise UserError(
            f"{path}: stale features: extracted with encoder {found[:12]}, but the {method} encoder is now "
            f"{fingerprint[:12]} (run `sslflow extract --method {method}`)"
        )
    features, labels = arrays["features"], arrays["labels"]
    if features.ndim != 2 or labels.shape != (len(features),) or arrays["keys"].shape != (len(features),):
        raise UserError(f"{path}: features, labels and keys disagree in shape")
    return FeatureSet(
        features=features,
        labels=labels.astype(np.int64),
        keys=arrays["keys"],
        fingerprint=found,
        head_layers=int(arrays["head_layers"]),
        backbone=str(arrays["backbone"]),
        params_m=float(arrays["params_m"]),
    )
