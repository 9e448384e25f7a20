"""The mnist-idx shards of `tiny_project`: contents, format, subsets, and reading back with webdataset and DALI.

Fashion-MNIST's 28 x 28 images are stored raw (`<key>.raw`, the idx file's bytes of that row); an idx
source of larger images is PNG-encoded.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslflow.data.manifest import load_manifest
from sslflow.data.read import iter_samples, read_subset, shard_files
from sslflow.data.tarwriter import member_header, tarfile_header
from sslflow.errors import UserError
from tests.conftest import make_project, read_idx, shard_in, write_idx

FMNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def source_arrays(source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    return read_idx(source / f"{prefix}-images-idx3-ubyte.gz"), read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")


def test_manifest_counts_and_classes(tiny_project):
    manifest = load_manifest(tiny_project / "data/shards")
    assert manifest["format"] == 2
    assert manifest["classes"] == FMNIST_CLASSES
    assert manifest["channels"] == 1 and manifest["image_size"] == [28, 28]
    assert manifest["encoding"] == "raw" and manifest["shape"] == [28, 28, 1]
    assert manifest["source"]["layout"] == "mnist-idx"
    assert manifest["splits"]["train"]["count"] == 1000 and manifest["splits"]["val"]["count"] == 200
    assert manifest["splits"]["train"]["per_class"] == {c: 100 for c in FMNIST_CLASSES}
    assert manifest["splits"]["val"]["per_class"] == {c: 20 for c in FMNIST_CLASSES}
    assert manifest["skipped"] == []
    assert manifest["subsets"] == {"1pct": 10, "10pct": 100, "val": 100}
    for split in ("train", "val"):
        shards = manifest["splits"][split]["shards"]
        assert len(shards) >= 2
        assert sum(s["samples"] for s in shards) == manifest["splits"][split]["count"]
        files = shard_files(tiny_project / "data/shards", split)
        assert [f.name for f in files] == [s["name"] for s in shards]
        for entry, path in zip(shards, files):
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            assert len(data) == entry["bytes"]


@pytest.mark.parametrize("split", ["train", "val"])
def test_webdataset_reads_every_image_once_byte_exact(tiny_project, tiny_source, split):
    images, labels = source_arrays(tiny_source, split)  # decoded with gzip and numpy, not sslflow
    seen = Counter()
    for key, data, ext, label in iter_samples(tiny_project / "data/shards", split):
        row = int(key.rsplit("_", 1)[1])
        seen[row] += 1
        assert ext == "raw" and len(data) == 28 * 28
        assert data == images[row].tobytes()
        assert label == labels[row]
    assert sorted(seen) == list(range(len(labels))) and set(seen.values()) == {1}


def test_raw_members_are_the_idx_bytes_in_the_tar(tiny_project, tiny_source):
    """Read with tarfile, not webdataset: every image member is `<key>.raw`, the 784 bytes of its idx row."""
    images, _ = source_arrays(tiny_source, "val")
    members = 0
    for tar in shard_files(tiny_project / "data/shards", "val"):
        with tarfile.open(tar) as archive:
            for member in archive:
                key, ext = member.name.split(".", 1)
                if ext != "cls":
                    assert ext == "raw"
                    assert archive.extractfile(member).read() == images[int(key.rsplit("_", 1)[1])].tobytes()
                    members += 1
    assert members == len(images)


def test_idx_images_over_64_px_stay_png(tmp_path):
    rng = np.random.default_rng(0)
    source = tmp_path / "src"
    source.mkdir()
    for prefix, per_class in (("train", 20), ("t10k", 2)):
        labels = np.repeat(np.arange(2, dtype=np.uint8), per_class)
        images = rng.integers(0, 256, (len(labels), 65, 65), dtype=np.uint8)
        write_idx(source / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(source / f"{prefix}-labels-idx1-ubyte.gz", labels)
    project = make_project(tmp_path / "p", {"source": str(source), "class_names": None})
    manifest = shard_in(project)
    assert manifest["encoding"] == "encoded" and manifest["shape"] is None
    images = read_idx(source / "t10k-images-idx3-ubyte.gz")
    for key, data, ext, _ in iter_samples(project / "data/shards", "val"):
        assert ext == "png"
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), images[int(key.rsplit("_", 1)[1])])


def test_shuffled_across_shards(tiny_project):
    keys = [k for k, *_ in iter_samples(tiny_project / "data/shards", "train")]
    first = Counter(int(k[-6:]) // 100 for k in keys[:100])  # source rows in the first shard, by hundreds
    assert keys != sorted(keys) and len(first) >= 8


def test_dali_reads_the_same_samples(tiny_project):
    from nvidia.dali import fn, pipeline_def

    shards_dir = tiny_project / "data/shards"
    for split in ("train", "val"):
        tars = shard_files(shards_dir, split)
        expected = [(data, label) for _, data, _, label in iter_samples(shards_dir, split)]

        @pipeline_def(batch_size=64, num_threads=1, device_id=None)
        def pipe():
            image, cls = fn.readers.webdataset(
                paths=[str(t) for t in tars],
                index_paths=[str(t.with_suffix(".idx")) for t in tars],
                ext=["raw", "cls"],
                missing_component_behavior="error",
                random_shuffle=False,
                name="reader",
            )
            return image, cls

        pipeline = pipe()
        pipeline.build()
        assert pipeline.epoch_size("reader") == len(expected)
        got = []
        while len(got) < len(expected):
            images, classes = pipeline.run()
            for i in range(len(images)):
                got.append((np.asarray(images[i]).tobytes(), int(bytes(np.asarray(classes[i])).decode())))
        assert got[: len(expected)] == expected


def test_index_equals_wds2idx(tiny_project, tmp_path):
    for tar in shard_files(tiny_project / "data/shards", "train")[:2] + shard_files(
        tiny_project / "data/shards", "val"
    ):
        out = tmp_path / (tar.parent.name + tar.stem + ".idx")
        subprocess.run(
            [str(Path(sys.executable).with_name("wds2idx")), str(tar), str(out)],
            check=True,
            capture_output=True,
            timeout=600,
        )
        assert tar.with_suffix(".idx").read_bytes() == out.read_bytes()


def test_tar_is_what_tarfile_writes_with_fixed_metadata(tiny_project, tmp_path):
    tar = shard_files(tiny_project / "data/shards", "val")[0]
    rebuilt = tmp_path / "rebuilt.tar"
    with tarfile.open(tar) as src, tarfile.open(rebuilt, "w", format=tarfile.USTAR_FORMAT) as dst:
        for member in src:
            assert (member.mtime, member.uid, member.gid, member.uname, member.gname, member.mode) == (
                0,
                0,
                0,
                "",
                "",
                0o644,
            )
            fresh = tarfile.TarInfo(member.name)
            fresh.size, fresh.mtime, fresh.mode = member.size, 0, 0o644
            dst.addfile(fresh, src.extractfile(member))
    assert rebuilt.read_bytes() == tar.read_bytes()


def test_member_header_matches_tarfile():
    for name in ["a.cls", "train_000001.png", "x" * 96 + ".jpg"]:
        for size in [0, 1, 511, 512, 513, 123456789]:
            assert member_header(name, size) == tarfile_header(name, size)


def test_subsets_nested_balanced_seeded(tiny_project):
    shards_dir = tiny_project / "data/shards"
    one, ten = read_subset("1pct", shards_dir), read_subset("10pct", shards_dir)
    assert len(one) == 10 and len(ten) == 100 and set(one) <= set(ten)
    assert one == sorted(one) and len(set(ten)) == 100
    labels = {key: label for key, _, _, label in iter_samples(shards_dir, "train")}
    assert Counter(labels[k] for k in one) == {c: 1 for c in range(10)}
    assert Counter(labels[k] for k in ten) == {c: 10 for c in range(10)}


def test_same_params_byte_identical_any_worker_count(tiny_source, tiny_project, tmp_path):
    reference = tiny_project / "data/shards"
    for workers in (1, 2):
        project = make_project(tmp_path / f"w{workers}", {"source": str(tiny_source), "shard_size_mb": 0.25})
        shard_in(project, [f"data.workers={workers}"])
        assert tree_bytes(project / "data/shards") == tree_bytes(reference)


def test_other_seed_other_order_same_subsets(tiny_source, tiny_project, tmp_path):
    project = make_project(tmp_path / "p", {"source": str(tiny_source), "shard_size_mb": 0.25, "seed": 1})
    shard_in(project)
    mine = [k for k, *_ in iter_samples(project / "data/shards", "train")]
    theirs = [k for k, *_ in iter_samples(tiny_project / "data/shards", "train")]
    assert mine != theirs and sorted(mine) == sorted(theirs)
    # the subsets depend on data.subsets.seed, not the shuffle
    assert read_subset("10pct", project / "data/shards") == read_subset("10pct", tiny_project / "data/shards")


def test_load_manifest_errors(tmp_path):
    with pytest.raises(UserError, match="manifest.json: not found"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(UserError, match="not a readable JSON manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 7}))
    with pytest.raises(UserError, match="not a shard manifest of format 2"):
        load_manifest(tmp_path)
    # format 1 held PNG Fashion-MNIST shards: refused, so that they are rebuilt rather than read as raw
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1}))
    with pytest.raises(UserError, match=r"format 2 \(rerun `sslflow shard`\)"):
        load_manifest(tmp_path)
    with pytest.raises(UserError, match="no shards"):
        shard_files(tmp_path, "train")
    with pytest.raises(UserError, match="subsets/1pct.txt: not found"):
        read_subset("1pct", tmp_path)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
