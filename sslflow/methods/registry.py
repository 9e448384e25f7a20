"""Method names -> the modules that declare them, found by looking, and the `pretrain` params section built from them.

Every module of this package (and every ``*.py`` in the folders of
``SSLFLOW_METHODS_PATH``, os.pathsep-separated) that sets ``METHODS`` adds its
MethodSpecs (sslflow.methods.spec). The names, the params sections, the report
labels and the view makers all come from there: adding a method is adding a
file.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import create_model, field_validator

from sslflow.errors import UserError
from sslflow.methods.spec import BuildContext, MethodSpec
from sslflow.section import Section

if TYPE_CHECKING:
    from sslflow.methods.base import Method

PLUGIN_PATH_ENV = "SSLFLOW_METHODS_PATH"
DEFAULT_METHODS = ["simclr", "rotation", "relpos", "exemplar", "supervised", "random_init", "raw_pixels"]


def _package_modules() -> list[str]:
    folder = Path(__file__).parent
    return [f"{__package__}.{m.name}" for m in sorted(pkgutil.iter_modules([str(folder)]), key=lambda m: m.name)]


def _plugin_files() -> list[Path]:
    folders = [Path(p) for p in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p]
    return [f for folder in folders for f in sorted(folder.glob("*.py"))]


def _import_file(path: Path):
    name = f"sslflow_method_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def specs() -> dict[str, MethodSpec]:
    """Every declared method, in module-name order (package first, then the plugin folders)."""
    modules = [importlib.import_module(name) for name in _package_modules()]
    modules += [_import_file(path) for path in _plugin_files()]
    found: dict[str, MethodSpec] = {}
    for module in modules:
        for spec in getattr(module, "METHODS", ()):
            if spec.name in found:
                raise UserError(f"{module.__name__}: method {spec.name!r} is declared twice")
            found[spec.name] = spec
    return found


def names() -> tuple[str, ...]:
    return tuple(sorted(specs()))


def controls() -> tuple[str, ...]:
    """The rows the tables put under Controls (supervised, random_init, raw_pixels)."""
    return tuple(name for name, spec in specs().items() if spec.control)


def check_method(name: str) -> str:
    if name not in specs():
        raise UserError(f"--method {name}: unknown method (known: {', '.join(names())})")
    return name


def method_spec(name: str) -> MethodSpec:
    return specs()[check_method(name)]


def trains(name: str) -> bool:
    """False for the controls that save an untrained encoder (random_init, raw_pixels)."""
    return method_spec(name).trains


def label(name: str) -> str:
    """The method's name in the report tables; an unknown name stands for itself."""
    spec = specs().get(name)
    return spec.label if spec else name


def view_kind(name: str) -> str | None:
    """The augmentation view a method trains on; None for the controls that train nothing."""
    return method_spec(name).views


def build_method(name: str, params, in_channels: int, num_classes: int) -> Method:
    """The method module with a fresh backbone; call under a seeded generator for reproducible weights."""
    from sslflow.models.backbone import build_backbone

    spec = method_spec(name)
    if not spec.trains:
        raise UserError(f"--method {name}: a control; it has nothing to train")
    context = BuildContext(
        name=name,
        params=params,
        backbone=build_backbone(params.model, in_channels),
        num_classes=num_classes,
        steps=lambda: planned_steps(params, name),
    )
    method = spec.build(context)
    method.kind = spec.views
    return method


def planned_steps(params, name: str) -> int:
    """The run's length as the loop counts it: the budget's steps, else epochs x (train images // global
    batch) capped by max_steps.

    floor(floor(N / ranks) / local batch) = floor(N / global batch), so this is
    every rank's count; the exemplar view, which draws its own patches, differs.
    """
    from sslflow.augment.views import VIEWS_PER_IMAGE
    from sslflow.data.manifest import load_manifest
    from sslflow.schedule import budget_steps, method_train_cfg, run_steps

    cfg = method_train_cfg(params.train, params.pretrain, name)
    views = VIEWS_PER_IMAGE[method_spec(name).views]
    if cfg.budget_views is not None:
        return budget_steps(cfg, views)  # no manifest needed
    return run_steps(cfg, load_manifest()["splits"]["train"]["count"] // cfg.batch_size, views)


def _pretrain_section() -> type[Section]:
    """`pretrain`: the list of methods to run, and one section per declared method."""
    method_name = Literal[names()]  # type: ignore[valid-type]

    def unique(cls, methods: list[str]) -> list[str]:
        duplicates = sorted({m for m in methods if methods.count(m) > 1})
        if duplicates:
            raise ValueError(f"listed twice: {', '.join(duplicates)}")
        return methods

    sections = {name: (spec.section, spec.section()) for name, spec in specs().items()}
    return create_model(
        "PretrainCfg",
        __base__=Section,
        __validators__={"unique": field_validator("methods")(unique)},
        methods=(list[method_name], list(DEFAULT_METHODS)),
        **sections,
    )


PretrainCfg = _pretrain_section()
