"""The augment section refuses what the backends could not run, with one line naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sslflow.errors import UserError
from sslflow.params import load_params

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "augment.simclr.ops=[{op: flip}, {op: random_resized_crop}]",
            "augment.simclr.ops: Value error, random_resized_crop may only be the first op",
        ),
        (
            "augment.simclr.ops=[{op: flip, p: 1.5}]",
            "augment.simclr.ops.0.flip.p: Input should be less than or equal to 1",
        ),
        (
            "augment.simclr.ops=[{op: sharpen}]",
            "augment.simclr.ops.0: Input tag 'sharpen' found using 'op' does not match",
        ),
        ("augment.simclr.ops=[{op: random_resized_crop, scale: [0.9, 0.2]}]", "scale: Value error, low 0.9 > high 0.2"),
        ("augment.simclr.ops=[{op: random_resized_crop, scale: [0.2, 1.5]}]", "area fractions must be in (0, 1]"),
        ("augment.simclr.ops=[{op: rotate, angles: [45]}]", "rotate.angles must be multiples of 90"),
        (
            "augment.rotation.ops=[{op: rotate}]",
            "augment.rotation.ops: Value error, the rotation view rotates by itself",
        ),
        (
            "augment.relpos.grid=30",
            "augment.relpos: Value error, 3*patch + 2*gap + 2*jitter = 36 does not fit in grid 30",
        ),
        ("augment.mean=[0.1, 0.2]", "augment.mean: Value error, give 1 value"),
        ("augment.std=[0.0]", "augment.std: Value error, every std must be > 0"),
        ("augment.channels=2", "augment.channels"),
        (
            "augment.simclr.ops=[{op: color_jitter, strength: 2.0}]",
            "strength: Input should be less than or equal to 1.25",
        ),
        ("augment.simclr.ops=[{op: gaussian_blur, sigma: ['0.1', 2.0]}]", "sigma.0: Input should be a valid number"),
        ("augment.shuffle_buffer=0", "augment.shuffle_buffer: Input should be greater than 0"),
        ("augment.colour=1", "augment.colour: unknown key"),
    ],
)
def test_bad_spec_is_refused_naming_the_key(override, message):
    with pytest.raises(UserError) as caught:
        load_params(REPO / "params.yaml", [override])
    assert message in str(caught.value)


def test_the_default_profile_and_the_paper_defaults_load():
    params = load_params(REPO / "params.yaml")
    ops = [op.op for op in params.augment.simclr.ops]
    assert ops == ["random_resized_crop", "flip", "color_jitter", "grayscale"]
    from sslflow.augment.spec import AugmentCfg

    paper = AugmentCfg().simclr.ops
    assert [op.op for op in paper] == ops + ["gaussian_blur"]
    jitter, blur = paper[2], paper[4]
    assert (jitter.p, jitter.brightness, jitter.hue) == (0.8, 0.8, 0.2)
    assert (blur.p, blur.sigma, blur.window(224)) == (0.5, (0.1, 2.0), 23)


def test_cli_exits_2_with_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(
        ["sslflow", "augment", "preview", "-S", "augment.simclr.ops=[{op: flip, p: 2}]"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sslflow augment preview: error: params.yaml: augment.simclr.ops.0.flip.p: "
        "Input should be less than or equal to 1 (got 2)"
    ]
    assert not (tmp_path / "reports").exists()
