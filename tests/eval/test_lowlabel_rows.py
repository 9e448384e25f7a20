"""The 1% / 10% linear rows are the probe on exactly the subset's images: recomputed from the keys the
subset file names, looked up in the features file and the shards independently of the stage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sslflow.data.read import iter_samples
from sslflow.eval.linear_probe import probe_with
from sslflow.params import load_params
from tests.eval.conftest import in_project

PER_CLASS = {"1pct": 1, "10pct": 10}  # of the tiny train split's 100 images a class


@pytest.fixture(scope="module")
def lowlabel_run(eval_project):
    """The lowlabel stage for raw_pixels, linear rows only, with the labels each probe was trained on."""
    import sslflow.eval.lowlabel as lowlabel_eval
    from sslflow.stages import lowlabel

    trained_on: list[np.ndarray] = []

    def watched(cfg, train_x, train_y, *args, **kwargs):
        trained_on.append(np.array(train_y))
        return probe_with(cfg, train_x, train_y, *args, **kwargs)

    params = load_params(eval_project / "params.yaml", ["eval.lowlabel.finetune.enabled=false"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lowlabel_eval, "probe_with", watched)
        in_project(eval_project, lowlabel.run, params, "raw_pixels")
    written = json.loads((eval_project / "metrics/raw_pixels/lowlabel.json").read_text())
    return params, written, dict(zip(params.eval.lowlabel.fractions, trained_on, strict=True))


def subset_keys(project, fraction: str) -> list[str]:
    return (project / "data" / "shards" / "subsets" / f"{fraction}.txt").read_text().split()


@pytest.mark.parametrize("fraction", ["1pct", "10pct"])
def test_probe_trains_on_every_image_of_the_subset_and_no_other(eval_project, lowlabel_run, fraction):
    _, written, trained_on = lowlabel_run
    labels = {key: label for key, _, _, label in iter_samples(eval_project / "data" / "shards", "train")}
    keys = subset_keys(eval_project, fraction)
    expected = np.array([labels[key] for key in keys])
    assert np.bincount(expected, minlength=10).tolist() == [PER_CLASS[fraction]] * 10
    assert np.bincount(trained_on[fraction], minlength=10).tolist() == [PER_CLASS[fraction]] * 10
    assert trained_on[fraction].tolist() == expected.tolist()
    assert written[fraction]["n_labels"] == len(keys) == 10 * PER_CLASS[fraction]


@pytest.mark.parametrize("fraction", ["1pct", "10pct"])
def test_linear_row_equals_a_fit_on_the_rows_the_subset_file_names(eval_project, lowlabel_run, fraction):
    params, written, _ = lowlabel_run
    features = {}
    for split in ("train", "val"):
        with np.load(eval_project / "data/features/raw_pixels" / f"{split}.npz") as npz:
            features[split] = (npz["features"], npz["labels"], npz["keys"].tolist())
    train_x, train_y, train_keys = features["train"]
    by_key = {key: i for i, key in enumerate(train_keys)}
    rows = np.array([by_key[key] for key in subset_keys(eval_project, fraction)])
    val_x, val_y, _ = features["val"]
    expected = probe_with(
        params.eval.linear, train_x[rows], train_y[rows], val_x, val_y, n_classes=10, seed=params.seed
    )
    entry = written[fraction]
    assert (entry["linear_top1"], entry["linear_top5"], entry["linear_l2"]) == (
        expected.top1,
        expected.top5,
        expected.l2,
    )
