"""Frozen features: running an encoder over a split, and the .npz files the probes read.

A features file holds ``features`` (N, D), ``labels`` (N,) int64 and ``keys``
(N,) in shard order, plus the fingerprint of the encoder that made them. The
later stages compare that fingerprint with the encoder file, so features left
over from another encoder are refused instead of silently evaluated.

At ImageNet size the features are 1.28M x 2048 (5.2 GB in float16), so neither
side holds them in memory: the extractor streams them into the file a batch at a
time, and readers map them (the .npz is uncompressed, and ``features`` is mapped
where it lies inside it). The file stays an ordinary ``np.load``-able .npz.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sslflow.errors import UserError
from sslflow.eval.device import to_model
from sslflow.precision import autocast
from sslflow.testpoints import pause_point

ARRAYS = ("features", "labels", "keys", "fingerprint", "head_layers", "backbone", "params_m")
ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, fixed fields, name and extra-field lengths


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


class FeatureWriter:
    """One split's features file, written as the batches come: memory holds a batch, not the split.

    ``features`` streams into an uncompressed zip member of the final .npz (its
    shape, the split's sample count from the manifest, goes in the header first);
    labels, keys and the provenance follow when the last batch is in.
    """

    def __init__(self, path: Path | str, *, total: int, dtype: str, meta: dict, desc: str):
        self.path, self.total, self.dtype, self.meta, self.desc = Path(path), total, np.dtype(dtype), meta, desc
        self.labels = np.empty(total, np.int64)
        self.keys: list[str] = []
        self.filled = 0
        self.dim = 0
        self._zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._member = None

    def add(self, features: np.ndarray, labels: np.ndarray, keys: list[str]) -> None:
        n = len(features)
        if self.filled + n > self.total:
            raise UserError(f"{self.desc}: the loader yielded more than the {self.total} samples the manifest lists")
        if self._member is None:
            self.dim = features.shape[1]
            self._member = self._zip.open("features.npy", "w", force_zip64=True)
            header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False}
            np.lib.format.write_array_header_2_0(self._member, {**header, "shape": (self.total, features.shape[1])})
        self._member.write(np.ascontiguousarray(features, self.dtype).tobytes())
        self.labels[self.filled : self.filled + n] = labels
        self.keys.extend(keys)
        self.filled += n

    def close(self) -> int:
        """Check the count and the keys, write the small members; the number of rows."""
        if self._member is None or self.filled != self.total:
            raise UserError(f"{self.desc}: the loader yielded {self.filled} samples, the manifest lists {self.total}")
        if len(set(self.keys)) != self.total:
            raise UserError(
                f"{self.desc}: the loader yielded {self.total - len(set(self.keys))} repeated sample key(s)"
            )
        self._member.close()
        self._member = None
        arrays = {"labels": self.labels, "keys": np.asarray(self.keys, dtype=str), **_meta_arrays(self.meta)}
        for name, array in arrays.items():
            with self._zip.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
        self._zip.close()
        return self.filled

    def abort(self) -> None:
        """Leave the half-written file closed (the caller's atomic directory removes it)."""
        if self._member is not None:
            self._member.close()
        self._zip.close()


def extract(
    encoder: nn.Module, batches: Iterable[dict], writer: FeatureWriter, *, device: str, bf16: bool = False
) -> int:
    """Run every batch of an eval loader through the encoder into `writer`, in loader order; rows written.

    One batch on the device at a time. Convolutions run channels-last, the
    faster layout for oneDNN on CPU and for cuDNN; under bf16 autocast when the
    encoder trained that way (sslflow.precision).
    """
    encoder.eval().to(memory_format=torch.channels_last)
    try:
        with torch.inference_mode(), autocast(device, bf16):
            for batch in tqdm(batches, desc=writer.desc, unit="batch", disable=None, leave=False):
                out = encoder(to_model(batch["image"], device)).float().cpu().numpy()
                writer.add(out, batch["label"].cpu().numpy(), batch["key"])
                pause_point("extract.rows", writer.filled)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _meta_arrays(meta: dict) -> dict[str, np.ndarray]:
    return {
        "fingerprint": np.asarray(meta["fingerprint"]),
        "head_layers": np.asarray(meta["head_layers"], np.int64),
        "backbone": np.asarray(meta["backbone"]),
        "params_m": np.asarray(meta["params_m"], np.float64),
    }


def mapped_member(path: Path, zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """An uncompressed .npy member of a zip, memory-mapped where it lies (read-only); read whole otherwise."""
    info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        with zf.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        signature, name_len, extra_len = ZIP_LOCAL_HEADER.unpack(fh.read(ZIP_LOCAL_HEADER.size))
        if signature != b"PK\x03\x04":
            raise ValueError(f"no zip entry header for {name}")
        fh.seek(info.header_offset + ZIP_LOCAL_HEADER.size + name_len + extra_len)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(fh)
        offset = fh.tell()
    if dtype.hasobject:
        raise ValueError(f"{name} holds Python objects")
    if not shape or 0 in shape:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran_order else "C")


def load_features(path: Path | str, *, fingerprint: str | None, method: str) -> FeatureSet:
    """Read a features file, its rows memory-mapped; UserError naming it when missing, malformed or made by
    another encoder."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: features not found (run `sslflow extract --method {method}` first)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in ARRAYS if name != "features"}
            arrays["features"] = mapped_member(path, npz.zip, "features.npy")
    except KeyError as exc:
        raise UserError(f"{path}: not a features file (missing {_member_name(exc)!r})") from None
    except (OSError, ValueError, zipfile.BadZipFile, struct.error) as exc:
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


def _member_name(exc: KeyError) -> str:
    """'labels' from np.load's "labels is not a file in the archive" or zipfile's "There is no item named ..."."""
    text = str(exc.args[0])
    for name in ARRAYS:
        if text.startswith(f"{name} ") or f"'{name}.npy'" in text:
            return name
    return text
