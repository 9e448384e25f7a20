"""`eval.split: val`: the whole protocol on the validation slice held out of train, the test split never read.

The project's test-split shards are deleted before anything runs, so any step
that reads one fails; every step then runs under `eval.split: val` and must
succeed, scoring on exactly the slice's images and training on none of them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sslflow.params import load_params
from tests.train.conftest import SMALL_MODEL

from .conftest import in_project

pytestmark = pytest.mark.slow

SETTINGS = [
    *SMALL_MODEL,
    "eval.split=val",
    "eval.extract.dtype=float32",
    "train.batch_size=32",
    "train.knn.val_samples=50",
    "pretrain.simclr.max_steps=2",
    "pretrain.exemplar.max_steps=2",
    "augment.exemplar.classes=64",
    "augment.exemplar.copies=2",
    "augment.threads=1",
    "eval.lowlabel.fractions=[10pct]",
    "eval.lowlabel.finetune.enabled=true",
    "eval.lowlabel.finetune.epochs={10pct: 1}",
    "eval.lowlabel.distill.enabled=true",
    "eval.lowlabel.distill.batch_size=64",
]


@pytest.fixture
def project(tmp_path, tiny_project) -> Path:
    """The tiny project's shards, copied, with the test split's tars and indexes gone (its manifest entry stays)."""
    root = tmp_path / "project"
    shutil.copytree(tiny_project / "data/shards", root / "data/shards")
    shutil.copy(tiny_project / "params.yaml", root / "params.yaml")
    for path in (root / "data/shards/val").iterdir():
        path.unlink()
    return root


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_validation_protocol_never_reads_the_test_split(project):
    from sslflow.eval.linear_probe import probe_with
    from sslflow.stages import extract, linear, lowlabel, pretrain, report

    params = load_params(project / "params.yaml", SETTINGS)
    held_out = set((project / "data/shards/subsets/val.txt").read_text().split())
    assert len(held_out) == 100

    for method in ("simclr", "exemplar", "raw_pixels"):
        summary = in_project(project, pretrain.run, params, method)
        assert summary["knn_top1"] is not None, f"{method}: the kNN monitor scored the validation slice"
    with np.load(project / "models/exemplar/patches.npz") as patches:
        assert not set(patches["keys"].tolist()) & held_out, "no surrogate class comes from a validation image"

    for method in ("simclr", "raw_pixels"):
        rows = in_project(project, extract.run, params, method)
        assert rows == {"train": 1000}
        assert sorted(p.name for p in (project / f"data/features/{method}").iterdir()) == ["train.npz"]
        written = in_project(project, linear.run, params, method)
        # the same probe on rows chosen here from the file's keys: train less the slice, scored on the slice
        with np.load(project / f"data/features/{method}/train.npz") as f:
            x, y, keys = f["features"], f["labels"], f["keys"].tolist()
        scored = np.array([key in held_out for key in keys])
        assert all(key.startswith("train_") for key in keys) and scored.sum() == 100
        expected = probe_with(
            params.eval.linear, x[~scored], y[~scored], x[scored], y[scored], n_classes=10, seed=params.seed
        )
        assert (written["top1"], written["top5"]) == (expected.top1, expected.top5)

    # fine-tuning on the 10% subset and distilling on train less the slice, both scored on the slice
    entry = in_project(project, lowlabel.run, params, "simclr")["10pct"]
    assert entry["n_labels"] == 100
    for key in ("linear_top1", "finetune_top1", "distill_top1"):
        assert 100 * entry[key] == pytest.approx(round(100 * entry[key])), f"{key}: a whole number of 100 images"

    params = load_params(project / "params.yaml", [*SETTINGS, "pretrain.methods=[simclr,raw_pixels]"])
    in_project(project, report.run, params, no_experiments=True)
    text = (project / "reports/report.md").read_text()
    assert "Accuracies are percentages on the validation slice (100 train images held out; eval.split: val)" in text


def test_the_test_protocol_needs_the_test_split(project):
    """The control: the same stage under `eval.split: test` reads the test split, and stops at its absence."""
    from sslflow.errors import UserError
    from sslflow.stages import pretrain

    params = load_params(project / "params.yaml", [*SETTINGS, "eval.split=test"])
    with pytest.raises(UserError, match=r"data/shards/val/shard-000000.tar: missing"):
        in_project(project, pretrain.run, params, "raw_pixels")
