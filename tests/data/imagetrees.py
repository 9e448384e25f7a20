"""Small image trees in the three folder shapes `shard` reads, with real PIL-encoded JPEG and PNG bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def pixels(seed: int, size: tuple[int, int] = (48, 64), channels: int = 3) -> np.ndarray:
    """A smooth random image (gradients plus noise), so JPEGs are of a realistic kind."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = (
        rng.uniform(0, 255, channels)
        + rng.uniform(-2, 2, channels) * xx[..., None]
        + rng.uniform(-2, 2, channels) * yy[..., None]
    )
    image = np.clip(base + rng.normal(0, 12, (h, w, channels)), 0, 255).astype(np.uint8)
    return image[..., 0] if channels == 1 else image


def jpeg_bytes(seed: int, size=(48, 64), mode: str = "RGB", **options) -> bytes:
    image = Image.fromarray(pixels(seed, size, 1 if mode == "L" else 3))
    if mode == "CMYK":
        image = image.convert("CMYK")
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90, **options)
    return buf.getvalue()


def png_bytes(seed: int, size=(40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels(seed, size)).save(buf, format="PNG")
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_imagefolder(
    root: Path, classes=("cat", "dog", "fox"), train_per_class: int = 6, val_per_class: int = 2
) -> Path:
    """ROOT/{train,val}/<class>/...: mostly JPEGs (one progressive, one grey), one PNG per train class."""
    seed = 0
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c, name in enumerate(classes):
            for i in range(count):
                seed += 1
                if split == "train" and i == count - 1:
                    write(root / split / name / f"img{i}.png", png_bytes(seed))
                elif i == 1:
                    write(root / split / name / f"img{i}.jpeg", jpeg_bytes(seed, progressive=True))
                elif i == 2:
                    write(root / split / name / f"img{i}.jpg", jpeg_bytes(seed, mode="L"))
                else:
                    write(root / split / name / f"img{i}.jpg", jpeg_bytes(seed))
    return root


def make_imagenet(
    root: Path,
    wnids=("n01440764", "n01443537", "n01484850"),
    train_per_class: int = 5,
    val: int = 6,
    flat_val: bool = True,
    csv_in: str = "root",
) -> Path:
    """ILSVRC2012 shape: train/<wnid>/<wnid>_<n>.JPEG; val flat with LOC_val_solution.csv, or in wnid folders."""
    seed = 1000
    for wnid in wnids:
        for i in range(train_per_class):
            seed += 1
            write(root / "train" / wnid / f"{wnid}_{10000 + i}.JPEG", jpeg_bytes(seed))
    rows = ["ImageId,PredictionString"]
    for n in range(1, val + 1):
        seed += 1
        wnid = wnids[n % len(wnids)]
        name = f"ILSVRC2012_val_{n:08d}"
        if flat_val:
            write(root / "val" / f"{name}.JPEG", jpeg_bytes(seed))
            rows.append(f"{name},{wnid} 10 20 200 180 {wnid} 30 40 100 120")
        else:
            write(root / "val" / wnid / f"{name}.JPEG", jpeg_bytes(seed))
    if flat_val:
        csv_path = root / "LOC_val_solution.csv" if csv_in == "root" else root / "val" / "LOC_val_solution.csv"
        csv_path.write_text("\n".join(rows) + "\n")
    return root
