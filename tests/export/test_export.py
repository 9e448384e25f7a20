"""`sslflow export` and `sslflow.load_encoder`: the encoder outside sslflow gives the features sslflow scored."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from tests.conftest import REPO, read_idx
from tests.eval.conftest import in_project
from tests.export.conftest import R50_SIZE


def torchvision_r50(folder: Path) -> nn.Module:
    import torchvision
    from safetensors.torch import load_file

    net = torchvision.models.resnet50()
    net.fc = nn.Identity()
    net.load_state_dict(load_file(folder / "backbone.safetensors"), strict=True)
    return net.eval()


def test_resnet50_loads_into_torchvision_strict(r50_project, r50_export):
    from sslflow.models.encoder import load_encoder as load_sslflow_encoder

    ours, _ = load_sslflow_encoder(r50_project / "models/simclr/encoder.pt")
    images = torch.randn(2, 3, R50_SIZE, R50_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (torchvision_r50(r50_export)(images) - ours(images)).abs().max().item()
    assert diff <= 1e-5
    config = json.loads((r50_export / "config.json").read_text())
    assert config["torchvision"] == "resnet50" and config["feature_dim"] == 2048 and config["in_channels"] == 3
    assert config["preprocess"]["resize_shorter_to"] == round(R50_SIZE / 0.875)
    assert config["preprocess"]["mean"] == [0.485, 0.456, 0.406]
    assert config["method"] == "simclr" and len(config["fingerprint"]) == 64
    assert config["trained_with"]["model"]["arch"] == "resnet50"


def test_onnx_runtime_equals_pytorch(r50_export):
    import onnxruntime

    config = json.loads((r50_export / "config.json").read_text())
    mean = torch.tensor(config["preprocess"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["preprocess"]["std"]).view(1, 3, 1, 1)
    images = torch.rand(4, 3, R50_SIZE, R50_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torchvision_r50(r50_export)((images - mean) / std).numpy()
    session = onnxruntime.InferenceSession(str(r50_export / "encoder.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["features"], {"images": images.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_load_encoder_is_the_eval_view_then_the_network(r50_export):
    """uint8 HWC pictures of any size: resize, centre crop, normalise (the torchvision backend's eval view)."""
    import sslflow
    from sslflow.augment.torchvision_ops import eval_transform

    config = json.loads((r50_export / "config.json").read_text())
    encoder = sslflow.load_encoder(r50_export, precision="fp32")
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    pictures = torch.randint(0, 256, (2, 80, 96, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    view = eval_transform(R50_SIZE, 0.875, config["preprocess"]["mean"], config["preprocess"]["std"])
    inputs = torch.stack([view(p.permute(2, 0, 1)) for p in pictures])
    with torch.no_grad():
        expected = torchvision_r50(r50_export)(inputs)
        # relative: features of ~70 here, and the encoder runs channels-last as extract does
        assert (encoder(pictures) - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
        floats = (
            pictures.permute(0, 3, 1, 2).float() / 255
        )  # float CHW in [0, 1]: same features up to resizing in float
        assert (encoder(floats) - expected).abs().max().item() <= 0.05 * expected.abs().max().item()


def _pictures(project: Path, keys: np.ndarray) -> np.ndarray:
    """The source's uint8 pixels for shard keys `train_000123` / `val_000045` (the idx row)."""
    source = Path(yaml.safe_load((project / "params.yaml").read_text())["data"]["source"])
    arrays = {
        "train": read_idx(source / "train-images-idx3-ubyte.gz"),
        "val": read_idx(source / "t10k-images-idx3-ubyte.gz"),
    }
    return np.stack([arrays[k.rsplit("_", 1)[0]][int(k.rsplit("_", 1)[1])] for k in keys.tolist()])


@pytest.mark.parametrize(
    ("method", "where"),
    [("random_init", "exports"), ("random_init", "models"), ("raw_pixels", "exports")],
)
def test_load_encoder_gives_the_extracted_features(fmnist_project, method, where):
    """Fashion-MNIST pictures through load_encoder = data/features, same keys, up to the file's float16 rounding."""
    import sslflow

    encoder = sslflow.load_encoder(fmnist_project / where / method)
    assert encoder.config["precision"] in ("bf16", "fp32") and encoder.config["features_dtype"] == "float16"
    dim = encoder.config["feature_dim"]
    for split in ("train", "val"):
        with np.load(fmnist_project / f"data/features/{method}/{split}.npz") as npz:
            stored, keys = npz["features"], npz["keys"]
        pictures = torch.from_numpy(_pictures(fmnist_project, keys))
        with torch.no_grad():
            # the batches extract ran (eval.extract.batch_size: 512)
            ours = torch.cat([encoder(pictures[i : i + 512]) for i in range(0, len(pictures), 512)]).numpy()
        assert stored.dtype == np.float16 and ours.shape == stored.shape == (len(keys), dim)
        rounding = np.abs(stored.astype(np.float32)) * 2.0**-10 + 2.0**-24  # half a float16 ulp, doubled
        excess = np.abs(ours - stored.astype(np.float32)) - rounding
        print(f"{where}/{method} {split}: max abs diff {np.abs(ours - stored).max():.3g}")
        assert excess.max() <= 0, f"{split}: {np.abs(ours - stored).max()}"


def test_small_stem_config_and_onnx(fmnist_project):
    """What torchvision cannot build (small stem, 0.25x, 4x4 pool): no torchvision name, the ONNX file still right."""
    import onnxruntime

    import sslflow

    folder = fmnist_project / "exports/random_init"
    config = json.loads((folder / "config.json").read_text())
    assert config["torchvision"] is None and config["pool"] == {"kind": "adaptive_avg", "output_size": 4}
    assert config["stem"].startswith("small") and config["width"] == 0.25 and config["in_channels"] == 1
    encoder = sslflow.load_encoder(folder, precision="fp32")
    images = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = encoder(images).numpy()
    session = onnxruntime.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["features"], {"images": images.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


BLOCKED = ("dvc", "prefect", "nvidia.dali", "nvidia", "dvclive")


def test_loading_needs_neither_dvc_prefect_dali_nor_dvclive(r50_export):
    """Imports of those fail in the child; `import sslflow` alone does not load torch."""
    script = textwrap.dedent(
        f"""
        import sys
        for name in {BLOCKED!r}:
            sys.modules[name] = None
        import sslflow
        assert "torch" not in sys.modules, "import sslflow loaded torch"
        import torch
        encoder = sslflow.load_encoder({str(r50_export)!r})
        features = encoder(torch.zeros(1, 70, 70, 3, dtype=torch.uint8))
        assert features.shape == (1, 2048), features.shape
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def _export_cli(project: Path, *args: str) -> int:
    from sslflow.cli import main

    return in_project(project, main, ["export", *args])


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_bad_encoder_file_stops_export_with_one_line(tmp_path, r50_project, r50_export, capsys, damage):
    project = tmp_path / "project"
    shutil.copytree(r50_project, project, ignore=shutil.ignore_patterns("exports"))
    encoder = project / "models/simclr/encoder.pt"
    if damage == "truncated":
        encoder.write_bytes(encoder.read_bytes()[:100_000])
    else:
        encoder.write_text("these are not weights\n")
    capsys.readouterr()
    assert _export_cli(project, "--method", "simclr") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "models/simclr/encoder.pt" in err[0], err
    assert not (project / "exports").exists() or not any((project / "exports").iterdir())


def test_failed_export_leaves_the_previous_one(tmp_path, r50_project, r50_export, capsys):
    project = tmp_path / "project"
    shutil.copytree(r50_project, project)
    before = {p.name: p.read_bytes() for p in (project / "exports/simclr").iterdir()}
    (project / "models/simclr/encoder.pt").write_bytes(b"PK\x03\x04 truncated zip")
    assert _export_cli(project, "--method", "simclr") == 2
    assert {p.name: p.read_bytes() for p in (project / "exports/simclr").iterdir()} == before
    assert [p.name for p in (project / "exports").iterdir()] == ["simclr"]  # no temporary sibling left


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("backbone.safetensors", lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])),
        ("backbone.safetensors", lambda p: p.write_text("not tensors")),
        ("config.json", lambda p: p.write_text("{not json")),
        ("config.json", lambda p: p.write_text('{"model_type": "bert"}')),
    ],
    ids=["truncated-weights", "foreign-weights", "corrupt-config", "foreign-config"],
)
def test_bad_export_folder_is_named_by_load_encoder(tmp_path, r50_export, name, damage):
    import sslflow
    from sslflow.errors import UserError

    folder = tmp_path / "simclr"
    shutil.copytree(r50_export, folder)
    damage(folder / name)
    with pytest.raises(UserError) as raised:
        sslflow.load_encoder(folder)
    message = str(raised.value)
    assert "\n" not in message and str(folder / name) in message


def test_export_refuses_to_overwrite_a_foreign_folder(tmp_path, r50_project, capsys):
    elsewhere = tmp_path / "notes"
    elsewhere.mkdir()
    (elsewhere / "todo.txt").write_text("keep me")
    assert _export_cli(r50_project, "--method", "simclr", "--to", str(elsewhere)) == 2
    assert (elsewhere / "todo.txt").read_text() == "keep me"


def _dvc(project: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"dvc {' '.join(args)}: {done.stderr}"
    return done.stdout


def _git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=lab", "-c", "user.email=lab@example.org", *args],
        cwd=project,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_dvc_artifacts_get_finds_an_exported_encoder(tmp_path, r50_export):
    """dvc.yaml's artifacts section as the repo has it; a GTO tag publishes a version; `dvc artifacts get` fetches it."""
    project = tmp_path / "lab"
    project.mkdir()
    _git(project, "init", "-q")
    _dvc(project, "init", "-q")
    shutil.copytree(r50_export, project / "exports/simclr")
    artifacts = yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]
    (project / "dvc.yaml").write_text(yaml.safe_dump({"artifacts": artifacts}, sort_keys=False))
    shutil.copy(REPO / "params.yaml", project / "params.yaml")  # the labels' ${train.budget_views}
    _dvc(project, "add", "-q", "exports/simclr")
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "simclr encoder")
    _git(project, "tag", "-a", "simclr-encoder@v1.0.0", "-m", "simclr encoder v1.0.0")
    _dvc(project, "artifacts", "get", ".", "simclr-encoder", "-o", str(tmp_path / "got"))
    assert sorted(p.name for p in (tmp_path / "got").iterdir()) == sorted(p.name for p in r50_export.iterdir())

    from dvc.repo import Repo

    declared = Repo(str(project)).artifacts.read()["dvc.yaml"]["simclr-encoder"]
    assert declared.type == "model" and "simclr" in declared.labels and declared.path == "exports/simclr"
    assert any(label.startswith("budget-") for label in declared.labels)


def readme_snippets() -> list[str]:
    """The python blocks of README's "Use your encoder" section, in order: torchvision, load_encoder, ONNX."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Use your encoder", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run_snippet(project: Path, code: str) -> dict:
    namespace: dict = {}
    in_project(project, exec, compile(code, "README.md", "exec"), namespace)
    return namespace


def test_readme_snippets_run_as_written(r50_project, r50_export, fmnist_project):
    """In a project whose exports/simclr is the ImageNet profile's ResNet-50, and in the CPU profile's (small stem)."""
    torchvision_way, load_encoder_way, onnx_way = readme_snippets()
    (fmnist_project / "exports/simclr").symlink_to(fmnist_project / "exports/random_init")
    for project in (r50_project, fmnist_project):
        config = json.loads((project / "exports/simclr/config.json").read_text())
        if config["torchvision"]:
            assert type(run_snippet(project, torchvision_way)["net"]).__name__ == "ResNet"
        assert run_snippet(project, load_encoder_way)["features"].shape == (8, config["feature_dim"])
        assert run_snippet(project, onnx_way)["features"].shape == (8, config["feature_dim"])
