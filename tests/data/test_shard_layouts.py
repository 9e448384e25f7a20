"""imagefolder and imagenet layouts on small trees: bytes stored as they are, labels, keys, subsets, DALI."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslflow.data.read import iter_samples, read_subset, shard_files
from sslflow.errors import UserError
from tests.conftest import make_project, shard_in
from tests.data.imagetrees import jpeg_bytes, make_imagefolder, make_imagenet, png_bytes, write

FOLDER_LAYOUT = {"layout": "imagefolder", "class_names": None}
IMAGENET_LAYOUT = {"layout": "imagenet", "class_names": None}


def source_files(root: Path, split: str) -> dict[str, tuple[bytes, str]]:
    """relative path under the split -> (bytes, class folder), read straight from the tree."""
    out = {}
    for path in sorted((root / split).rglob("*")):
        if path.is_file() and path.suffix != ".csv":
            out[path.relative_to(root / split).as_posix()] = (
                path.read_bytes(),
                path.relative_to(root / split).parts[0],
            )
    return out


def by_bytes(samples) -> dict[bytes, tuple[str, str, int]]:
    out = {}
    for key, data, ext, label in samples:
        assert data not in out, f"{key} stored twice"
        out[data] = (key, ext, label)
    return out


def test_imagefolder_stores_files_byte_for_byte(tmp_path):
    root = make_imagefolder(tmp_path / "src")
    write(root / "train/cat/sub/deep.name.jpg", jpeg_bytes(99))  # sub-folders belong to their class
    project = make_project(tmp_path / "p", {"source": str(root), **FOLDER_LAYOUT})
    manifest = shard_in(project)
    assert manifest["classes"] == ["cat", "dog", "fox"]
    assert manifest["channels"] == 3 and manifest["image_size"] is None
    assert manifest["splits"]["train"]["per_class"] == {"cat": 7, "dog": 6, "fox": 6}
    for split in ("train", "val"):
        stored = by_bytes(iter_samples(project / "data/shards", split))
        files = source_files(root, split)
        assert len(stored) == len(files)
        for rel, (data, folder) in files.items():
            key, ext, label = stored[data]
            assert label == manifest["classes"].index(folder)
            assert ext == ("png" if rel.endswith(".png") else "jpg")
            assert key == rel.rsplit(".", 1)[0].replace("/", "_").replace(".", "_")


def test_index_of_jpg_and_png_shards_equals_wds2idx(tmp_path):
    import subprocess

    root = make_imagefolder(tmp_path / "src")
    project = make_project(tmp_path / "p", {"source": str(root), **FOLDER_LAYOUT})
    shard_in(project)
    for split in ("train", "val"):
        for tar in shard_files(project / "data/shards", split):
            out = tmp_path / f"{split}-{tar.stem}.idx"
            subprocess.run(
                [str(Path(sys.executable).with_name("wds2idx")), str(tar), str(out)],
                check=True,
                capture_output=True,
                timeout=600,
            )
            assert tar.with_suffix(".idx").read_bytes() == out.read_bytes()


def test_imagenet_flat_val_with_csv(tmp_path):
    root = make_imagenet(tmp_path / "src", flat_val=True)
    project = make_project(tmp_path / "p", {"source": str(root), **IMAGENET_LAYOUT})
    manifest = shard_in(project)
    wnids = ["n01440764", "n01443537", "n01484850"]
    assert manifest["classes"] == wnids
    csv_rows = (root / "LOC_val_solution.csv").read_text().splitlines()[1:]
    expected = {row.split(",")[0]: wnids.index(row.split(",")[1].split()[0]) for row in csv_rows}
    val = {key: (data, label) for key, data, _, label in iter_samples(project / "data/shards", "val")}
    assert {k: label for k, (_, label) in val.items()} == expected
    for key, (data, _) in val.items():
        assert data == (root / "val" / f"{key}.JPEG").read_bytes()
    train = {key: (data, label) for key, data, _, label in iter_samples(project / "data/shards", "train")}
    assert len(train) == 15
    for key, (data, label) in train.items():
        assert data == (root / "train" / wnids[label] / f"{key}.JPEG").read_bytes()


def test_imagenet_csv_inside_val_and_wnid_folders_give_same_labels(tmp_path):
    flat = make_imagenet(tmp_path / "flat", flat_val=True, csv_in="val")
    folders = make_imagenet(tmp_path / "folders", flat_val=False)
    labels = []
    for root in (flat, folders):
        project = make_project(tmp_path / f"p-{root.name}", {"source": str(root), **IMAGENET_LAYOUT})
        shard_in(project)
        labels.append(sorted((k, label) for k, _, _, label in iter_samples(project / "data/shards", "val")))
    assert labels[0] == labels[1] and len(labels[0]) == 6


def test_imagenet_published_subset_lists(tmp_path):
    root = make_imagenet(tmp_path / "src", train_per_class=10)
    lists = {
        "1pct": ["n01440764_10003.JPEG", "n01443537_10001.JPEG"],
        "10pct": ["n01440764_10003.JPEG", "n01443537_10001.JPEG", "n01484850_10009.JPEG"],
    }
    files = {}
    for name, lines in lists.items():
        files[name] = str(write(tmp_path / f"{name}.txt", ("\n".join(lines) + "\n").encode()))
    project = make_project(
        tmp_path / "p", {"source": str(root), **IMAGENET_LAYOUT, "subsets": {"seed": 0, "files": files}}
    )
    manifest = shard_in(project)
    assert read_subset("1pct", project / "data/shards") == ["n01440764_10003", "n01443537_10001"]
    assert read_subset("10pct", project / "data/shards") == ["n01440764_10003", "n01443537_10001", "n01484850_10009"]
    assert manifest["subsets"] == {"1pct": 2, "10pct": 3, "val": 3}
    val = read_subset("val", project / "data/shards")  # one image a class, none of the listed ones
    assert sorted(key.split("_")[0] for key in val) == ["n01440764", "n01443537", "n01484850"]
    assert not set(val) & {name.removesuffix(".JPEG") for name in lists["10pct"]}

    (tmp_path / "1pct.txt").write_text("n01440764_99999.JPEG\n")
    with pytest.raises(UserError, match=r"1pct.txt:1: n01440764_99999.JPEG is not a train image"):
        shard_in(project)


def test_published_list_naming_a_skipped_image(tmp_path):
    root = make_imagenet(tmp_path / "src", train_per_class=4)
    bad = root / "train/n01443537/n01443537_10002.JPEG"
    bad.write_bytes(bad.read_bytes()[:-300])
    names = ["n01440764_10000.JPEG", "n01443537_10002.JPEG"]
    files = {name: str(write(tmp_path / f"{name}.txt", "\n".join(names).encode())) for name in ("1pct", "10pct")}
    data = {"source": str(root), **IMAGENET_LAYOUT, "on_bad_image": "skip", "subsets": {"seed": 0, "files": files}}
    manifest = shard_in(make_project(tmp_path / "p", data))
    assert manifest["skipped"] == [
        {
            "file": "train/n01443537/n01443537_10002.JPEG",
            "reason": "truncated JPEG (no end-of-image marker after the last scan)",
        }
    ]
    assert manifest["subsets"] == {"1pct": 1, "10pct": 1, "val": 3}
    assert manifest["splits"]["train"]["count"] == 11


def test_png_named_jpeg_is_stored_as_png_and_cmyk_converted(tmp_path):
    root = make_imagenet(tmp_path / "src", flat_val=False)
    png = write(root / "train/n01440764/n01440764_20000.JPEG", png_bytes(7))
    cmyk = write(root / "train/n01443537/n01443537_20000.JPEG", jpeg_bytes(8, mode="CMYK"))
    assert Image.open(cmyk).mode == "CMYK"
    project = make_project(tmp_path / "p", {"source": str(root), **IMAGENET_LAYOUT})
    shard_in(project)
    train = {key: (data, ext) for key, data, ext, _ in iter_samples(project / "data/shards", "train")}
    assert train["n01440764_20000"] == (png.read_bytes(), "png")
    data, ext = train["n01443537_20000"]
    assert ext == "png"
    expected = np.asarray(Image.open(cmyk).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), expected)


def test_dali_decodes_jpg_and_png_shards(tmp_path):
    from nvidia.dali import fn, pipeline_def, types

    root = make_imagefolder(tmp_path / "src")
    project = make_project(tmp_path / "p", {"source": str(root), **FOLDER_LAYOUT})
    shard_in(project)
    tars = shard_files(project / "data/shards", "train")
    expected = [
        (np.asarray(Image.open(io.BytesIO(d)).convert("RGB")), label)
        for _, d, _, label in iter_samples(project / "data/shards", "train")
    ]

    @pipeline_def(batch_size=len(expected), num_threads=1, device_id=None)
    def pipe():
        raw, cls = fn.readers.webdataset(
            paths=[str(t) for t in tars],
            index_paths=[str(t.with_suffix(".idx")) for t in tars],
            ext=["jpg;png", "cls"],
            random_shuffle=False,
        )
        return fn.decoders.image(raw, device="cpu", output_type=types.RGB), cls

    pipeline = pipe()
    pipeline.build()
    images, classes = pipeline.run()
    assert len(images) == len(expected)
    for i, (pixels, label) in enumerate(expected):
        decoded = np.asarray(images[i])
        assert decoded.shape == pixels.shape
        # libjpeg-turbo in DALI and Pillow may differ by rounding in the IDCT/upsampling only
        assert np.abs(decoded.astype(int) - pixels).max() <= 2
        assert int(bytes(np.asarray(classes[i])).decode()) == label
