"""The 1% / 10% label protocol for one method and one label subset.

Three classifiers, each scored on every image of the protocol's split (the test split, or the
validation slice under `eval.split: val`, which then leaves train: sslflow/eval/split.py):
- linear: the linear probe on the subset's rows of the frozen train features;
- finetune: the encoder fine-tuned on the subset (crop + flip only), none for
  raw pixels; from a random_init encoder this is supervised training from
  scratch on the subset, the papers' "supervised baseline". Optionally again from
  other projection-head layers (SimCLRv2's "from which layer" ablation);
- distill (optional): a student of the same architecture taught by the
  fine-tuned model's soft labels on all train images (SimCLRv2), never their labels.

`eval.lowlabel.finetune.methods` and `distill.methods` name who gets the costly
classifiers; every method gets the linear probe.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sslflow import paths
from sslflow.eval.features import FeatureSet
from sslflow.eval.finetune import Batches, build_classifier, cross_entropy_loss, evaluate, train
from sslflow.eval.linear_probe import probe_with
from sslflow.eval.split import EvalSplit
from sslflow.precision import use_bf16

NO_FINETUNE = ("raw_pixels",)  # a flatten "encoder" has no weights to tune


RESULT_KEYS = (
    "linear_top1",
    "linear_top5",
    "finetune_top1",
    "finetune_top5",
    "finetune_head_layers",  # projection-head layers kept below the classifier (SimCLRv2: 1)
    "finetune_from_head",  # {"0": {"top1", "top5"}, "1": ...}: the head-layer ablation, when asked for
    "finetune_epochs",  # over the subset
    "finetune_lr",  # Nesterov SGD's rate per 256 images
    "distill_top1",
    "distill_top5",
    "distill_images",  # unlabelled train images the student was taught on, repeats counted
)


def empty_result() -> dict:
    """Every key of a fraction's entry in lowlabel.json; null until that classifier has run."""
    return dict.fromkeys(RESULT_KEYS)


def chosen(methods: Sequence[str] | None, method: str) -> bool:
    """A `methods` list of eval.lowlabel names the method (null: every method)."""
    return methods is None or method in methods


def probe_subset(params, train: FeatureSet, val: FeatureSet, rows: np.ndarray, n_classes: int) -> dict:
    """Linear probe trained on the subset's rows only (L2 chosen on a held-out slice of the subset)."""
    result = probe_with(
        params.eval.linear,
        train.features[rows],
        train.labels[rows],
        val.features,
        val.labels,
        n_classes=n_classes,
        seed=params.seed,
    )
    return {"linear_top1": result.top1, "linear_top5": result.top5, "linear_l2": result.l2}


def train_batches(params, *, keys: Sequence[str] | None, batch_size: int, device: str, exclude=None) -> Batches:
    """The first epoch of crop + flip batches of the train split (restricted to `keys` when given, less `exclude`)."""
    from sslflow.augment.loader import make_loader

    return make_loader(
        params,
        kind="supervised",
        split="train",
        batch_size=batch_size,
        keys=None if keys is None else set(keys),
        exclude=exclude,
        device=device,
    )


class Unlabelled:
    """A loader's batches with the images only: all a distillation student is given to read."""

    def __init__(self, loader: Batches) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return ({"image": batch["image"]} for batch in self.loader)

    def next_epoch(self) -> Unlabelled:
        return Unlabelled(self.loader.next_epoch())


def scored_batches(params, split: EvalSplit, device: str):
    """Every image the protocol scores on once, eval view (resize + centre crop)."""
    from sslflow.augment.loader import make_loader

    cfg = params.eval.lowlabel.finetune
    return make_loader(
        params,
        kind="eval",
        batch_size=cfg.eval_batch_size,
        shuffle=False,
        drop_last=False,
        device=device,
        **split.scored,
    )


def finetune_subset(
    params,
    split: EvalSplit,
    method: str,
    fraction: str,
    keys: Sequence[str],
    n_classes: int,
    device: str,
    head_layers: str | int | None = None,
):
    """Fine-tune the method's encoder on the subset; return (model, head_layers used, top-1, top-5 scored).

    head_layers: where the classifier sits (eval.lowlabel.finetune.head_layers when None).
    """
    from sslflow.models.encoder import read_encoder
    from sslflow.models.heads import head_layers_to_keep

    cfg = params.eval.lowlabel.finetune
    setting = cfg.head_layers if head_layers is None else head_layers
    head_layers = head_layers_to_keep(setting, read_encoder(paths.encoder(method)).get("head_cfg"))
    model = build_classifier(paths.encoder(method), head_layers=head_layers, n_classes=n_classes, device=device)
    batch_size = min(cfg.batch_size, len(keys))
    bf16 = use_bf16(params.train.precision, device)
    train(
        model,
        train_batches(params, keys=keys, batch_size=batch_size, device=device),
        cross_entropy_loss(device),
        epochs=cfg.epochs[fraction],
        lr=cfg.lr_for(method) * batch_size / 256,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        desc=f"{method} fine-tune {fraction}" + (f" from head layer {head_layers}" if head_layers else ""),
        log_every=params.train.log_every,
        bf16=bf16,
    )
    top1, top5 = evaluate(
        model, scored_batches(params, split, device), device, desc=f"{method} {fraction} {split.name}", bf16=bf16
    )
    return model, head_layers, top1, top5


def distill_student(
    params, split: EvalSplit, method: str, teacher, head_layers: int, n_classes: int, fraction: str, device: str
):
    """Train a student (same architecture, from the pretrained encoder) on the teacher's soft labels on
    unlabelled train images; return its top-1, top-5 and the images it was taught on."""
    from sslflow.eval.distill import distillation_loss

    cfg = params.eval.lowlabel.distill
    momentum = params.eval.lowlabel.finetune.momentum
    student = build_classifier(paths.encoder(method), head_layers=head_layers, n_classes=n_classes, device=device)
    images = train_batches(params, keys=None, batch_size=cfg.batch_size, device=device, exclude=split.train_exclude)
    bf16 = use_bf16(params.train.precision, device)
    taught = train(
        student,
        Unlabelled(images),
        distillation_loss(teacher, cfg.temperature, device),
        epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        lr=cfg.lr * cfg.batch_size / 256,
        momentum=momentum,
        weight_decay=0.0,
        desc=f"{method} distill {fraction}",
        log_every=params.train.log_every,
        bf16=bf16,
    )
    scored = scored_batches(params, split, device)
    desc = f"{method} {fraction} student {split.name}"
    return (*evaluate(student, scored, device, desc=desc, bf16=bf16), taught.images)


def evaluate_fraction(
    params,
    split: EvalSplit,
    method: str,
    fraction: str,
    keys: Sequence[str],
    train_set: FeatureSet,
    val_set: FeatureSet,
    n_classes: int,
    device: str,
) -> dict:
    """All classifiers of one label fraction, as the fraction's entry of lowlabel.json."""
    result = empty_result()
    result["n_labels"] = len(keys)
    rows = train_set.rows(keys, paths.features(method, "train"))
    result.update(probe_subset(params, train_set, val_set, rows, n_classes))
    cfg = params.eval.lowlabel
    if not cfg.finetune.enabled or method in NO_FINETUNE or not chosen(cfg.finetune.methods, method):
        return result
    teacher, head_layers, result["finetune_top1"], result["finetune_top5"] = finetune_subset(
        params, split, method, fraction, keys, n_classes, device
    )
    result["finetune_head_layers"], result["finetune_epochs"] = head_layers, cfg.finetune.epochs[fraction]
    result["finetune_lr"] = cfg.finetune.lr_for(method)
    if method in cfg.finetune.head_layer_ablation:
        result["finetune_from_head"] = head_layer_ablation(
            params, split, method, fraction, keys, n_classes, device, done={head_layers: result}
        )
    if cfg.distill.enabled and chosen(cfg.distill.methods, method):
        result["distill_top1"], result["distill_top5"], result["distill_images"] = distill_student(
            params, split, method, teacher, head_layers, n_classes, fraction, device
        )
    return result


def head_layer_ablation(
    params, split: EvalSplit, method: str, fraction: str, keys: Sequence[str], n_classes: int, device: str, done: dict
) -> dict[str, dict]:
    """{head layers: {top1, top5}}: fine-tuned from each layer the ablation names (SimCLRv2's "from
    which layer" comparison), the run already done reused. A layer the head does not have means the
    backbone (head_layers_to_keep), scored once under the layer really used."""
    import torch

    from sslflow.models.encoder import read_encoder
    from sslflow.models.heads import head_layers_to_keep

    head = read_encoder(paths.encoder(method)).get("head_cfg")
    scores = {str(n): {"top1": r["finetune_top1"], "top5": r["finetune_top5"]} for n, r in done.items()}
    for layers in params.eval.lowlabel.finetune.head_layer_ablation[method]:
        if str(head_layers_to_keep(layers, head)) in scores:
            continue
        torch.manual_seed(params.seed)  # the new classifier starts as the main run's did
        _, used, top1, top5 = finetune_subset(params, split, method, fraction, keys, n_classes, device, layers)
        scores[str(used)] = {"top1": top1, "top5": top5}
    return dict(sorted(scores.items()))
