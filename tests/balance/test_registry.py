"""The strategy registry is the one declaration of each strategy: dvc.yaml's augment* and
train_target stages, the index builders, the params and their validation agree with it."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
import yaml

from facebalance.balance.registry import INPUT_STAGES, LOOPS, REGISTRY, STRATEGIES
from facebalance.balance.strategies import INDEX_BUILDERS
from facebalance.choices import TASK_KINDS
from facebalance.config import AugmentParams, parse_params
from facebalance.errors import FacebalanceError

from ..conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
AUGMENT_OPTIONS = {f.name for f in fields(AugmentParams)}


def _built_by(stage: dict) -> list[str]:
    """The strategies an augment stage builds: its foreach list, or its --strategy."""
    if "foreach" in stage:
        return list(stage["foreach"])
    return [re.search(r"--strategy (\S+)", stage["cmd"])[1]]


def _outs(name: str) -> list[str]:
    return [next(iter(o)) if isinstance(o, dict) else o for o in STAGES[name]["outs"]]


AUGMENT_STAGES = {name: s for name, s in STAGES.items() if name.startswith("augment")}


def test_every_entry_is_well_formed() -> None:
    assert set(INDEX_BUILDERS) == {s.index for s in REGISTRY.values()}  # none unused
    for s in REGISTRY.values():
        assert set(s.inputs) <= set(INPUT_STAGES), s.name
        assert s.adds in ("", *s.inputs), s.name
        assert s.loop in LOOPS and set(s.task_kinds) <= set(TASK_KINDS), s.name
        assert set(s.options) | set(s.loop_options) <= AUGMENT_OPTIONS, s.name
        assert s.stage in AUGMENT_STAGES, s.name
        assert (s.why != "") == (set(s.task_kinds) != set(TASK_KINDS)), s.name


@pytest.mark.parametrize("name", sorted(AUGMENT_STAGES))
def test_augment_stages_match_the_registry(name: str) -> None:
    stage = AUGMENT_STAGES[name]
    do = stage.get("do", stage)
    built = _built_by(stage)
    assert built == [s for s in STRATEGIES if REGISTRY[s].stage == name]
    specs = [REGISTRY[s] for s in built]
    # Its params are the augment options its strategies read: no more, no fewer.
    listed = {p.removeprefix("augment.") for p in do["params"] if p.startswith("augment.")}
    assert listed == {o for s in specs for o in s.options}
    # Each input is passed, is a dep, and is written by the stage the registry names.
    for spec in specs:
        for i in spec.inputs:
            path = re.search(rf"--{i} (\S+)", do["cmd"])
            assert path, f"{name}: {spec.name} reads --{i}"
            assert path[1] in do["deps"], f"{name}: {path[1]} is not a dep"
            producer = INPUT_STAGES[i]
            assert any(path[1] == o or path[1].startswith(o + "/") for o in _outs(producer)), (
                f"{name}: --{i} {path[1]} is not an output of {producer}")
        passed = set(re.findall(r"--(\w+) ", do["cmd"])) & set(INPUT_STAGES)
        assert passed == set(spec.inputs), f"{name}: passes {passed}"


def test_every_strategy_has_its_augment_stage() -> None:
    assert sorted(s for st in AUGMENT_STAGES.values() for s in _built_by(st)) == sorted(
        STRATEGIES)


def test_train_target_reads_the_loop_options_and_val() -> None:
    do = STAGES["train_target"]["do"]
    listed = {p.removeprefix("augment.") for p in do["params"] if p.startswith("augment.")}
    assert listed == {o for s in REGISTRY.values() for o in s.loop_options}
    if any(s.needs_val for s in REGISTRY.values()):
        assert "--val data/prepared/val" in do["cmd"] and "data/prepared" in do["deps"]


@pytest.mark.parametrize("name", [s for s in STRATEGIES if REGISTRY[s].why])
def test_params_refuse_a_task_the_strategy_does_not_support(name: str) -> None:
    spec = REGISTRY[name]
    kind = next(k for k in ("regression", "multiclass") if k not in spec.task_kinds)
    data = ({"task": {"kind": "regression"}, "dataset": {"target": "age", "protected": ""}}
            if kind == "regression" else
            {"task": {"kind": "multiclass"}, "dataset": {"target": "skin", "protected": "male"}})
    with pytest.raises(FacebalanceError, match=rf"strategies lists {name}, which "
                       rf"{re.escape(spec.why)}; task.kind is '{kind}': remove it or use "
                       r"task.kind: binary"):
        parse_params({**data, "strategies": ["baseline", name], "gan": {"balance": "none"}})
    parse_params({"strategies": ["baseline", name]})  # the default binary task fits
