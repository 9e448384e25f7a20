"""Bad params through the real CLI: exit 2 and one line naming the key; nothing written.

tests/test_params.py covers the validation messages in-process (unknown key, wrong
type, negative lr, unknown layout, unknown method in pretrain.methods) and one CLI
run; here each kind of mistake goes through the command a user types.
"""

from __future__ import annotations

import pytest

from .conftest import ENV, METHOD, new_project, one_error_line, sslflow

CASES = [
    # (command, overrides, environment, expected message)
    (["shard"], ["data.shard_size_mbb=1"], {}, "params.yaml: data.shard_size_mbb: unknown key"),
    (
        ["pretrain", "--method", METHOD],
        ["train.epochs=three"],
        {},
        "params.yaml: train.epochs: Input should be a valid integer (got 'three')",
    ),
    (
        ["pretrain", "--method", METHOD],
        ["pretrain.rotation.lr=-0.1"],
        {},
        "params.yaml: pretrain.rotation.lr: Input should be greater than 0 (got -0.1)",
    ),
    (
        ["linear", "--method", METHOD],
        ["eval.linear.holdout=1.5"],
        {},
        "params.yaml: eval.linear.holdout: Input should be less than 1 (got 1.5)",
    ),
    (
        ["pretrain", "--method", METHOD],
        ["pretrain.rotation.batch_size=1"],
        {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"},
        "pretrain.rotation.batch_size: 1 must be a multiple of the number of processes (2)",
    ),
    (["pretrain", "--method", "swav"], [], {}, "--method swav: unknown method (known: "),
    (["extract", "--method", "swav"], [], {}, "argument --method: invalid choice: 'swav' (choose from "),
]


IDS = [
    "unknown-key",
    "wrong-type",
    "negative-lr",
    "fraction-above-1",
    "batch-below-world-size",
    "no-such-method",
    "no-such-method-argparse",
]


@pytest.mark.parametrize("command, overrides, env, expected", CASES, ids=IDS)
def test_bad_param_is_one_line_and_exit_2(tmp_path, tiny_project, monkeypatch, command, overrides, env, expected):
    project = new_project(tmp_path / "p", tiny_project)
    for key, value in env.items():
        monkeypatch.setitem(ENV, key, value)
    args = [*command]
    for item in overrides:
        args += ["-S", item]
    message = one_error_line(sslflow(project, *args, timeout=120), f"sslflow {command[0]}")
    assert message.startswith(expected), message
    assert sorted(p.name for p in project.iterdir()) == ["data", "params.yaml"]
