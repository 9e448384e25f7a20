"""params.yaml -> one typed, validated, frozen config.

Every section lives beside the code that reads it (``sslflow/<part>/config.py``);
this module only composes them, applies ``-S key=value`` overrides the way
``dvc exp run -S`` does, and turns validation failures into one line that names
the file and the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from sslflow.augment.spec import AugmentCfg
from sslflow.data.config import DataCfg
from sslflow.errors import UserError
from sslflow.eval.config import EvalCfg
from sslflow.launch import LaunchCfg
from sslflow.methods.registry import PretrainCfg
from sslflow.models.config import ModelCfg
from sslflow.schedule import TrainCfg
from sslflow.section import Section

DEFAULT_PARAMS = Path("params.yaml")


class Params(Section):
    seed: int = Field(0, ge=0)
    data: DataCfg = DataCfg()
    augment: AugmentCfg = AugmentCfg()
    model: ModelCfg = ModelCfg()
    train: TrainCfg = TrainCfg()
    pretrain: PretrainCfg = PretrainCfg()
    eval: EvalCfg = EvalCfg()
    launch: LaunchCfg = LaunchCfg()


def load_params(path: Path | str = DEFAULT_PARAMS, overrides: Iterable[str] = ()) -> Params:
    """Read, override and validate; raise UserError naming the file and key on any problem."""
    path = Path(path)
    raw = _read_yaml(path)
    for item in overrides:
        _apply_override(raw, item)
    return validate(raw, source=str(path))


def with_overrides(params: Params, overrides: Iterable[str], source: str = "-S") -> Params:
    """`params` with `key=value` overrides applied as on the command line, validated again."""
    raw = params.model_dump(mode="json")
    for item in overrides:
        _apply_override(raw, item)
    return validate(raw, source=source)


def validate(raw: dict[str, Any], source: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{source}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """First problem as 'dotted.key: reason (got value)', plus how many more there are."""
    errors = exc.errors()
    first = errors[0]
    key = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-")) or "<root>"
    if first["type"] == "extra_forbidden":
        reason = "unknown key"
    else:
        reason = first["msg"]
        if "input" in first and not isinstance(first["input"], dict):
            reason += f" (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{key}: {reason}{more}"


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but `1e-4` is a float, as in YAML 1.2.

    DVC reads and writes params.yaml as YAML 1.2 (`dvc exp run -S lr=1e-4` stores
    `1e-4`), where YAML 1.1, PyYAML's, sees the string "1e-4".
    """


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """Safe YAML (no Python tags) with YAML 1.2 floats."""
    return yaml.load(text, Loader=_Yaml12Loader)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UserError(f"{path}: params file not found")
    try:
        raw = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of sections at the top level")
    return raw


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """`a.b.c=value`, value parsed as YAML (so 0.1 is a float and [1,2] a list), like `dvc exp run -S`."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UserError(f"-S {item}: expected key=value")
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"-S {item}: {part} is not a section")
        node = child
    node[leaf] = load_yaml(value)
