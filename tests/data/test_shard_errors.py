"""Bad input through the real CLI: one line naming the file and the reason, exit code 2, no shard output.

Also `data.on_bad_image: skip`, which turns the per-image problems into manifest["skipped"] entries.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sslflow.data.read import shard_files
from sslflow.data.verify import verify_shards
from tests.conftest import make_project, shard_in, write_idx
from tests.data.imagetrees import jpeg_bytes, make_imagefolder, make_imagenet, png_bytes, write
from tests.processes import default_sigint, process_state

SSLFLOW = str(Path(sys.executable).with_name("sslflow"))
FOLDER = {"layout": "imagefolder", "class_names": None}


def run_shard(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SSLFLOW, "shard", *args], cwd=project, capture_output=True, text=True, timeout=120)


def assert_refused(project: Path, pattern: str) -> None:
    result = run_shard(project)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("sslflow shard: error: ")
    assert re.search(pattern, lines[-1]), lines[-1]
    assert not (project / "data/shards").exists()
    leftovers = list((project / "data").glob(".*")) if (project / "data").exists() else []
    assert leftovers == []


def folder_project(tmp_path: Path, **data) -> tuple[Path, Path]:
    root = make_imagefolder(tmp_path / "src", train_per_class=3, val_per_class=1)
    return root, make_project(tmp_path / "p", {"source": str(root), **FOLDER, **data})


def truncated_jpeg(root: Path) -> tuple[Path, str]:
    data = jpeg_bytes(5, size=(120, 160))
    return write(root / "train/dog/cut.jpg", data[: len(data) * 2 // 3]), "truncated JPEG"


def non_image(root: Path) -> tuple[Path, str]:
    return write(root / "train/dog/notes.jpg", b"these are notes, not pixels\n"), "not an image"


def zero_bytes(root: Path) -> tuple[Path, str]:
    return write(root / "val/fox/zero.jpg", b""), "empty file"


def dangling_link(root: Path) -> tuple[Path, str]:
    link = root / "train/cat/gone.jpg"
    link.symlink_to(root / "nowhere.jpg")
    return link, r"cannot read \(No such file or directory\)"


def corrupt_png(root: Path) -> tuple[Path, str]:
    data = png_bytes(3, size=(64, 64))
    return write(root / "train/fox/half.png", data[: len(data) // 2]), "corrupt PNG"


BAD_IMAGES = [truncated_jpeg, non_image, zero_bytes, dangling_link, corrupt_png]


@pytest.mark.parametrize("damage", BAD_IMAGES, ids=lambda f: f.__name__)
def test_bad_image_is_refused(tmp_path, damage):
    root, project = folder_project(tmp_path)
    path, reason = damage(root)
    assert_refused(project, f"{path}: {reason}")


def test_unreadable_file_is_refused(tmp_path):
    root, project = folder_project(tmp_path)
    path = write(root / "train/cat/locked.jpg", jpeg_bytes(1))
    path.chmod(0)
    # root reads files whatever their mode: its shard runs without the capabilities that allow it
    unprivileged = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    result = subprocess.run([*unprivileged, SSLFLOW, "shard"], cwd=project, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert re.search(f"{path}: cannot read \\(Permission denied\\)", line), line
    assert not (project / "data/shards").exists()


def test_skip_lists_bad_images_in_manifest(tmp_path):
    root, project = folder_project(tmp_path, on_bad_image="skip")
    bad = {damage(root)[0].relative_to(root).as_posix(): damage.__name__ for damage in BAD_IMAGES}
    result = run_shard(project)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((project / "data/shards/manifest.json").read_text())
    assert sorted(s["file"] for s in manifest["skipped"]) == sorted(bad)
    assert all(s["reason"] for s in manifest["skipped"])
    assert manifest["splits"]["train"]["count"] == 9 and manifest["splits"]["val"]["count"] == 3
    assert run_shard(project, "--verify").returncode == 0


def test_missing_source(tmp_path):
    project = make_project(tmp_path / "p", {"source": str(tmp_path / "nowhere")})
    assert_refused(project, f"data.source {tmp_path / 'nowhere'}: not found")


def test_empty_class_folder(tmp_path):
    root, project = folder_project(tmp_path)
    (root / "train/emu").mkdir()
    assert_refused(project, f"{root / 'train/emu'}: empty class folder")


def test_val_class_unknown_to_train(tmp_path):
    root, project = folder_project(tmp_path)
    write(root / "val/zebra/z.jpg", jpeg_bytes(2))
    assert_refused(project, f"{root / 'val/zebra'}: class 'zebra' is not a class folder of train/")


def test_file_outside_class_folders(tmp_path):
    root, project = folder_project(tmp_path)
    write(root / "train/README.txt", b"hi")
    assert_refused(project, f"{root / 'train/README.txt'}: not in a class folder")


def test_two_files_one_key(tmp_path):
    root, project = folder_project(tmp_path)
    write(root / "train/cat/img0.png", png_bytes(1))
    assert_refused(project, "same sample key 'cat_img0'")


def test_idx_labels_not_matching_images(tmp_path):
    source = tmp_path / "idx"
    source.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 10), ("t10k", 4)):
        write_idx(source / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        write_idx(
            source / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n - (prefix == "train"), dtype=np.uint8)
        )
    project = make_project(tmp_path / "p", {"source": str(source)})
    assert_refused(
        project, f"{source / 'train-labels-idx1-ubyte.gz'}: 9 labels for 10 images in train-images-idx3-ubyte.gz"
    )


def test_idx_file_missing(tmp_path):
    source = tmp_path / "idx"
    source.mkdir()
    project = make_project(tmp_path / "p", {"source": str(source)})
    assert_refused(project, "no train file")


def test_val_image_absent_from_csv(tmp_path):
    root = make_imagenet(tmp_path / "src")
    write(root / "val/ILSVRC2012_val_00000099.JPEG", jpeg_bytes(3))
    project = make_project(tmp_path / "p", {"source": str(root), "layout": "imagenet", "class_names": None})
    assert_refused(
        project, f"{root / 'val/ILSVRC2012_val_00000099.JPEG'}: val image absent from {root / 'LOC_val_solution.csv'}"
    )


def test_csv_lists_missing_val_image(tmp_path):
    root = make_imagenet(tmp_path / "src")
    (root / "val/ILSVRC2012_val_00000003.JPEG").unlink()
    project = make_project(tmp_path / "p", {"source": str(root), "layout": "imagenet", "class_names": None})
    assert_refused(project, "LOC_val_solution.csv: 1 listed image\\(s\\) not in .*ILSVRC2012_val_00000003")


def test_failed_run_keeps_previous_shards(tmp_path):
    root, project = folder_project(tmp_path)
    assert run_shard(project).returncode == 0
    before = {p: p.read_bytes() for p in (project / "data/shards").rglob("*") if p.is_file()}
    write(root / "train/dog/zero.jpg", b"")
    result = run_shard(project)
    assert result.returncode == 2 and "zero.jpg: empty file" in result.stderr
    after = {p: p.read_bytes() for p in (project / "data/shards").rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in (project / "data").iterdir()] == ["shards"]


@pytest.mark.slow
def test_interrupt_leaves_nothing_behind(tmp_path):
    """Ctrl-C while the workers write (after the first finished tar): exit 130, no shard directory, no temp directory."""
    project = make_project(tmp_path / "p", {"workers": 2})  # the full Fashion-MNIST: seconds of work
    env = {**os.environ, "SSLFLOW_PAUSE_AT": "shard.written:1"}
    with open(tmp_path / "err", "w") as err:
        process = subprocess.Popen([SSLFLOW, "shard"], cwd=project, env=env, stderr=err, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 300
        while process_state(process.pid) != "T":  # stopped itself at the test point
            assert process.poll() is None, (tmp_path / "err").read_text()
            assert time.monotonic() < deadline, "the shard stage never reached its first finished tar"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGCONT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = (tmp_path / "err").read_text()
    assert process.returncode == 130, stderr
    assert "sslflow shard: interrupted" in stderr
    assert list((project / "data").iterdir()) == []


def test_skip_that_empties_a_shard_renumbers_the_rest(tmp_path):
    root, project = folder_project(tmp_path, on_bad_image="skip", shard_size_mb=0.001)  # one sample a shard
    write(root / "train/cat/zero.jpg", b"")
    manifest = shard_in(project)
    shards = manifest["splits"]["train"]["shards"]
    assert [s["name"] for s in shards] == [f"shard-{i:06d}.tar" for i in range(9)]
    assert [p.name for p in shard_files(project / "data/shards", "train")] == [s["name"] for s in shards]
    assert manifest["skipped"] == [{"file": "train/cat/zero.jpg", "reason": "empty file"}]
    verify_shards(project / "data/shards")
