"""A temporary copy of the repository's DVC pipeline, for end-to-end tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import REPO

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]

def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # Stages run `python stages/...`: put this interpreter's bin directory first on PATH.
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True,
                          text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc

def set_params(path: Path, changes: dict) -> None:
    params = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        if isinstance(values, dict):
            params.setdefault(section, {}).update(values)
        else:
            params[section] = values
    path.write_text(yaml.safe_dump(params, sort_keys=False))

def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))

def new_project(root: Path, changes: dict) -> None:
    """A copy of the repository's pipeline in ``root`` (git + dvc) with changed params."""
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    for name in ("stages", "lib"):
        shutil.copytree(REPO / name, root / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    set_params(root / "params.yaml", changes)

def commit(root: Path, message: str = "state") -> None:
    """Commit everything in the project (params, dvc.lock, metrics)."""
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", message], cwd=root, check=True)
