"""A long run speaks without a terminal: progress lines, a summary line, quiet ranks, no deprecated calls.

`sslflow pretrain > log 2>&1` is how CI, Slurm and the Prefect flow capture a
stage; the log must say where the run stands every `train.log_every` steps and
end with where the encoder went.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from sslflow.progress import Progress, format_duration, parse_step, progress_line, summary_line

from .conftest import SMALL_MODEL, Epochs

PROGRESS = re.compile(r"^pretrain (\w+): step (\d+)/(\d+)  epoch (\d+)/(\d+)  loss ([\d.]+)  acc ([\d.]+)%  lr \S+  ")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_progress_prints_a_line_every_log_every_steps_and_at_the_last():
    out = io.StringIO()
    with Progress("pretrain x", 7, log_every=3, epochs=2, stream=out) as progress:
        for step in range(1, 8):
            progress.advance()
            if progress.due(step):
                progress.log(step, epoch=1 + (step > 4), loss=1.0 / step, lr=0.1, images_per_s=50.0, acc=0.25)
    lines = _lines(out)
    assert [parse_step(line) for line in lines] == [(3, 7), (6, 7), (7, 7)]
    assert lines[0].startswith("pretrain x: step 3/7  epoch 1/2  loss 0.3333  acc 25.0%  lr 0.1  50 img/s  eta ")
    assert lines[-1].endswith("eta 0:00")


def test_progress_on_a_terminal_is_a_bar_and_elsewhere_nothing_when_disabled():
    terminal, quiet = _Terminal(), io.StringIO()
    for stream, enabled in ((terminal, True), (quiet, False)):
        with Progress("pretrain x", 4, log_every=1, epochs=1, stream=stream, enabled=enabled) as progress:
            for step in range(1, 5):
                progress.advance()
                progress.log(step, epoch=1, loss=0.5, lr=0.1, images_per_s=10.0)
            progress.done(steps=4, wall_s=1.0)
    assert "\r" in terminal.getvalue() and not any(parse_step(line) for line in _lines(terminal))
    assert quiet.getvalue() == ""


def test_lines_read_back_and_leave_out_what_does_not_apply():
    line = progress_line("x ft 1pct", 12, 340, epoch=2, epochs=20, loss=0.5, lr=1e-3, images_per_s=1e3, eta_s=3725)
    assert line == "x ft 1pct: step 12/340  epoch 2/20  loss 0.5000  lr 0.001  1000 img/s  eta 1:02:05"
    assert parse_step(line) == (12, 340)
    assert parse_step("pretrain x: models/x/encoder.pt  12 steps  4.0 s") is None
    assert format_duration(float("nan")) == "?" and format_duration(59.6) == "1:00"
    control = summary_line(
        "pretrain random_init", encoder="models/random_init/encoder.pt", steps=0, knn_top1=0.5, wall_s=2
    )
    assert control == "pretrain random_init: models/random_init/encoder.pt  0 steps  kNN top-1 50.0%  2.0 s"


def test_finetune_reports_progress_as_pretraining_does(capsys):
    """Fine-tuning and distillation share the loop in sslflow.eval.finetune: lines on a captured stderr."""
    from sslflow.eval.finetune import train

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    data = [{"image": torch.randn(8, 1, 4, 4), "label": torch.randint(0, 3, (8,))} for _ in range(3)]

    def loss(m, batch):
        return nn.functional.cross_entropy(m(batch["image"]), batch["label"])

    losses = train(
        model, Epochs(data), loss, epochs=2, lr=0.1, momentum=0.9, weight_decay=0, desc="m ft 1pct", log_every=2
    ).losses
    lines = capsys.readouterr().err.splitlines()
    assert [parse_step(line) for line in lines[:-1]] == [(2, 6), (4, 6), (6, 6)]
    assert lines[1].startswith("m ft 1pct: step 4/6  epoch 2/2  loss ")
    assert re.fullmatch(rf"m ft 1pct: done  6 steps  loss {losses[-1]:.4f}  \d+ img/s  [\d.]+ s", lines[-1])


def test_max_steps_ends_the_run_mid_epoch(capsys):
    """Distillation over a large unlabelled set stops after max_steps: 4 of 2 x 3 batches here."""
    from sslflow.eval.finetune import train

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    data = [{"image": torch.randn(8, 1, 4, 4)} for _ in range(3)]
    fed = []

    def loss(m, batch):
        fed.append(batch)
        return m(batch["image"]).pow(2).mean()

    run = train(model, Epochs(data), loss, epochs=2, lr=0.1, momentum=0.0, weight_decay=0, desc="d", max_steps=4)
    assert (run.steps, run.images, len(fed)) == (4, 32, 4)
    assert fed == [data[0], data[1], data[2], data[0]]
    assert len(run.losses) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("d: done  4 steps  loss ")


def test_other_ranks_show_no_warnings(monkeypatch):
    from sslflow.train.distributed import quiet_other_ranks

    for rank, shown in (("1", 0), ("0", 1)):
        monkeypatch.setenv("RANK", rank)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            quiet_other_ranks()
            warnings.warn("the same on every rank", FutureWarning, stacklevel=1)
        assert len(seen) == shown


def _sslflow_log(args: list[str], cwd, log) -> int:
    """Run with stdout and stderr to one file, as `cmd > log 2>&1` does: no terminal anywhere."""
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    with open(log, "w") as fh:
        return subprocess.run(args, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=600).returncode


def test_pretrain_into_a_file_logs_progress_and_a_summary(train_project):
    log = train_project / "log"
    settings = [*SMALL_MODEL, "train.batch_size=32", "pretrain.simclr.max_steps=20", "train.log_every=2"]
    settings += ["train.knn.val_samples=50"]
    rc = _sslflow_log(
        [sys.executable, "-m", "sslflow", "pretrain", "--method", "simclr", *(a for s in settings for a in ("-S", s))],
        train_project,
        log,
    )
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "\r" not in text, "no progress bar in a file"
    progress = [PROGRESS.match(line) for line in text.splitlines() if PROGRESS.match(line)]
    steps = [int(m[2]) for m in progress]
    assert steps == list(range(2, 21, 2)), "a line every log_every steps, the last one at the final step"
    assert {(m[1], int(m[3])) for m in progress} == {("simclr", 20)}
    summary = json.loads((train_project / "metrics/simclr/pretrain.json").read_text())
    last = progress[-1]
    assert float(last[6]) == pytest.approx(summary["final_loss"], abs=5e-5), "the last line shows the final window"
    assert float(last[7]) == pytest.approx(100 * summary["final_pretext_acc"], abs=0.05)
    ends = [line for line in text.splitlines() if line.startswith("pretrain simclr: models/")]
    assert ends == [
        f"pretrain simclr: models/simclr/encoder.pt  20 steps  loss {summary['final_loss']:.4f}  "
        f"acc {100 * summary['final_pretext_acc']:.1f}%  kNN top-1 {100 * summary['knn_top1']:.1f}%  "
        f"{summary['images_per_s']:.0f} img/s  {summary['wall_s']:.1f} s"
    ]
    assert (train_project / "models/simclr/encoder.pt").is_file()
    # the kNN monitor's curve: train.knn.points (5) spread over the 20 steps, the last one the summary's
    knn = (train_project / "dvclive/simclr/plots/metrics/knn/top1.tsv").read_text().splitlines()[1:]
    assert [int(line.split("\t")[0]) for line in knn] == [4, 8, 12, 16, 20]
    assert float(knn[-1].split("\t")[1]) == pytest.approx(summary["knn_top1"], abs=1e-6)


@pytest.mark.slow
def test_torchrun_two_ranks_log_progress_once_and_no_warning_from_sslflow(train_project):
    """Rotation under DDP (gloo): rank 1 is quiet, and sslflow's own calls raise no deprecation warning
    (PYTHONWARNINGS=default shows DeprecationWarnings too)."""
    from tests.processes import free_port

    log = train_project / "log"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    settings = [*SMALL_MODEL, "pretrain.rotation.batch_size=32", "pretrain.rotation.max_steps=12", "train.log_every=4"]
    settings += ["train.knn.val_samples=50", "augment.threads=1", "train.threads=1"]
    cmd = [torchrun, "--nproc-per-node", "2", "--master-port", str(free_port()), "-m", "sslflow", "pretrain"]
    rc = _sslflow_log([*cmd, "--method", "rotation", *(a for s in settings for a in ("-S", s))], train_project, log)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert [int(m[2]) for m in map(PROGRESS.match, text.splitlines()) if m] == [4, 8, 12], "once, by rank 0"
    assert len([line for line in text.splitlines() if line.startswith("pretrain rotation: models/")]) == 1
    assert json.loads((train_project / "metrics/rotation/pretrain.json").read_text())["world_size"] == 2
    ours = [line for line in text.splitlines() if "Warning" in line and "/sslflow/" in line]
    assert ours == [], "warnings raised by sslflow's own code"
