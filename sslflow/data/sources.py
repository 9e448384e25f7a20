"""The three source layouts of INTERFACE.md, each listed into a `Source` of records and readers."""

from __future__ import annotations

from pathlib import Path

from sslflow.data.config import DataCfg
from sslflow.data.records import SPLITS, Source
from sslflow.errors import UserError


def open_source(cfg: DataCfg, work: Path) -> Source:
    """List `cfg.source` (no image is read here); `work` is scratch space removed with the output's temp dir."""
    root = Path(cfg.source)
    if not root.is_dir():
        raise UserError(
            f"data.source {root}: not found" if not root.exists() else f"data.source {root}: not a directory"
        )
    if cfg.layout == "mnist-idx":
        from sslflow.data.idx import open_mnist_idx

        source = open_mnist_idx(root, work, cfg.class_names)
    elif cfg.layout == "imagefolder":
        from sslflow.data.folders import open_imagefolder

        source = open_imagefolder(root)
    else:
        from sslflow.data.imagenet import open_imagenet

        source = open_imagenet(root, cfg.val_labels)
    for split in SPLITS:
        if not source.records.get(split):
            raise UserError(f"{root}: no {split} images")
    return source
