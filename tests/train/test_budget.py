"""One budget for every method: `train.budget_views` gives each trained method the views it names.

Views are what the backbone processes: images x the views a method makes of each
(SimCLR 2, rotation 4, relative position 2 patches, exemplar and supervised 1).
The runs below use a budget that is not a multiple of any batch, and exemplar's
epoch (32 patch copies) is shorter than its budget: the budget, not epochs, sets the length.
"""

from __future__ import annotations

import json
import math

import pytest

from sslflow.errors import UserError
from sslflow.params import load_params
from sslflow.precision import use_bf16
from sslflow.schedule import method_train_cfg

from .conftest import SMALL_MODEL

BUDGET = 100  # views
BATCH = 16
VIEWS = {"simclr": 2, "rotation": 4, "relpos": 2, "exemplar": 1, "supervised": 1}  # per image, from the papers


def _params(*overrides: str):
    return load_params("params.yaml", [*SMALL_MODEL, *overrides])


def test_the_repo_gives_every_pretext_method_the_same_budget_and_the_control_twice_it():
    """The supervised control is the upper reference, trained on twice the views (the report's budget column says so)."""
    from sslflow.methods.registry import planned_steps

    params = load_params("params.yaml")
    budget = params.train.budget_views
    for method in ("simclr", "rotation", "relpos", "exemplar", "supervised", "moco", "byol"):
        cfg = method_train_cfg(params.train, params.pretrain, method)
        assert cfg.budget_views == budget * (2 if method == "supervised" else 1), method
        views = VIEWS.get(method, 2)  # MoCo and BYOL train on SimCLR's two views
        assert planned_steps(params, method) == math.ceil(cfg.budget_views / (cfg.batch_size * views)), method


def test_a_method_that_sets_its_own_length_leaves_the_shared_budget(train_project):
    params = _params(
        "train.budget_views=1000",
        "pretrain.rotation.max_steps=7",
        "pretrain.relpos.epochs=3",
        "pretrain.supervised.budget_views=64",
    )
    simclr, rotation, relpos, supervised = (
        method_train_cfg(params.train, params.pretrain, m) for m in ("simclr", "rotation", "relpos", "supervised")
    )
    assert (simclr.budget_views, simclr.max_steps) == (1000, None)
    assert (rotation.budget_views, rotation.max_steps) == (None, 7)
    assert (relpos.budget_views, relpos.epochs) == (None, 3)
    assert supervised.budget_views == 64
    # a train-level max_steps caps epochs, not a method's budget
    params = _params("train.budget_views=null", "train.max_steps=5", "pretrain.supervised.budget_views=64")
    assert method_train_cfg(params.train, params.pretrain, "supervised").max_steps is None


def test_a_budget_scale_follows_the_shared_budget():
    """The control's scale: twice whatever the shared budget is; its own length, or none shared, wins."""
    scaled = _params("train.budget_views=1000", "pretrain.supervised.budget_scale=2")
    assert method_train_cfg(scaled.train, scaled.pretrain, "supervised").budget_views == 2000
    own = _params("train.budget_views=1000", "pretrain.supervised.budget_scale=2", "pretrain.supervised.max_steps=9")
    cfg = method_train_cfg(own.train, own.pretrain, "supervised")
    assert (cfg.budget_views, cfg.max_steps) == (None, 9)
    epochs = _params("train.budget_views=null", "pretrain.supervised.budget_scale=2")
    assert method_train_cfg(epochs.train, epochs.pretrain, "supervised").budget_views is None


@pytest.mark.parametrize("where", ["train", "pretrain.simclr"])
def test_a_budget_and_max_steps_together_are_one_clear_error(train_project, where):
    with pytest.raises(UserError) as info:
        _params(f"{where}.budget_views=100", f"{where}.max_steps=3")
    assert str(info.value) == (
        f"params.yaml: {where}: Value error, budget_views and max_steps both set: give one (the budget sets the steps)"
    )


@pytest.mark.slow
def test_each_method_processes_the_views_of_its_budget(train_project):
    from sslflow.stages import pretrain

    params = _params(
        f"train.budget_views={BUDGET}",
        f"train.batch_size={BATCH}",
        "pretrain.rotation.batch_size=16",  # the profile's 64 would be 256 views a step
        "pretrain.supervised.budget_scale=null",  # the shared budget for all five here
        "augment.exemplar.classes=16",
        "augment.exemplar.copies=2",  # 2 steps an epoch
        "train.knn.val_samples=32",
        "train.checkpoint_every=1000",
        "augment.threads=1",
    )
    for method, views in VIEWS.items():
        steps = math.ceil(BUDGET / (BATCH * views))
        summary = pretrain.run(params, method)
        written = json.loads((train_project / f"metrics/{method}/pretrain.json").read_text())
        assert written == summary
        assert (summary["steps"], summary["views"]) == (steps, steps * BATCH * views), method
        assert BUDGET <= summary["views"] < BUDGET + BATCH * views, "the budget, rounded up to whole steps"
        assert summary["wall_s"] > 0
        assert summary["precision"] == ("bf16" if use_bf16("auto", "cpu") else "fp32")  # train.precision: auto
    assert json.loads((train_project / "metrics/exemplar/pretrain.json").read_text())["epochs"] == 3.5


def test_the_flow_names_each_pretraining_by_its_budget():
    from sslflow.flows import Stage, stage_label

    params = load_params("params.yaml")
    label = {m: stage_label(Stage(f"pretrain@{m}", "", ()), params) for m in ("simclr", "rotation", "supervised")}
    assert label == {
        "simclr": "pretrain@simclr (102,400 views: 400 steps, batch 128, sgd lr 0.5)",
        "rotation": "pretrain@rotation (102,400 views: 400 steps, batch 64, sgd lr 1)",
        "supervised": "pretrain@supervised (204,800 views: 1,600 steps, batch 128, sgd lr 0.5)",
    }


@pytest.mark.parametrize(
    "total, points, expected",
    [(400, 5, {80, 160, 240, 320, 400}), (20, 5, {4, 8, 12, 16, 20}), (3, 5, {1, 2, 3}), (400, 0, {400}), (7, 1, {7})],
)
def test_the_knn_monitor_scores_at_points_spread_over_the_run(total, points, expected):
    from sslflow.schedule import knn_steps

    assert knn_steps(total, points) == expected
