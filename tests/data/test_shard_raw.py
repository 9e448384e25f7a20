"""imagefolder sources of small PNGs go into the shards as raw RGB pixels; anything else stays as it is."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslflow.data.read import iter_samples
from sslflow.data.verify import verify_shards
from tests.conftest import make_project, shard_in
from tests.data.imagetrees import jpeg_bytes, pixels, write

FOLDER_LAYOUT = {"layout": "imagefolder", "class_names": None}
CLASSES = ("cat", "dog")


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_tree(root: Path, size=(32, 32), modes=("RGB", "L", "P"), train: int = 6, val: int = 2) -> Path:
    """ROOT/{train,val}/<class>/<n>.png, cycling through PIL modes (RGB, grey, palette)."""
    seed = 0
    for split, count in (("train", train), ("val", val)):
        for name in CLASSES:
            for i in range(count):
                seed += 1
                image = Image.fromarray(pixels(seed, size)).convert(modes[i % len(modes)])
                write(root / split / name / f"{i}.png", png(image))
    return root


def shard(tmp_path: Path, root: Path, **data) -> tuple[Path, dict]:
    project = make_project(tmp_path / "p", {"source": str(root), **FOLDER_LAYOUT, **data})
    return project / "data/shards", shard_in(project)


def test_small_png_folder_stored_raw_with_the_decoded_pixels(tmp_path, monkeypatch):
    root = png_tree(tmp_path / "src")
    shards, manifest = shard(tmp_path, root)
    assert (manifest["encoding"], manifest["shape"], manifest["channels"]) == ("raw", [32, 32, 3], 3)
    for split in ("train", "val"):
        stored = list(iter_samples(shards, split))
        assert len(stored) == len(list((root / split).rglob("*.png")))
        for key, data, ext, label in stored:
            name, n = key.split("_")
            source = Image.open(root / split / name / f"{n}.png")
            assert ext == "raw" and label == CLASSES.index(name)
            assert data == np.asarray(source.convert("RGB")).tobytes()  # grey and palette as RGB
    monkeypatch.chdir(tmp_path / "p")
    verify_shards("data/shards")


@pytest.mark.parametrize(
    "odd_one",
    [
        ("jpeg", lambda: jpeg_bytes(9, size=(32, 32))),  # a JPEG stays the JPEG it is, small or not
        ("65 px", lambda: png(Image.fromarray(pixels(9, (65, 32))))),
        ("another size", lambda: png(Image.fromarray(pixels(9, (16, 16))))),
        ("alpha", lambda: png(Image.fromarray(pixels(9, (32, 32))).convert("RGBA"))),
        ("16-bit", lambda: png(Image.fromarray(pixels(9, (32, 32), 1).astype(np.uint16) * 257))),
    ],
    ids=lambda case: case[0],
)
def test_one_image_that_cannot_go_raw_keeps_the_source_encoded(tmp_path, odd_one):
    root = png_tree(tmp_path / "src")
    name, make = odd_one
    odd = write(root / "val/dog/odd.img", make())
    shards, manifest = shard(tmp_path, root)
    assert (manifest["encoding"], manifest["shape"]) == ("encoded", None)
    stored = {key: (data, ext) for key, data, ext, _ in iter_samples(shards, "val")}
    assert stored["dog_odd"] == (odd.read_bytes(), "jpg" if name == "jpeg" else "png")
    assert stored["cat_0"] == ((root / "val/cat/0.png").read_bytes(), "png")


def test_jpeg_folder_of_small_images_stays_jpeg_byte_for_byte(tmp_path):
    root = tmp_path / "src"
    for split, count in (("train", 6), ("val", 2)):
        for name in CLASSES:
            for i in range(count):
                write(root / split / name / f"{i}.jpg", jpeg_bytes(10 * i + len(name), size=(28, 28)))
    shards, manifest = shard(tmp_path, root)
    assert manifest["encoding"] == "encoded"
    for key, data, ext, _ in iter_samples(shards, "train"):
        name, n = key.split("_")
        assert (data, ext) == ((root / "train" / name / f"{n}.jpg").read_bytes(), "jpg")


def test_bad_file_in_a_raw_source_is_skipped_with_its_reason(tmp_path):
    root = png_tree(tmp_path / "src")
    whole = (root / "train/cat/0.png").read_bytes()
    write(root / "train/cat/cut.png", whole[: len(whole) // 2])
    write(root / "train/cat/empty.png", b"")
    _, manifest = shard(tmp_path, root, on_bad_image="skip")
    assert manifest["encoding"] == "raw"
    reasons = {s["file"]: s["reason"] for s in manifest["skipped"]}
    assert reasons["train/cat/empty.png"] == "empty file"
    assert reasons["train/cat/cut.png"].startswith("corrupt PNG")
