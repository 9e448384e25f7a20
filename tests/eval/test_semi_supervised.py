"""SimCLRv2's semi-supervised protocol: fine-tuning from the head's first layer, the head-layer
ablation, and a distilled student that reads images and nothing else."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sslflow.params import load_params
from tests.eval.conftest import in_project, new_project
from tests.train.test_models import save_test_encoder


def save_v2_encoder(path) -> tuple[nn.Module, nn.Module]:
    """An encoder file as simclr_v2 writes it, where a stage looks for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_test_encoder(path)


def test_fine_tuning_from_head_layer_1_starts_from_that_layers_weights(tmp_path):
    from sslflow.eval.finetune import build_classifier

    backbone, head = save_v2_encoder(tmp_path / "encoder.pt")
    model = build_classifier(tmp_path / "encoder.pt", head_layers=1, n_classes=10, device="cpu").eval()
    x = torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    backbone.to(memory_format=torch.channels_last)  # the classifier's layout, so the same kernels run
    with torch.no_grad():
        torch.testing.assert_close(model[0](x), head[0](backbone(x)), rtol=0, atol=0)
    first = head[0][0].weight  # Linear(backbone.out_dim -> 24) of the head's first block
    assert model[1].in_features == 24 and first.shape == (24, backbone.out_dim)
    assert any(torch.equal(p, first) for p in model[0].parameters())
    assert all(p.requires_grad for p in model.parameters())  # fine-tuned whole, head layer included
    from_backbone = build_classifier(tmp_path / "encoder.pt", head_layers=0, n_classes=10, device="cpu")
    assert from_backbone[1].in_features == backbone.out_dim


@pytest.fixture(scope="module")
def v2_project(tmp_path_factory, tiny_project):
    """The tiny project with a simclr_v2 encoder and its features."""
    from sslflow.stages import extract

    project = new_project(tmp_path_factory.mktemp("v2-project"), tiny_project)
    save_v2_encoder(project / "models" / "simclr_v2" / "encoder.pt")
    in_project(project, extract.run, load_params(project / "params.yaml"), "simclr_v2")
    return project


def test_head_layer_ablation_and_a_student_that_reads_no_label(v2_project, monkeypatch):
    import sslflow.eval.distill as distill
    import sslflow.eval.lowlabel as lowlabel_module
    from sslflow.stages import lowlabel

    read: list[set[str]] = []
    real_loss = distill.distillation_loss

    def watched_loss(teacher, temperature, device):
        loss = real_loss(teacher, temperature, device)

        def recording(student, batch):
            read.append(set(batch))
            return loss(student, batch)

        return recording

    monkeypatch.setattr(distill, "distillation_loss", watched_loss)
    # which classifiers are built (fine-tuned from layer 1, then from the backbone; the student): a few steps
    # of a random encoder score at chance either way, so the scores cannot tell the runs apart
    built: list[int] = []
    real_build = lowlabel_module.build_classifier

    def recording_build(path, *, head_layers, **kwargs):
        built.append(head_layers)
        return real_build(path, head_layers=head_layers, **kwargs)

    monkeypatch.setattr(lowlabel_module, "build_classifier", recording_build)
    params = load_params(
        v2_project / "params.yaml",
        [
            "eval.lowlabel.fractions=[10pct]",
            "eval.lowlabel.finetune.enabled=true",
            "eval.lowlabel.finetune.methods=[simclr_v2]",
            "eval.lowlabel.finetune.epochs={10pct: 2}",
            "eval.lowlabel.finetune.batch_size=32",
            "eval.lowlabel.finetune.head_layer_ablation={simclr_v2: [0, 1]}",
            "eval.lowlabel.distill.enabled=true",
            "eval.lowlabel.distill.methods=[simclr_v2]",
            "eval.lowlabel.distill.batch_size=16",
            "eval.lowlabel.distill.max_steps=3",
        ],
    )
    in_project(v2_project, lowlabel.run, params, "simclr_v2")
    entry = json.loads((v2_project / "metrics" / "simclr_v2" / "lowlabel.json").read_text())["10pct"]
    assert entry["finetune_head_layers"] == 1 and entry["finetune_epochs"] == 2  # auto: a 3-layer head's first layer
    scores = entry["finetune_from_head"]
    assert sorted(scores) == ["0", "1"]
    assert scores["1"] == {"top1": entry["finetune_top1"], "top5": entry["finetune_top5"]}  # the main run, reused
    assert scores["0"]["top1"] is not None and built == [1, 0, 1]
    # the student: three steps of 16 unlabelled images, each batch the images alone
    assert entry["distill_images"] == 48 and read == [{"image"}] * 3
    assert 0 <= entry["distill_top1"] <= entry["distill_top5"]


def test_a_methods_own_fine_tuning_rate_is_the_one_it_trains_at(v2_project, monkeypatch):
    """method_lr replaces lr for that method alone; lowlabel.json says which rate each row had."""
    import sslflow.eval.lowlabel as lowlabel_eval
    from sslflow.stages import lowlabel

    rates: list[float] = []
    real_train = lowlabel_eval.train

    def watched_train(*args, lr, **kwargs):
        rates.append(lr)
        return real_train(*args, lr=lr, **kwargs)

    monkeypatch.setattr(lowlabel_eval, "train", watched_train)
    settings = [
        "eval.lowlabel.fractions=[10pct]",
        "eval.lowlabel.finetune.enabled=true",
        "eval.lowlabel.finetune.methods=[simclr_v2]",
        "eval.lowlabel.finetune.epochs={10pct: 1}",
        "eval.lowlabel.finetune.batch_size=32",
        "eval.lowlabel.finetune.lr=0.4",
        "eval.lowlabel.finetune.head_layer_ablation={}",
        "eval.lowlabel.distill.enabled=false",
    ]
    written = []
    for own in ("{simclr_v2: 0.1}", "{simclr: 0.1}"):  # its own rate, then another method's
        params = load_params(v2_project / "params.yaml", [*settings, f"eval.lowlabel.finetune.method_lr={own}"])
        written.append(in_project(v2_project, lowlabel.run, params, "simclr_v2")["10pct"]["finetune_lr"])
    assert rates == [0.1 * 32 / 256, 0.4 * 32 / 256]  # per 256 images, scaled to the batch
    assert written == [0.1, 0.4]


def test_methods_lists_choose_who_is_fine_tuned_and_distilled(v2_project):
    """A method off both lists gets its linear probe only, with every costly key null."""
    from sslflow.stages import lowlabel

    params = load_params(
        v2_project / "params.yaml",
        [
            "eval.lowlabel.fractions=[1pct]",
            "eval.lowlabel.finetune.enabled=true",
            "eval.lowlabel.finetune.methods=[random_init]",
            "eval.lowlabel.distill.enabled=true",
            "eval.lowlabel.distill.methods=[random_init]",
        ],
    )
    written = in_project(v2_project, lowlabel.run, params, "simclr_v2")["1pct"]
    assert written["linear_top1"] is not None
    costly = ("finetune_top1", "finetune_head_layers", "finetune_from_head", "distill_top1", "distill_images")
    assert all(written[key] is None for key in costly)


def test_unknown_methods_in_the_lists_are_refused_by_key(tmp_path):
    from sslflow.errors import UserError

    (tmp_path / "params.yaml").write_text("seed: 0\n")
    for key, value in (
        ("eval.lowlabel.finetune.methods", "[simclrv2]"),
        ("eval.lowlabel.distill.methods", "[simclr, byl]"),
        ("eval.lowlabel.finetune.head_layer_ablation", "{simclr2: [0, 1]}"),
        ("eval.lowlabel.finetune.method_lr", "{simclr2: 0.1}"),
    ):
        with pytest.raises(UserError, match=rf"params.yaml: {key}: .*unknown method"):
            load_params(tmp_path / "params.yaml", [f"{key}={value}"])
