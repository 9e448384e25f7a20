"""DVC sees all the code that shapes a stage's output: every sslflow module a stage can import is a dependency.

A stage runs `sslflow <stage>` (sslflow/cli.py), which imports the stage module and,
from there, whatever it needs, often inside functions. The import graph is read from
the source (every `import` statement, wherever it is), so that a lazily imported
module counts as much as one imported at the top. A module is covered when
dvc.yaml lists it or a folder above it among the stage's deps.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("shard", "pretrain", "extract", "linear", "lowlabel", "report", "export")


def module_file(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def imported_by(path: Path, module: str) -> set[str]:
    """Every sslflow module (or name inside one) an import statement of `path` names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] == "sslflow"}


# modules that import others found at run time: the method registry imports every module of its
# package (each may declare methods), and params validation goes through it
DISCOVERS = {"sslflow.methods.registry": "sslflow.methods"}


def package_modules(package: str) -> list[str]:
    folder = REPO.joinpath(*package.split("."))
    return [f"{package}.{p.stem}" for p in sorted(folder.glob("*.py")) if p.stem != "__init__"]


def import_closure(*roots: str) -> set[str]:
    """The repo-relative files of every sslflow module reachable from `roots`, their packages' __init__ included."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or name in seen:
            continue
        seen[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += imported_by(path, name)
        if name in DISCOVERS:
            todo += package_modules(DISCOVERS[name])
    return {p.relative_to(REPO).as_posix() for p in seen.values()}


def stage_deps(stage: str) -> list[str]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    body = spec.get("do", spec)
    return [next(iter(d)) if isinstance(d, dict) else d for d in body.get("deps", [])]


@pytest.mark.parametrize("stage", STAGES)
def test_every_imported_module_is_a_dependency(stage):
    deps = [d.rstrip("/") for d in stage_deps(stage) if d.startswith("sslflow")]
    needed = import_closure("sslflow.cli", f"sslflow.stages.{stage}")
    assert f"sslflow/stages/{stage}.py" in needed
    missing = sorted(f for f in needed if not any(f == d or f.startswith(d + "/") for d in deps))
    assert missing == [], f"dvc.yaml stage {stage}: add to its deps: {', '.join(missing)}"


def test_the_closure_sees_imports_inside_functions():
    """The extract stage imports its library only when it runs; the closure must still find it."""
    assert "sslflow/eval/features.py" in import_closure("sslflow.stages.extract")
    assert "sslflow/report/ablation.py" not in import_closure("sslflow.stages.extract")


def _dvc(project: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"dvc {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_editing_a_stage_module_reruns_its_stage(tmp_path):
    """A comment added to sslflow/stages/lowlabel.py makes `dvc status` list every lowlabel@ stage."""
    project = tmp_path / "project"
    shutil.copytree(REPO / "sslflow", project / "sslflow", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, project / name)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True, timeout=60)
    _dvc(project, "init", "-q")
    methods = yaml.safe_load((REPO / "params.yaml").read_text())["pretrain"]["methods"]
    stages = [f"lowlabel@{m}" for m in methods]
    # stand-ins for the stages' data deps and outputs: `dvc commit` records them as a finished run
    for rel in ["data/shards/manifest.json"] + [
        path
        for m in methods
        for path in (f"data/features/{m}/train.npz", f"models/{m}/encoder.pt", f"metrics/{m}/lowlabel.json")
    ]:
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(rel)
    _dvc(project, "commit", "-f", "-q", *stages)
    assert json.loads(_dvc(project, "status", "--json", *stages) or "{}") == {}, "recorded as current"

    with open(project / "sslflow/stages/lowlabel.py", "a") as module:
        module.write("# a comment\n")
    changed = json.loads(_dvc(project, "status", "--json", *stages) or "{}")
    assert sorted(changed) == sorted(stages)
