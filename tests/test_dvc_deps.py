"""Every lib module a stage imports (directly or through lib) is in that stage's ``deps``.

A module missing from ``deps`` means a change to it silently reuses stale outputs; so the
import graph is read from the sources (``ast``: module-level and function-level imports,
never executed) and compared with ``dvc.yaml``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

LIB = REPO / "lib"


def _module_file(name: str) -> Path | None:
    """The source file of a ``facebalance`` module (package ``__init__`` for a package)."""
    path = LIB.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _imports(path: Path) -> set[Path]:
    """facebalance source files imported anywhere in ``path`` (``from x import y`` counts
    ``x`` and, when ``y`` is a module, ``x.y``)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] == "facebalance":
                f = _module_file(name)
                if f is not None:
                    found.add(f)
    return found


def transitive_imports(script: Path) -> set[Path]:
    """Every facebalance source file ``script`` reaches through imports."""
    seen: set[Path] = set()
    todo = list(_imports(script))
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += _imports(f)
        # Importing facebalance.a.b runs facebalance/__init__ and facebalance/a/__init__.
        todo += [LIB / d / "__init__.py" for d in f.relative_to(LIB).parents
                 if (LIB / d / "__init__.py").is_file()]
    return seen


def _stages() -> list[tuple[str, dict]]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    return [(name, stage.get("do", stage)) for name, stage in spec["stages"].items()]


@pytest.mark.parametrize(("name", "stage"), _stages(), ids=[n for n, _ in _stages()])
def test_stage_deps_cover_every_imported_lib_module(name: str, stage: dict) -> None:
    script = REPO / re.search(r"python (stages/\S+\.py)", stage["cmd"]).group(1)
    deps = [REPO / d for d in stage["deps"]]
    assert script in deps, f"{name}: its script is not a dep"
    used = transitive_imports(script)
    missing = sorted(str(f.relative_to(REPO)) for f in used
                     if not any(f == d or d in f.parents for d in deps))
    assert not missing, f"{name}: imports {missing} but dvc.yaml does not list them in deps"
    # And no lib dep that the stage never imports (it would rerun for nothing).
    lib_deps = [d for d in deps if LIB in d.parents]
    unused = sorted(str(d.relative_to(REPO)) for d in lib_deps
                    if not any(f == d or d in f.parents for f in used))
    assert not unused, f"{name}: depends on {unused}, which it never imports"


def test_the_import_walker_sees_function_level_imports() -> None:
    used = transitive_imports(REPO / "stages" / "prepare.py")
    assert LIB / "facebalance" / "data" / "convert.py" in used  # imported inside write_real
    assert LIB / "facebalance" / "errors.py" in used


GENERATION_STAGES = ("train_gan", "sample", "invert", "interpolate")


@pytest.mark.parametrize("name", GENERATION_STAGES)
def test_generation_stages_do_not_depend_on_the_target_classifier(name: str) -> None:
    """The expensive GAN-side stages never rerun for a change of train_target (its params,
    checkpoints or training sets)."""
    stage = dict(_stages())[name]
    params = [p if isinstance(p, str) else next(iter(p)) for p in stage.get("params", [])]
    assert not [p for p in params if p.split(".")[0] in ("train_target", "evaluate",
                                                         "compare", "strategies")]
    assert not [d for d in stage["deps"] if d.startswith(("models/target", "data/trainsets",
                                                          "data/scores"))]
