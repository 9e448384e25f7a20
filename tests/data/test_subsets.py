"""The label subsets and the validation slice: one image of every class at least, never overlapping, and a
source too small for them stopped at `shard` time."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

from sslflow.data.read import iter_samples, read_subset
from sslflow.data.subsets import apportion
from tests.conftest import make_project
from tests.data.imagetrees import make_imagefolder

SSLFLOW = str(Path(sys.executable).with_name("sslflow"))
FOLDER = {"layout": "imagefolder", "class_names": None}
FIVE = ("ant", "bee", "cat", "dog", "elk")


def _sslflow(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SSLFLOW, *args], cwd=project, capture_output=True, text=True, timeout=300)


def test_apportion_gives_every_class_with_images_one_at_least():
    assert apportion([6000] * 10, Fraction(1, 100)) == [60] * 10  # Fashion-MNIST: the exact share
    assert apportion([5, 5, 5, 5, 5], Fraction(1, 100)) == [1] * 5  # round(0.25) would be none at all
    assert apportion([200, 3, 0], Fraction(1, 10)) == [20, 1, 0]  # an empty class gets nothing


def test_validation_slice_is_balanced_seeded_and_apart_from_the_label_subsets(tiny_project):
    shards = tiny_project / "data/shards"
    val, ten = read_subset("val", shards), read_subset("10pct", shards)
    labels = {key: label for key, _, _, label in iter_samples(shards, "train")}
    assert val == sorted(val) and len(set(val)) == 100
    assert Counter(labels[k] for k in val) == {c: 10 for c in range(10)}  # data.subsets.val_fraction 0.1
    assert not set(val) & set(ten), "a validation image is never a labelled one"


def test_a_25_image_tree_gives_every_class_an_image_in_every_subset_and_trains(tmp_path):
    source = make_imagefolder(tmp_path / "src", classes=FIVE, train_per_class=5, val_per_class=2)
    project = make_project(tmp_path / "p", {"source": str(source), **FOLDER})
    done = _sslflow(project, "shard")
    assert done.returncode == 0, done.stderr
    assert "5 classes, subsets 1pct 5, 10pct 5, val 5" in done.stdout
    shards = project / "data/shards"
    labels = {key: label for key, _, _, label in iter_samples(shards, "train")}
    for name in ("1pct", "10pct", "val"):
        assert Counter(labels[k] for k in read_subset(name, shards)) == {c: 1 for c in range(5)}, name
    # the kNN monitor's labelled bank (1%) is no longer empty, nor is its batch larger than the split
    done = _sslflow(project, "pretrain", "--method", "raw_pixels", "-S", "augment.size=32")
    assert done.returncode == 0, done.stderr
    assert (project / "models/raw_pixels/encoder.pt").is_file()


def test_a_class_too_small_for_the_subsets_is_one_line_at_shard_time(tmp_path):
    source = make_imagefolder(tmp_path / "src", classes=FIVE, train_per_class=5, val_per_class=2)
    for extra in sorted((source / "train/elk").iterdir())[1:]:
        extra.unlink()  # elk keeps one train image: its 1% image and its validation image cannot both be it
    project = make_project(tmp_path / "p", {"source": str(source), **FOLDER})
    done = _sslflow(project, "shard")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "sslflow shard: error: data.source: class 'elk' has 1 train image(s); its label subsets need 1 and "
        "the validation slice 1 more, apart (give it at least 2)"
    ]
    assert not (project / "data/shards").exists(), "no partial shard directory"
