"""The report from fixed metrics files: tables compared as text, summary rows, figures, and DVC reading them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sslflow.report.ablation import (
    Experiment,
    ExperimentsRead,
    ablation_figures,
    augmentation_pairs,
    experiments_line,
    gather_experiments,
    memory_bank_table,
    parse_exp_show,
    run_length,
    sweep,
)
from sslflow.report.collect import ordered, read_results, summary_row
from sslflow.report.document import precision_line
from sslflow.report.tables import head_layer_table, label_fraction_linear_table, linear_table, semi_supervised_table

REPO = Path(__file__).resolve().parents[2]
METHODS = ["simclr", "simclr_v2", "rotation", "supervised", "random_init", "raw_pixels"]
PNG = b"\x89PNG\r\n\x1a\n"


def fraction(linear: float, linear5: float, finetune: float | None = None, finetune5: float | None = None) -> dict:
    return {
        "n_labels": 600,
        "linear_top1": linear,
        "linear_top5": linear5,
        "linear_l2": 0.01,
        "finetune_top1": finetune,
        "finetune_top5": finetune5,
        "finetune_lr": None if finetune is None else 0.2,
        "distill_top1": None,
        "distill_top5": None,
    }


FILES = {
    "simclr/pretrain.json": {
        "backbone": "ResNet-18 (0.25x, small stem)",
        "params_m": 0.6999,
        "epochs": 3,
        "views": 102400,
        "wall_s": 151.37,
        "precision": "bf16",
    },
    "simclr/linear.json": {"top1": 0.8851, "top5": 0.9974, "l2": 1e-4, "backbone": "ignored", "params_m": 9.0},
    "simclr/lowlabel.json": {"1pct": fraction(0.8049, 0.9901, 0.7712, 0.9811), "10pct": fraction(0.8533, 0.9962)},
    "simclr_v2/pretrain.json": {"backbone": "ResNet-18 (0.25x, small stem)", "params_m": 0.6999, "views": 102400},
    "simclr_v2/linear.json": {"top1": 0.8702, "top5": 0.9971},
    "simclr_v2/lowlabel.json": {
        "1pct": {
            **fraction(0.7911, 0.9899, 0.8123, 0.9877),
            "finetune_head_layers": 1,
            "finetune_epochs": 20,
            "finetune_lr": 0.1,  # its own rate (eval.lowlabel.finetune.method_lr)
            "finetune_from_head": {"0": {"top1": 0.7804, "top5": 0.9850}, "1": {"top1": 0.8123, "top5": 0.9877}},
            "distill_top1": 0.8166,
            "distill_top5": 0.9881,
            "distill_images": 25600,
        },
        "10pct": {
            **fraction(0.8499, 0.9960, 0.8650, 0.9941),
            "finetune_head_layers": 1,
            "finetune_epochs": 3,
            "finetune_lr": 0.1,
            "finetune_from_head": {"0": {"top1": 0.8611, "top5": 0.9930}, "1": {"top1": 0.8650, "top5": 0.9941}},
            "distill_top1": 0.8644,
            "distill_top5": 0.9939,
            "distill_images": 25600,
        },
    },
    "rotation/linear.json": {
        "top1": 0.8612,
        "top5": 0.9951,
        "backbone": "ResNet-18 (0.25x, small stem)",
        "params_m": 0.6999,
    },
    "supervised/pretrain.json": {
        "backbone": "ResNet-18 (0.25x, small stem)",
        "params_m": 0.6999,
        "views": 204800,
        "wall_s": 98.5,
        "precision": "bf16",
    },
    "supervised/linear.json": {"top1": 0.9104, "top5": 0.9989},
    "random_init/pretrain.json": {
        "backbone": "ResNet-18 (0.25x, small stem)",
        "params_m": 0.6999,
        "views": 0,
        "wall_s": 4.21,
    },
    "random_init/linear.json": {"top1": 0.8593, "top5": 0.9968},
    "random_init/lowlabel.json": {
        "1pct": fraction(0.7634, 0.9822, 0.6501, 0.9555),
        "10pct": fraction(0.8201, 0.9936, 0.8012, 0.9901),
    },
    "raw_pixels/pretrain.json": {"backbone": "raw pixels", "params_m": 0.0},
    "raw_pixels/linear.json": {"top1": 0.8434, "top5": 0.9968},
    "raw_pixels/lowlabel.json": {"1pct": fraction(0.7833, 0.9845), "10pct": fraction(0.8255, 0.9951)},
}

LINEAR = """\
| Method | Architecture | Param (M) | Views | Pretrain (s) | Top 1 | Top 5 |
|:--|:--|--:|--:|--:|--:|--:|
| *Self-supervised methods:* |  |  |  |  |  |  |
| SimCLR | ResNet-18 (0.25x, small stem) | 0.70 | 102,400 | 151 | 88.5 | 99.7 |
| Rotation | ResNet-18 (0.25x, small stem) | 0.70 | - | - | 86.1 | 99.5 |
| *Controls:* |  |  |  |  |  |  |
| Supervised | ResNet-18 (0.25x, small stem) | 0.70 | 204,800 | 98 | 91.0 | 99.9 |
| Random init (untrained) | ResNet-18 (0.25x, small stem) | 0.70 | 0 | 4 | 85.9 | 99.7 |
| Raw pixels | raw pixels | 0 | - | - | 84.3 | 99.7 |
"""

LOWLABEL = """\
| Method | Architecture | Views | Top 1, 1% | Top 1, 10% | Top 5, 1% | Top 5, 10% |
|:--|:--|--:|--:|--:|--:|--:|
| *Self-supervised methods:* |  |  |  |  |  |  |
| SimCLR | ResNet-18 (0.25x, small stem) | 102,400 | 80.5 | 85.3 | 99.0 | 99.6 |
| SimCLRv2 | ResNet-18 (0.25x, small stem) | 102,400 | 79.1 | 85.0 | 99.0 | 99.6 |
| *Controls:* |  |  |  |  |  |  |
| Random init (untrained) | ResNet-18 (0.25x, small stem) | 0 | 76.3 | 82.0 | 98.2 | 99.4 |
| Raw pixels | raw pixels | - | 78.3 | 82.5 | 98.5 | 99.5 |
"""

SEMI_SUPERVISED = """\
| Method | Architecture | Views | Top 1, 1% | Top 1, 10% | Top 5, 1% | Top 5, 10% |
|:--|:--|--:|--:|--:|--:|--:|
| Supervised baseline | ResNet-18 (0.25x, small stem) | 0 | 65.0 | 80.1 | 95.5 | 99.0 |
| *Methods using unlabelled data in a task-agnostic way (fine-tuned):* |  |  |  |  |  |  |
| SimCLR, fine-tuned | ResNet-18 (0.25x, small stem) | 102,400 | 77.1 | - | 98.1 | - |
| SimCLRv2, fine-tuned from head layer 1 | ResNet-18 (0.25x, small stem) | 102,400 | 81.2 | 86.5 | 98.8 | 99.4 |
| *Methods using unlabelled data in both ways (fine-tuned, then distilled):* |  |  |  |  |  |  |
| SimCLRv2, self-distilled | ResNet-18 (0.25x, small stem) | 102,400 | 81.7 | 86.4 | 98.8 | 99.4 |
"""

HEAD_LAYERS = """\
| Fine-tuned from | Top 1, 1% | Top 1, 10% | Top 5, 1% | Top 5, 10% |
|:--|--:|--:|--:|--:|
| the backbone (head layer 0) | 78.0 | 86.1 | 98.5 | 99.3 |
| head layer 1 | 81.2 | 86.5 | 98.8 | 99.4 |
"""

BUDGET = "Fine-tuning: 20 epoch(s) of the 1% subset, 3 epoch(s) of the 10% subset. Nesterov SGD at 0.2 x B/256 (SimCLRv2 0.1). Distillation: 25,600 unlabelled train images per student.\n"


SIMCLR_V2_ROW = "| SimCLRv2 | ResNet-18 (0.25x, small stem) | 0.70 | 102,400 | - | 87.0 | 99.7 |\n"


def write_metrics(root: Path) -> Path:
    for name, content in FILES.items():
        path = root / "metrics" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
    return root / "metrics"


def write_dvclive(root: Path) -> None:
    for method, losses in (("simclr", [6.0, 5.1, 4.8]), ("rotation", [1.4, 0.9, 0.7])):
        folder = root / "dvclive" / method / "plots" / "metrics"
        (folder / "train").mkdir(parents=True)
        (folder / "train" / "loss.tsv").write_text(
            "step\tloss\n" + "".join(f"{10 * (i + 1)}\t{v}\n" for i, v in enumerate(losses))
        )
    (root / "dvclive/simclr/plots/metrics/knn").mkdir()
    (root / "dvclive/simclr/plots/metrics/knn/top1.tsv").write_text("step\ttop1\n30\t0.81\n")


@pytest.fixture
def results(tmp_path):
    metrics_dir = write_metrics(tmp_path)
    return [read_results(m, metrics_dir) for m in ordered(["relpos"] + METHODS)]


def test_tables_match_the_papers_layout_exactly(results):
    assert linear_table([r for r in results if r.method not in ("relpos", "simclr_v2")]) == LINEAR
    assert label_fraction_linear_table(results) == LOWLABEL
    assert semi_supervised_table(results) == SEMI_SUPERVISED
    v2 = next(r for r in results if r.method == "simclr_v2")
    assert head_layer_table(v2) == HEAD_LAYERS
    assert all(head_layer_table(r) == "" for r in results if r.method != "simclr_v2")


def test_the_precision_each_method_pretrained_in_is_said(results):
    assert precision_line(results) == "Every trained method pretrained in bf16 autocast (`train.precision`).\n"
    simclr = next(r for r in results if r.method == "simclr")
    fp32 = replace(simclr, method="rotation", pretrain={**simclr.pretrain, "precision": "fp32"})
    assert precision_line([*results, fp32]) == (
        "Pretraining precision (`train.precision`): bf16 autocast: SimCLR, Supervised; fp32: Rotation.\n"
    )
    assert precision_line([r for r in results if r.precision is None]) == ""


def test_methods_not_run_print_dashes(results):
    relpos = next(r for r in results if r.method == "relpos")
    assert "| Relative position | - | - | - | - | - | - |" in linear_table([relpos])


def test_summary_rows(results):
    rows = {r.method: summary_row(r) for r in results}
    assert rows["simclr"] == {
        "method": "simclr",
        "backbone": "ResNet-18 (0.25x, small stem)",  # pretrain.json first
        "params_m": 0.6999,
        "linear_top1": 0.8851,
        "linear_top5": 0.9974,
        "pct1_top1": 0.8049,
        "pct10_top1": 0.8533,
        "pct1_finetune_top1": 0.7712,
        "pct10_finetune_top1": None,
        "pct1_distill_top1": None,
        "pct10_distill_top1": None,
        "budget_views": 102400,
        "pretrain_s": 151.37,
    }
    assert rows["rotation"]["pct1_top1"] is None and rows["rotation"]["backbone"] == "ResNet-18 (0.25x, small stem)"
    assert all(v is None for k, v in rows["relpos"].items() if k != "method")


def link_shards(project, tiny_project) -> None:
    """The report draws each method's views from the shards (read-only, shared)."""
    (project / "data").mkdir(exist_ok=True)
    (project / "data" / "shards").symlink_to(tiny_project / "data" / "shards")


def test_report_stage_writes_report_summary_and_figures(tmp_path, monkeypatch, tiny_project):
    from sslflow.params import load_params
    from sslflow.stages import report

    write_metrics(tmp_path)
    write_dvclive(tmp_path)
    link_shards(tmp_path, tiny_project)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    rows = report.run(load_params("params.yaml", [f"pretrain.methods={METHODS}"]), no_experiments=True)
    reports = tmp_path / "reports"
    assert json.loads((reports / "summary.json").read_text()) == rows
    assert [r["method"] for r in rows] == METHODS
    text = (reports / "report.md").read_text()
    assert LINEAR.replace("| Rotation", SIMCLR_V2_ROW + "| Rotation") in text
    assert LOWLABEL in text and SEMI_SUPERVISED + "\n" + BUDGET in text and HEAD_LAYERS in text
    assert "### SimCLRv2: fine-tuning from which layer" in text
    assert "![Pretraining curves](plots/training_curves.png)" in text
    for png in (
        "plots/accuracy.png",
        "plots/training_curves.png",
        "augment/simclr.png",
        "augment/rotation.png",
        "augment/supervised.png",
    ):
        assert (reports / png).read_bytes().startswith(PNG)
    assert sorted(p.name for p in (reports / "augment").iterdir()) == ["rotation.png", "simclr.png", "supervised.png"]
    assert "![What rotation trains on: source images (left) and augmented views](augment/rotation.png)" in text
    assert (reports / "curves" / "rotation.tsv").read_text() == "step\tloss\n10\t1.4\n20\t0.9\n30\t0.7\n"
    assert (reports / "accuracy.tsv").read_text().splitlines()[1] == "simclr\t88.51\t85.33\t80.49"


def test_a_broken_metrics_file_is_named(tmp_path):
    from sslflow.errors import UserError

    (tmp_path / "simclr").mkdir()
    (tmp_path / "simclr" / "linear.json").write_text("{")
    with pytest.raises(UserError, match=r"simclr/linear.json: not valid JSON"):
        read_results("simclr", tmp_path)


# ----------------------------------------------------------------------------- ablations


def exp_entry(rev: str, name: str | None, params: dict, top1: float | None) -> dict:
    """One revision as `dvc exp show --json` prints it."""
    metrics = {} if top1 is None else {"metrics/simclr/linear.json": {"data": {"top1": top1, "top5": 0.99}}}
    data = {
        "rev": rev,
        "timestamp": None,
        "params": {"params.yaml": {"data": params}},
        "metrics": metrics,
        "deps": {},
        "outs": {},
        "meta": {},
    }
    return {"rev": rev, "name": name, "data": data, "error": None, "experiments": None}


def simclr_params(
    batch=256, epochs=1, proj_dim=128, ops=("random_resized_crop", "color_jitter"), temperature=0.5, lr=0.3
) -> dict:
    return {
        "train": {"batch_size": batch, "epochs": epochs, "lr": lr},
        "pretrain": {
            "simclr": {
                "batch_size": None,
                "epochs": None,
                "proj_dim": proj_dim,
                "proj_layers": 2,
                "temperature": temperature,
            }
        },
        "augment": {"simclr": {"ops": [{"op": op} for op in ops]}},
    }


def exp_show_rows() -> list[dict]:
    variants = [
        ("e1", simclr_params(batch=512), 0.86),
        ("e2", simclr_params(batch=1024), 0.87),
        ("e3", simclr_params(batch=512, epochs=2), 0.88),
        ("e4", simclr_params(proj_dim=32), 0.84),
        ("e5", simclr_params(ops=("random_resized_crop",)), 0.70),
        ("e6", simclr_params(ops=("color_jitter", "random_resized_crop")), 0.83),
        ("e7", simclr_params(batch=512, proj_dim=32), 0.99),  # two knobs at once: in no sweep
        ("e8", simclr_params(lr=1.0), 0.80),  # a knob no figure plots
        ("e9", simclr_params(temperature=0.1), 0.86),
        ("e10", simclr_params(batch=2048), None),  # failed run, no metrics
    ]
    baseline = exp_entry("abc123", "main", simclr_params(), 0.85)
    baseline["experiments"] = [
        {"revs": [exp_entry(rev, rev, p, top1)], "executor": None, "name": rev} for rev, p, top1 in variants
    ]
    workspace = exp_entry("workspace", None, simclr_params(batch=4096), 0.5)
    return [workspace, baseline]


def v2_run(name: str, baseline: bool, queue: int, top1: float, pct1: float | None, other: int = 0) -> Experiment:
    lowlabel = {"1pct": {"finetune_top1": pct1}, "10pct": {"finetune_top1": None}}
    return Experiment(
        name,
        baseline,
        {"pretrain.simclr_v2.queue_size": queue, "train.lr": 0.5 + other},
        {"metrics/simclr_v2/linear.json": {"top1": top1}, "metrics/simclr_v2/lowlabel.json": lowlabel},
    )


def test_memory_bank_rows_are_the_runs_that_changed_only_the_queue():
    runs = [
        v2_run("main", True, 4096, 0.8712, 0.8123),
        v2_run("bank-0", False, 0, 0.8654, 0.8011),
        v2_run("also-lr", False, 1024, 0.99, 0.99, other=1),  # two knobs changed: not this ablation
    ]
    assert memory_bank_table(runs) == (
        "| Memory bank | Linear top 1 | Fine-tuned top 1, 1% | Fine-tuned top 1, 10% |\n"
        "|:--|--:|--:|--:|\n"
        "| none (in-batch negatives) | 86.5 | 80.1 | - |\n"
        "| 4,096 keys, momentum encoder | 87.1 | 81.2 | - |\n"
    )
    assert memory_bank_table(runs[:1] + runs[2:]) == ""  # one queue size: nothing to compare


def test_an_uncommitted_baseline_is_read_from_the_workspace():
    """After a fresh clone's `make run` the commit has no metrics; its experiments' baseline is the workspace."""
    workspace, baseline = exp_show_rows()
    bare = exp_entry("abc123", "main", simclr_params(), None) | {"experiments": baseline["experiments"]}
    experiments = parse_exp_show([workspace, bare])
    assert experiments[0].name == "main" and experiments[0].baseline
    assert experiments[0].metrics["metrics/simclr/linear.json"]["top1"] == 0.5  # the workspace's
    assert parse_exp_show([workspace, baseline])[0].metrics["metrics/simclr/linear.json"]["top1"] == 0.85


def test_exp_show_rows_become_sweeps():
    experiments = parse_exp_show(exp_show_rows())
    assert [e.name for e in experiments][:3] == ["main", "e1", "e2"] and len(experiments) == 11
    assert experiments[0].baseline and experiments[0].params["train.batch_size"] == 256
    batch = sweep(
        experiments, {"train.batch_size", "train.epochs", "pretrain.simclr.batch_size", "pretrain.simclr.epochs"}
    )
    assert [e.name for e in batch] == ["main", "e1", "e2", "e3", "e10"]
    assert augmentation_pairs(experiments, "simclr") == {
        ("random_resized_crop", "color_jitter"): 0.85,
        ("random_resized_crop", "random_resized_crop"): 0.70,
        ("color_jitter", "random_resized_crop"): 0.83,
    }


def test_ablation_figures_are_drawn(tmp_path):
    drawn = ablation_figures(parse_exp_show(exp_show_rows()), tmp_path)
    names = [figure.file for figure in drawn]
    assert names == [
        "ablation_batch_size.png",
        "ablation_proj_dim.png",
        "ablation_temperature.png",
        "ablation_augment_pairs.png",
    ]
    for name in names:
        assert (tmp_path / name).read_bytes().startswith(PNG)
    assert ablation_figures(parse_exp_show([exp_show_rows()[1] | {"experiments": None}]), tmp_path / "none") == []


def test_batch_figure_lines_are_training_lengths(tmp_path):
    """One line per length as the loop applies it: the shared views budget, a method's own epochs replacing it."""
    budget = {"train.budget_views": 102400, "train.epochs": 1, "train.batch_size": 128}

    def exp(name, baseline=False, top1=0.8, **params):
        return Experiment(name, baseline, {**budget, **params}, {"metrics/simclr/linear.json": {"top1": top1}})

    runs = [
        exp("base", baseline=True, top1=0.85),
        exp("b64", top1=0.84, **{"pretrain.simclr.batch_size": 64}),
        exp("b256", top1=0.83, **{"pretrain.simclr.batch_size": 256}),
        exp("two-epochs", top1=0.88, **{"pretrain.simclr.epochs": 2}),
        exp("short", top1=0.80, **{"pretrain.simclr.budget_views": 51200, "pretrain.simclr.batch_size": 64}),
    ]
    assert [run_length(e, "simclr") for e in runs] == [
        "102,400 views",
        "102,400 views",
        "102,400 views",
        "2 epochs",
        "51,200 views",
    ]
    assert run_length(exp("e", **{"train.budget_views": None}), "simclr") == "1 epoch"
    (figure,) = [f for f in ablation_figures(runs, tmp_path) if f.file == "ablation_batch_size.png"]
    assert figure.points == [
        ("102,400 views", 64.0, 0.84),
        ("102,400 views", 128.0, 0.85),
        ("102,400 views", 256.0, 0.83),
        ("2 epochs", 128.0, 0.88),
        ("51,200 views", 64.0, 0.80),
    ]


def test_unreadable_experiments_are_said_not_dropped(tmp_path):
    """Outside a DVC repository `dvc exp show` fails: the report's line says so, with DVC's reason."""
    read = gather_experiments(tmp_path)
    assert read.experiments == [] and read.problem.startswith("`dvc exp show` failed: ")
    assert "not inside of a DVC repository" in read.problem
    assert experiments_line(read, 0).startswith("No ablation figure: `dvc exp show` failed: ")


def test_experiments_without_metrics_are_counted():
    rows = exp_show_rows()
    blind = json.loads(json.dumps(rows))  # every experiment's metrics gone, as when metrics/ is not committed
    for exp in blind[1]["experiments"]:
        for rev in exp["revs"]:
            rev["data"]["metrics"] = {}
    experiments = parse_exp_show(blind)
    line = experiments_line(ExperimentsRead(experiments), 0)
    runs = sum(not e.baseline for e in experiments)
    assert line.startswith(f"{runs} experiment(s) read, 0 figure(s) drawn. {runs} carry no simclr linear top-1")
    assert experiments_line(ExperimentsRead(parse_exp_show(rows)), 4) == (
        f"{runs} experiment(s) read, 4 figure(s) drawn. 1 carry no simclr linear top-1 (`dvc exp show` prints `!`): e10."
    )


# ----------------------------------------------------------------------------- DVC reads the outputs


def test_dvc_metrics_and_plots_show_read_the_outputs(tmp_path, monkeypatch, tiny_project):
    from sslflow.params import load_params
    from sslflow.stages import report

    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=600)
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    write_metrics(tmp_path)
    write_dvclive(tmp_path)
    link_shards(tmp_path, tiny_project)
    monkeypatch.chdir(tmp_path)
    report.run(load_params("params.yaml"), no_experiments=True)

    def dvc(*args: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "dvc", *args, "--json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        return json.loads(done.stdout)

    (shown_rev,) = dvc("metrics", "show").values()  # the workspace (keyed "" before any commit)
    shown = shown_rev["data"]
    assert shown["metrics/simclr/linear.json"]["data"]["top1"] == 0.8851
    assert shown["metrics/raw_pixels/lowlabel.json"]["data"]["1pct"]["linear_top1"] == 0.7833
    plots = dvc("plots", "show")
    assert not plots.get("errors")
    assert {"reports/accuracy.tsv", "reports/curves/simclr.tsv", "reports/plots/accuracy.png"} <= set(plots["data"])


@pytest.mark.parametrize("split", ["test", "val"])
def test_the_accuracy_figure_names_the_split_its_numbers_come_from(results, tmp_path, monkeypatch, split):
    from sslflow.eval.split import EvalSplit
    from sslflow.report import plots
    from sslflow.report.document import split_name

    drawn: list[str] = []
    monkeypatch.setattr(plots, "save", lambda fig, dest: drawn.append(fig.axes[0].get_xlabel()))
    scored_on = EvalSplit(name=split, held_out=frozenset({"a", "b"})).describe()
    plots.accuracy_figure(results, tmp_path / "accuracy.png", scored_on=split_name(scored_on))
    expected = "test split" if split == "test" else "validation slice"
    assert drawn == [f"linear top-1 on the {expected} (%)"]


@pytest.mark.parametrize(
    "percent, expected",
    [
        ([80.0, 80.3, 80.1], (75.15, 85.15)),
        ([50.0, 70.0], (50.0, 70.0)),
        ([1.0, 2.0], (0.0, 10.0)),
        ([99.5], (90.0, 100.0)),
    ],
)
def test_the_knn_axis_is_at_least_ten_points_tall(percent, expected):
    from sslflow.report.plots import knn_axis

    assert knn_axis(percent) == pytest.approx(expected)
