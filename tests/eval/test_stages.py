"""The linear and lowlabel stages on the tiny project's real features and shards."""

from __future__ import annotations

import json

import pytest

from sslflow.params import load_params
from tests.eval.conftest import in_project

FRACTION_KEYS = {
    "n_labels",
    "linear_top1",
    "linear_top5",
    "linear_l2",
    "finetune_top1",
    "finetune_top5",
    "distill_top1",
    "distill_top5",
    "finetune_head_layers",
    "finetune_from_head",
    "finetune_epochs",
    "finetune_lr",
    "distill_images",
}


def metrics(project, method: str, stage: str) -> dict:
    return json.loads((project / "metrics" / method / f"{stage}.json").read_text())


def test_linear_stage_on_raw_pixels(eval_project):
    from sslflow.stages import linear

    params = load_params(eval_project / "params.yaml")
    written = in_project(eval_project, linear.run, params, "raw_pixels")
    result = metrics(eval_project, "raw_pixels", "linear")
    assert result == written
    assert result["n_train"] == 1000 and result["n_features"] == 784 and result["backend"] == "sklearn"
    assert result["l2"] in params.eval.linear.l2_grid
    assert result["backbone"] == "raw pixels" and result["params_m"] == 0
    # 1,000 real Fashion-MNIST images: a pixel logistic regression is far above chance, below the 60k figure
    assert 0.70 <= result["top1"] <= 0.86 and result["top1"] <= result["top5"] <= 1.0


def test_lowlabel_linear_only_for_raw_pixels(eval_project):
    from sslflow.stages import lowlabel

    params = load_params(eval_project / "params.yaml", ["eval.lowlabel.finetune.enabled=true"])
    in_project(eval_project, lowlabel.run, params, "raw_pixels")
    result = metrics(eval_project, "raw_pixels", "lowlabel")
    assert set(result) == {"1pct", "10pct"}
    assert result["1pct"]["n_labels"] == 10 and result["10pct"]["n_labels"] == 100
    for entry in result.values():
        assert set(entry) == FRACTION_KEYS
        assert entry["finetune_top1"] is None and entry["distill_top1"] is None  # pixels: nothing to fine-tune
    # ten labels teach a linear model less than a hundred
    assert result["1pct"]["linear_top1"] + 0.15 < result["10pct"]["linear_top1"]


def test_lowlabel_finetunes_and_distills_random_init(eval_project):
    """From an untrained encoder, fine-tuning is supervised training on the subset: it must learn."""
    from sslflow.stages import lowlabel

    params = load_params(
        eval_project / "params.yaml",
        [
            "eval.lowlabel.fractions=[10pct]",
            "eval.lowlabel.finetune.enabled=true",
            "eval.lowlabel.finetune.epochs={10pct: 20}",
            "eval.lowlabel.finetune.batch_size=32",
            "eval.lowlabel.finetune.lr=0.4",
            "eval.lowlabel.distill.enabled=true",
            "eval.lowlabel.distill.methods=null",  # every fine-tuned method, random_init included
            "eval.lowlabel.distill.batch_size=64",
            "eval.lowlabel.distill.epochs=4",
            "eval.lowlabel.distill.lr=0.4",
        ],
    )
    in_project(eval_project, lowlabel.run, params, "random_init")
    entry = metrics(eval_project, "random_init", "lowlabel")["10pct"]
    assert set(entry) == FRACTION_KEYS and entry["n_labels"] == 100
    assert (entry["finetune_head_layers"], entry["finetune_epochs"], entry["finetune_from_head"]) == (0, 20, None)
    assert entry["finetune_lr"] == 0.4
    assert entry["distill_images"] == 4 * (1000 // 64) * 64  # 4 epochs of the 1,000 train images, full batches
    assert entry["finetune_top1"] > 0.2  # ten classes: the untrained network with its new head is at chance, 0.10
    assert entry["finetune_top1"] <= entry["finetune_top5"]
    # the student starts from the same untrained network and sees no label: what it knows, the teacher taught it
    assert entry["distill_top1"] > 0.2 and entry["distill_top1"] > entry["finetune_top1"] - 0.05, entry
    assert entry["distill_top1"] <= entry["distill_top5"]


def test_one_head_layer_policy_for_features_and_fine_tuning():
    from sslflow.models.heads import head_layers_to_keep

    assert head_layers_to_keep("auto", {"layers": 3}) == 1  # SimCLRv2 fine-tunes from its first head layer
    assert head_layers_to_keep("auto", {"layers": 2}) == 0
    assert head_layers_to_keep("auto", None) == 0
    assert head_layers_to_keep(2, {"layers": 3}) == 2
    assert head_layers_to_keep(1, {"layers": 2}) == 1  # SimCLR's first layer
    assert head_layers_to_keep(2, {"layers": 2}) == 0  # the whole head is not a feature layer
    assert head_layers_to_keep(1, None) == 0  # no head: the backbone output


@pytest.mark.parametrize(
    "override, key",
    [
        ("eval.linear.holdout=1.5", "eval.linear.holdout"),
        ("eval.linear.l2_grid=[0.0]", "eval.linear.l2_grid"),
        ("eval.lowlabel.fractions=[5pct]", "eval.lowlabel.fractions.0"),
        ("eval.lowlabel.finetune.epochs={1pct: 0}", "eval.lowlabel.finetune.epochs"),
        ("eval.lowlabel.distill.temperature=0", "eval.lowlabel.distill.temperature"),
        ("eval.extract.dtype=int8", "eval.extract.dtype"),
    ],
)
def test_bad_eval_params_are_refused_by_key(tmp_path, override, key):
    from sslflow.errors import UserError

    (tmp_path / "params.yaml").write_text("seed: 0\n")
    with pytest.raises(UserError, match=rf"params.yaml: {key}"):
        load_params(tmp_path / "params.yaml", [override])
