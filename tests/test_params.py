"""params.yaml validation: every problem is one line naming the key, exit code 2."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sslflow.errors import UserError
from sslflow.params import load_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.data.layout == "mnist-idx"
    assert params.pretrain.methods, "the default profile runs at least one method"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=0.1", "train.lrr: unknown key"),
        ("train.batch_size='256'", "train.batch_size: Input should be a valid integer (got '256')"),
        ("train.lr=-1", "train.lr: Input should be greater than 0 (got -1)"),
        ("model.width=wide", "model.width: Input should be a valid number (got 'wide')"),
        ("data.layout=lmdb", "data.layout: Input should be 'mnist-idx', 'imagefolder' or 'imagenet' (got 'lmdb')"),
        ("pretrain.methods=[simclr,swav]", "pretrain.methods.1: Input should be "),
        ("nosuchsection.x=1", "nosuchsection: unknown key"),
    ],
)
def test_bad_param_names_the_key(override, message):
    with pytest.raises(UserError) as info:
        load_params(REPO / "params.yaml", [override])
    assert message in str(info.value)
    assert str(info.value).startswith(str(REPO / "params.yaml") + ": ")
    assert "\n" not in str(info.value)


def test_override_parses_yaml_values():
    params = load_params(REPO / "params.yaml", ["train.lr=0.5", "pretrain.methods=[rotation]"])
    assert params.train.lr == 0.5
    assert params.pretrain.methods == ["rotation"]


def test_exponent_floats_read_as_dvc_writes_them(tmp_path):
    """DVC stores `-S lr=1e-4` as `1e-4` (YAML 1.2); YAML 1.1 would read the string "1e-4"."""
    text = (REPO / "params.yaml").read_text().replace("lr: 0.5 ", "lr: 5e-1 ")
    assert "lr: 5e-1 " in text
    (tmp_path / "params.yaml").write_text(text)
    params = load_params(tmp_path / "params.yaml", ["eval.linear.l2_grid=[1e-4, 2E-3]", "train.weight_decay=1e-6"])
    assert params.train.lr == 0.5 and params.train.weight_decay == 1e-6
    assert params.eval.linear.l2_grid == [1e-4, 2e-3]
    assert load_params(REPO / "params.yaml", ["data.source=1e3dir"]).data.source.name == "1e3dir"


def test_invalid_yaml_names_the_line(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: 0\ndata:\n  source: [unclosed\n")
    with pytest.raises(UserError, match=r"params.yaml: line \d+ not valid YAML"):
        load_params(bad)


def test_yaml_is_loaded_safely(tmp_path):
    """A python-object tag must not construct anything."""
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_params(bad)


def test_cli_exits_2_with_one_line(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["epochs"] = "three"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(
        [sys.executable, "-m", "sslflow", "shard"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "sslflow shard: error: params.yaml: train.epochs: Input should be a valid integer (got 'three')"
    ]
    assert not (tmp_path / "data").exists()


def test_cli_unknown_command_exits_2():
    proc = subprocess.run([sys.executable, "-m", "sslflow", "frobnicate"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert "usage: sslflow <command>" in proc.stderr
