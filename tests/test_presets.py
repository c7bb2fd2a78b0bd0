import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from facebalance.choices import PRESETS as PRESET_NAMES
from facebalance.cli import app
from facebalance.config import parse_params
from facebalance.presets import PRESETS, apply_changes, set_args

from .conftest import REPO


def test_every_preset_is_valid_on_the_repository_params() -> None:
    assert tuple(PRESETS) == PRESET_NAMES
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    kinds = {name: parse_params(apply_changes(data, changes)).task.kind
             for name, changes in PRESETS.items()}
    assert kinds == {"blond_male": "binary", "skin4": "binary", "skin4_guided": "binary",
                     "race_gender": "multitask",
                     "hard": "binary", "age": "regression", "age_smote": "regression"}


def test_set_args_keep_types_through_yaml() -> None:
    args = set_args({"dataset.protected": "", "task.age_bins": [30, 40], "task.kind": "age"})
    values = [yaml.safe_load(a.split("=", 1)[1]) for a in args[1::2]]
    assert args[0::2] == ["-S"] * 3 and values == ["", [30, 40], "age"]


def test_preset_dry_run_prints_the_dvc_command() -> None:
    result = CliRunner().invoke(app, ["preset", "age", "--dry-run", "--params",
                                      str(REPO / "params.yaml")])
    assert result.exit_code == 0
    assert result.output.startswith("dvc exp run --temp -n age -S 'dataset.target=\"age\"'")
    bad = CliRunner().invoke(app, ["preset", "ages", "--dry-run"])
    assert bad.exit_code == 1 and "unknown preset 'ages'; valid: blond_male, skin4" in bad.output


def test_set_changes_more_on_top_of_the_preset_and_is_validated() -> None:
    args = ["preset", "age", "--dry-run", "--params", str(REPO / "params.yaml")]
    result = CliRunner().invoke(app, [*args, "--set", "strategies=[baseline, reweight]",
                                      "--set", "train_target.seeds=[0]",
                                      "--set", "train_target.lr=3e-4", "--name", "age_quick"])
    assert result.exit_code == 0, result.output
    tail = result.output.split("-S 'task.kind=\"regression\"'", 1)[1]
    assert "-S 'strategies=[\"baseline\", \"reweight\"]'" in tail  # the preset's, replaced
    assert result.output.count("strategies=") == 1
    assert "-S 'train_target.seeds=[0]' -S train_target.lr=0.0003 compare" in result.output
    assert result.output.startswith("dvc exp run --temp -n age_quick -S")
    for bad, says in (("seeds", "--set 'seeds': expected key=value"),
                      ("train_target.seeds=[0", "--set 'train_target.seeds=[0': the value is "
                                                "not YAML"),
                      ("train_target={seeds: [0]}", "--set 'train_target={seeds: [0]}': a "
                                                    "mapping; set its keys one at a time"),
                      ("train_target.sedes=[0]", "preset age: params: unknown key "
                                                 "'train_target.sedes' (did you mean 'seeds'?)")):
        result = CliRunner().invoke(app, [*args, "--set", bad])
        assert result.exit_code == 1 and says in result.output, result.output


def test_a_preset_that_clashes_with_the_params_fails_before_dvc_runs(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["compare"]["metrics"] = ["deo"]  # a binary metric: the age preset cannot report it
    params.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["preset", "age", "--params", str(params)])
    assert result.exit_code == 1
    assert "preset age: params: compare.metrics contains 'deo'; valid values: mae" in \
        result.output


@pytest.mark.slow
def test_a_preset_runs_as_a_dvc_experiment(tmp_path: Path) -> None:
    from .dvcproject import commit, dvc, new_project

    new_project(tmp_path, {"dataset": {"n_train": 240, "n_val": 80, "n_test": 80},
                           "train_target": {"epochs": 1, "width": 8, "seeds": [0]},
                           "evaluate": {"bootstrap": 20}})
    commit(tmp_path, "tiny")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep
           + os.environ["PATH"]}
    # Two of the preset's four strategies: each runs augment, train_target and evaluate, and
    # what this test asserts of them (a regression report, val_attention in the table) does
    # not need the other two.
    cmd = [sys.executable, "-m", "facebalance.cli", "preset", "age",
           "--set", "strategies=[baseline, val_attention]"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Running stage 'train_attr" not in proc.stdout  # no GAN stage without gan_*
    shown = dvc(tmp_path, "exp", "show", "--json").stdout
    assert '"age"' in shown and "wmae" in shown
    # --temp: the workspace keeps its params (the experiment ran in a copy)
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["task"]["kind"] == "binary"
    # Metric files are cache: false, so they sit in the experiment's git commit.
    ref = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
                         cwd=tmp_path, capture_output=True, text=True).stdout.split()
    ref = next(r for r in ref if r.endswith("/age"))

    def read(path: str) -> str:
        return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout

    rep = json.loads(read("metrics/reports/val_attention.json"))
    assert rep["task"]["kind"] == "regression" and rep["n_test"] == 80
    assert {"mae", "rmse", "wmae", "worst_group_mae"} <= set(rep)
    # utkface-like train, balanced test: every age group is in the test split
    assert len(rep["by_group"]) == 6 and "age 30-39" in rep["by_group"]
    assert rep["worst_group_mae"]["value"] >= rep["wmae"]["value"] >= rep["best_group_mae"][
        "value"]
    headline = json.loads(read("metrics/eval/val_attention.json"))
    assert list(headline) == ["mae", "wmae", "worst_group_mae", "group_mae_gap"]
    assert "| val_attention | 1 |" in read("metrics/compare.md")
    # Beside the workspace, on one screen: DVC prints every dep hash and param, `facebalance
    # exps --csv` the same rows with the age task's headline pair and the changed params.
    full = dvc(tmp_path, "exp", "show", "--csv").stdout.splitlines()
    proc = subprocess.run([sys.executable, "-m", "facebalance.cli", "exps", "--csv"],
                          cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    header = lines[0].split(",")
    assert len(header) <= 80 < len(full[0].split(","))
    assert {"metrics/eval/val_attention.json:mae", "metrics/eval/val_attention.json:"
            "worst_group_mae", "task.kind", "strategies"} <= set(header)
    assert not any(col.startswith(("lib/", "stages/", "data/")) for col in header)
    assert len(lines) == len(full)  # every experiment's row
