"""Image trees for the benchmarks: ImageNet-sized JPEGs in the layouts `shard` reads.

Encoding 100,000 distinct 500x375 JPEGs would take longer than the benchmarks
themselves, so a few dozen textured base images are encoded once and each file
is made distinct by a JPEG comment segment: every file is a different, valid
JPEG of ILSVRC2012's typical size (~110 KB at quality 85), and decoding one
costs what decoding a photo of that size costs. A marker beside a finished
tree lets later runs reuse it.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

BASES = 48
JPEG_SIZE = (500, 375)  # ILSVRC2012's typical image (w, h)


def base_jpeg(seed: int, size: tuple[int, int] = JPEG_SIZE, quality: int = 85) -> bytes:
    """A textured photo-like JPEG; at 500x375 and quality 85 ~110 KB (ILSVRC2012 averages ~110 KB)."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    image = rng.uniform(40, 200, 3) + 40 * np.sin(
        xx[..., None] / rng.uniform(5, 40, 3) + yy[..., None] / rng.uniform(5, 40, 3)
    )
    image = np.clip(image + rng.normal(0, 34, (height, width, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_photo(job: tuple[Path, str, int, int, int]) -> None:
    """(root, split, n, classes, seed): one `synthetic_photo` at root/split/class_<n % classes>/<n>.jpg, its generator
    seeded by (seed, split, n); a module light enough for a process pool's workers to import in a blink."""
    root, split, n, classes, seed = job
    rng = np.random.default_rng([seed, ("train", "val").index(split), n])
    buffer = io.BytesIO()
    Image.fromarray(synthetic_photo(rng)).save(buffer, "JPEG", quality=92)
    (root / split / f"class_{n % classes}" / f"{n:06d}.jpg").write_bytes(buffer.getvalue())


def synthetic_photo(rng: np.random.Generator, size: tuple[int, int] = JPEG_SIZE) -> np.ndarray:
    """Smooth colour regions + mid-frequency texture + sensor-like noise: decodes like a photo, not like noise."""
    w, h = size

    def upsampled(grid: tuple[int, int]) -> np.ndarray:
        small = rng.integers(0, 256, (*grid, 3), dtype=np.uint8)
        return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), np.float32)

    image = upsampled((6, 8)) + 0.35 * (upsampled((94, 125)) - 128) + rng.normal(0, 8, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same image with a COM segment after SOI: a distinct, valid file."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def build_imagefolder(root: Path, images: int, classes: int = 100) -> Path:
    """ROOT/{train,val}/cNNN/*.jpg: `images` train files (val adds 5%) over `classes` folders."""

    def files():
        counts = {"train": images, "val": max(classes, images // 20)}
        for split, count in counts.items():
            for i in range(count):
                yield root / split / f"c{i % classes:03d}" / f"{split}_{i:07d}.jpg", f"{split} {i}"

    return _build(root, files, images + max(classes, images // 20), base_jpeg)


def wnid(c: int) -> str:
    return f"n{10000000 + c:08d}"


def build_ilsvrc(
    root: Path,
    images: int,
    classes: int = 1000,
    val_share: float = 0.04,
    jpeg_size: tuple[int, int] = JPEG_SIZE,
    quality: int = 85,
) -> Path:
    """ILSVRC2012 as distributed: train/<wnid>/<wnid>_<n>.JPEG over `classes` wnids, a flat
    val/ILSVRC2012_val_<n>.JPEG of val_share x images (ImageNet's 50k / 1.28M), and
    LOC_val_solution.csv labelling it."""
    n_val = max(classes, round(images * val_share))

    def files():
        for i in range(images):
            c = i % classes
            yield root / "train" / wnid(c) / f"{wnid(c)}_{i}.JPEG", f"train {i}"
        for i in range(n_val):
            yield root / "val" / f"ILSVRC2012_val_{i + 1:08d}.JPEG", f"val {i}"

    def labels(root: Path) -> None:
        rows = [f"ILSVRC2012_val_{i + 1:08d},{wnid(i % classes)} 0 0 499 374" for i in range(n_val)]
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")

    return _build(root, files, images + n_val, lambda seed: base_jpeg(seed, jpeg_size, quality), finish=labels)


def _build(
    root: Path, files: Callable, total: int, base: Callable[[int], bytes], finish: Callable[[Path], None] | None = None
) -> Path:
    done = root.with_name(root.name + ".complete")
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    bases = [base(seed) for seed in range(BASES)]
    for n, (path, text) in enumerate(tqdm(files(), total=total, unit="img", desc=f"build {root.name}", disable=None)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(with_comment(bases[n % BASES], text))
    if finish is not None:
        finish(root)
    done.touch()
    return root


def tree_stats(tree: Path) -> tuple[int, int]:
    """(files, bytes) under tree."""
    import os

    count = size = 0
    for directory, _, names in os.walk(tree):
        for name in names:
            count += 1
            size += os.stat(os.path.join(directory, name)).st_size
    return count, size
