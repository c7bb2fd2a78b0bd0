"""How stage scripts import: every stage runs the lib/ of its own checkout (what DVC hashed),
never the installed one (a queued DVC experiment runs a copy of the project), and stages
without a model never load torch."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

STAGES = sorted(p for p in (REPO / "stages").glob("*.py") if not p.name.startswith("_"))


def test_every_stage_imports_the_checkout_lib_before_facebalance() -> None:
    assert len(STAGES) > 10
    for script in STAGES:
        names = []
        for node in ast.parse(script.read_text()).body:
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
        first = next(i for i, n in enumerate(names) if n.startswith("facebalance"))
        assert "_checkout" in names[:first], f"{script.name} imports facebalance first"


def test_a_copy_of_the_project_runs_its_own_lib(tmp_path: Path) -> None:
    for name in ("stages", "lib"):
        shutil.copytree(REPO / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # A change only the copy has: its errors module says where it lives.
    errors = tmp_path / "lib/facebalance/errors.py"
    errors.write_text(errors.read_text() + "\nCOPY_MARKER = True\n")
    probe = tmp_path / "stages/probe.py"
    probe.write_text("import _checkout  # noqa: F401\n"
                     "import facebalance.errors as e\n"
                     "print(e.__file__, getattr(e, 'COPY_MARKER', False))\n")
    out = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.split()
    assert Path(out[0]).resolve() == errors.resolve() and out[1] == "True"


def test_stages_without_a_model_never_import_torch() -> None:
    # Importing torch costs about 2 s per stage process; augment runs once per strategy.
    code = ("import runpy, sys\nsys.path.insert(0, 'stages')\n"
            "for name in ('augment', 'compare'):\n"
            "    runpy.run_path(f'stages/{name}.py', run_name='imported')\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'sklearn', 'matplotlib')"
            " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.strip()
    assert out == "[]"
