import time
from pathlib import Path

import pytest
import yaml

from facebalance.config import Params, load_params, parse_params
from facebalance.errors import FacebalanceError

from .conftest import REPO


def test_repository_params_are_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.dataset.name == "synthfaces"
    assert params.train_target.seeds == [0, 1, 2]


def test_defaults_without_file_content() -> None:
    assert parse_params({}) == Params()


def test_unknown_key_names_key_and_valid_keys() -> None:
    with pytest.raises(FacebalanceError, match=r"unknown key 'train_target\.epoch' \(did you "
                       r"mean 'epochs'\?\); valid keys in 'train_target': arch, width"):
        parse_params({"train_target": {"epoch": 3}})


def test_unknown_section() -> None:
    with pytest.raises(FacebalanceError, match=r"unknown section 'trian_target' \(did you mean "
                       r"'train_target'\?\)"):
        parse_params({"trian_target": {}})


@pytest.mark.parametrize(("data", "message"), [
    ({"train_target": {"arch": "resnet19"}},
     r"train_target\.arch = 'resnet19' is invalid; valid values: small_resnet, resnet18, "
     r"resnet50, mobilenet_v2"),
    ({"base": {"image_size": 48}}, r"base\.image_size = 48 is invalid; valid values: 32, 64, 128"),
    ({"base": {"nproc": 4}, "train_target": {"batch_size": 6}},
     r"train_target\.batch_size = 6 is too small for base\.nproc = 4; expected at least 8"),
    ({"base": {"nproc": 4}, "gan": {"batch_size": 7}},
     r"gan\.batch_size = 7 is too small for base\.nproc = 4; expected at least 8"),
    ({"base": {"device": "gpu"}}, r"base\.device = 'gpu' is invalid; valid values: auto, cpu"),
    ({"dataset": {"p_protected": 1.5}}, r"dataset\.p_protected = 1\.5 is invalid; expected "
                                         r"between 0\.0 and 1\.0"),
    ({"train_target": {"epochs": "3"}}, r"train_target\.epochs = '3' is invalid; expected an "
                                        r"integer"),
    ({"train_target": {"augment": 1}}, r"train_target\.augment = 1 is invalid; expected true"),
    ({"strategies": ["baseline", "smote"]}, r"strategies contains 'smote'; valid values: "
                                            r"baseline, reweight, oversample"),
    ({"dataset": {"target": "hat"}}, r"dataset\.target = 'hat' is invalid for synthfaces "
                                     r"with task\.kind binary; valid values: blond, male, "
                                     r"smiling, eyeglasses"),
    ({"dataset": {"target": "male"}}, r"dataset\.target and dataset\.protected are both 'male'"),
    ({"train_target": {"seeds": []}}, r"train_target\.seeds is empty"),
    ({"train_target": {"seeds": [1, 1]}}, r"train_target\.seeds = \[1, 1\] repeats a value"),
    ({"dataset": {"name": "imagenet"}}, r"dataset\.name = 'imagenet' is invalid; valid values: "
                                        r"synthfaces, celeba, utkface, fairface, lfw, folder"),
    ({"dataset": {"name": "celeba"}}, r"dataset\.root is empty; dataset\.name = 'celeba' needs"),
    ({"dataset": {"align": "dlib"}}, r"dataset\.align = 'dlib' is invalid; valid values: none, "
                                     r"mtcnn"),
    ({"dataset": {"workers": 0}}, r"dataset\.workers = 0 is invalid"),
    ({"compare": {"references": ["nope"]}}, r"compare\.references contains 'nope'; valid "
                                            r"values: baseline"),
    ({"dataset": {"on_error": "ignore"}}, r"dataset\.on_error = 'ignore' is invalid; valid "
                                          r"values: skip, fail"),
    ({"dataset": {"max_pixels": 200_000_000}}, r"dataset\.max_pixels = 200000000 is invalid; "
                                               r"expected between 1 and 89478485"),
])
def test_invalid_values_name_key_and_valid_values(data: dict, message: str) -> None:
    with pytest.raises(FacebalanceError, match=message):
        parse_params(data)


def test_an_adopted_generator_trains_nothing_so_any_gan_batch_size_fits() -> None:
    parse_params({"base": {"nproc": 4}, "gan": {"batch_size": 7, "checkpoint": "g.pt2"}})


def test_load_params_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"evaluate": {"bootstrap": 0}}))
    with pytest.raises(FacebalanceError, match=rf"{path}: params: evaluate\.bootstrap = 0"):
        load_params(path)
    with pytest.raises(FacebalanceError, match="cannot read"):
        load_params(tmp_path / "missing.yaml")
    path.write_text("base: [unclosed")
    with pytest.raises(FacebalanceError, match=rf"^params: {path} line 1 column 16: invalid "
                                               r"YAML: expected ',' or '\]', but got '<stream "
                                               r"end>'$"):
        load_params(path)


@pytest.mark.parametrize("text, what", [
    ("", "is empty"), ("# only a comment\n", "is empty"), ("[]", "holds a list"),
    ("false", "holds a bool"), ("0", "holds a int"), ("just text", "holds a str"),
])
def test_a_params_file_must_be_a_mapping(tmp_path: Path, text: str, what: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(FacebalanceError, match=rf"^params: {path} {what}.*expected a mapping "
                                               r"of sections"):
        load_params(path)


def test_a_params_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(b"base:\n  seed: 1 # caf\xe9\n")
    with pytest.raises(FacebalanceError, match=rf"^params: {path} line 2: byte 0xe9 is not "
                                               r"UTF-8; save the file as UTF-8$"):
        load_params(path)


def test_yaml_aliases_are_refused_before_anything_expands_them(tmp_path: Path) -> None:
    """A nine-level alias bomb (each level lists the previous one nine times)."""
    lines = ["a0: &a0 [baseline]"] + [
        f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 9)}]" for k in range(1, 10)]
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(lines) + "\nstrategies: *a9\n")
    start = time.perf_counter()
    with pytest.raises(FacebalanceError, match=rf"^params: {path} line 2 column 10: YAML "
                                               r"alias \*a0; write the values out"):
        load_params(path)
    assert time.perf_counter() - start < 1.0


def test_real_dataset_accepts_its_own_attribute_names() -> None:
    p = parse_params({"dataset": {"name": "celeba", "root": "/data/celeba",
                                  "target": "Blond_Hair", "protected": "Male"}})
    assert (p.dataset.target, p.dataset.workers, p.dataset.align) == ("Blond_Hair", 2, "none")


def _float_keys() -> list[tuple[str, str]]:
    """Every float param of the schema, so a key added later is covered too."""
    import dataclasses
    import typing

    keys = []
    for section in dataclasses.fields(Params):
        cls = type(getattr(Params(), section.name))
        if dataclasses.is_dataclass(cls):
            hints = typing.get_type_hints(cls)
            keys += [(section.name, f.name) for f in dataclasses.fields(cls)
                     if hints[f.name] is float]
    return keys


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(("section", "key"), _float_keys())
def test_non_finite_floats_are_rejected_naming_the_key(section: str, key: str,
                                                       bad: float) -> None:
    with pytest.raises(FacebalanceError,
                       match=rf"params: {section}\.{key} = {bad!r} is invalid; expected a "
                             r"finite number"):
        parse_params({section: {key: bad}})


def test_yaml_nan_reaches_the_check(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("gan:\n  ema: .nan\n")
    with pytest.raises(FacebalanceError, match=r"gan\.ema = nan is invalid; expected a finite"):
        load_params(path)


SKIN = {"protected": "skin", "p_target_given_group": [0.3, 0.15, 0.06, 0.03],
        "skin_shares": [0.55, 0.25, 0.12, 0.08]}
CLASSIC = ["baseline", "reweight"]


@pytest.mark.parametrize(("data", "message"), [
    ({"augment": {"synthetic_share": 0}},
     r"complement\.n_pairs = 0 \(auto\) needs augment\.synthetic_share > 0"),
    ({"augment": {"synthetic_weight": 0}},
     r"augment\.synthetic_weight = 0 gives generated images no weight"),
    ({"augment": {"label_margin": 0.7}}, r"augment\.label_margin"),
    ({"gan": {"balance": "reweight"}}, r"gan\.balance"),
    ({"train_attr": {"balance": "oversample"}}, r"train_attr\.balance"),
    ({"task": {"kind": "regression"}, "dataset": {"target": "age"}, "strategies": CLASSIC},
     r"dataset\.protected = 'male' is set but task\.kind is regression, whose groups are "
     r"task\.age_bins"),
    ({"task": {"kind": "regression", "age_bins": [40, 30]},
      "dataset": {"target": "age", "protected": ""}, "strategies": CLASSIC},
     r"task\.age_bins = \[40, 30\] is invalid; expected increasing edges"),
    ({"task": {"kind": "regression"}, "dataset": {"target": "blond", "protected": ""},
      "strategies": CLASSIC},
     r"dataset\.target = 'blond' is invalid for synthfaces with task\.kind regression; "
     r"valid values: age"),
    ({"task": {"kind": "multiclass"}, "dataset": {"target": "skin", "protected": "skin"}},
     r"strategies lists gan_complement, gan_gz_only, which need task\.kind: binary"),
    ({"task": {"extra_targets": ["male"]}},
     r"task\.extra_targets = \['male'\] is set but task\.kind is 'binary'"),
    ({"task": {"kind": "multitask", "extra_targets": ["skin"]},
      "dataset": {"target": "skin", "protected": "skin"}, "strategies": CLASSIC},
     r"task\.extra_targets contains 'skin'; expected column names other than dataset\.target"),
    ({"dataset": {"protected": "skin"}, "strategies": CLASSIC},
     r"dataset\.p_target_given_group = \[0\.24, 0\.02\]; protected: skin needs "
     r"P\(target=1 \| group\) for each of its 4 groups"),
    ({"dataset": {"p_target_protected0": 0.3}},
     r"'dataset\.p_target_protected0' is now the first value of dataset\.p_target_given_group"),
    ({"dataset": {**SKIN, "skin_shares": [0.5, 0.5, 0.5, 0.5]}, "strategies": CLASSIC},
     r"dataset\.skin_shares = \[0\.5, 0\.5, 0\.5, 0\.5\] sums to 2; expected 1"),
    ({"dataset": {**SKIN, "p_target_given_group": [0.3, 0.15, 1.5, 0.03]},
      "strategies": CLASSIC},
     r"dataset\.p_target_given_group = 1\.5 is invalid; expected between 0\.0 and 1\.0"),
    ({"task": {"kind": "multiclass"}, "dataset": {"target": "skin"}, "strategies": CLASSIC},
     r"synthfaces draws a skin target with skin as its groups; set dataset\.protected: skin"),
    ({"compare": {"metrics": ["wmae"]}},
     r"compare\.metrics contains 'wmae'; valid values: ap, accuracy, deo"),
    ({"dataset": {"protected": ""}}, r"dataset\.protected is empty; task\.kind = 'binary' "
                                     r"needs the column of the groups"),
    ({"dataset": SKIN}, r"strategies lists gan_complement, gan_gz_only, which need a binary "
                        r"protected attribute; dataset\.protected = 'skin' has more than two"),
    ({"dataset": {**SKIN, "skin_shares": [0.5, 0.5, 0.0, 0.0]}, "strategies": CLASSIC},
     r"dataset\.skin_shares = \[0\.5, 0\.5, 0\.0, 0\.0\] has an empty group"),
    ({"task": {"kind": "multitask", "extra_targets": ["blond"]},
      "dataset": {"target": "male", "protected": "male"}, "strategies": CLASSIC},
     r"dataset\.target and dataset\.protected are both 'male'; synthfaces draws a target as "
     r"its own groups only for skin"),
    ({"task": {"kind": "regression"}, "dataset": {"target": "age", "protected": ""},
      "strategies": ["latent_smote"], "gan": {"balance": "oversample"}},
     r"gan\.balance = 'oversample' balances target x protected cells of a binary task; "
     r"task\.kind is 'regression': use gan\.balance: none"),
    ({"interpolate": {"contribution": [0.9, 0.1]}},
     r"interpolate\.contribution = \[0\.9, 0\.1\] is invalid; expected \[lo, hi\] with "
     r"0 <= lo <= hi <= 1"),
    ({"interpolate": {"contribution": [0.1]}}, r"interpolate\.contribution = \[0\.1\]"),
    ({"guided": {"step": 0.0}}, r"guided\.step = 0\.0 is invalid; expected > 0"),
    ({"guided": {"c": 0}}, r"guided\.c = 0(\.0)? is invalid; expected > 0"),
    ({"task": {"kind": "regression"}, "dataset": {"target": "age", "protected": ""},
      "strategies": ["baseline", "guided"]},
     r"strategies lists guided, which labels its generated faces with the binary target "
     r"classifier"),
    ({"invert": {"method": "gradient"}},
     r"invert\.method = 'gradient' is invalid; valid values: encoder, optimize, both"),
    ({"task": {"kind": "regression"}, "dataset": {"target": "age", "protected": ""},
      "strategies": CLASSIC, "augment": {"reweight_mode": "independence"}},
     r"augment\.reweight_mode = 'independence' has nothing to do for regression"),
])
def test_task_rules_name_the_keys(data: dict, message: str) -> None:
    with pytest.raises(FacebalanceError, match=message):
        parse_params(data)


def test_gan_balance_auto_never_refuses_a_task() -> None:
    # auto resolves to none where oversampling cells has no meaning; only an explicit
    # oversample with a non-binary task is refused (see the rule cases above).
    parse_params({"task": {"kind": "regression"}, "dataset": {"target": "age", "protected": ""},
                  "strategies": ["latent_smote"], "gan": {"balance": "auto"}})


def test_each_task_kind_has_a_valid_synthfaces_setting() -> None:
    assert parse_params({"dataset": SKIN, "strategies": CLASSIC}).dataset.protected == "skin"
    p = parse_params({"task": {"kind": "multitask", "extra_targets": ["male"]},
                      "dataset": {"target": "skin", "protected": "skin"},
                      "strategies": CLASSIC, "compare": {"metrics": ["accuracy_male"]}})
    assert p.compare.metrics == ["accuracy_male"]
    p = parse_params({"task": {"kind": "regression", "age_bins": [30, 45.5]},
                      "dataset": {"target": "age", "protected": "", "age_profile": "utkface"},
                      "strategies": CLASSIC, "compare": {"metrics": ["wmae", "mae"]}})
    assert p.task.age_bins == [30, 45.5]


@pytest.mark.parametrize("section, key, value", [
    ("dataset", "n_train", 1_000_000_000), ("dataset", "n_train", 10**12),
    ("dataset", "n_train", 10**30), ("sample", "n", 10**9), ("evaluate", "bootstrap", 10**7),
    ("train_target", "batch_size", 10**6), ("base", "seed", 2**40),
])
def test_counts_have_an_upper_bound(section: str, key: str, value: int) -> None:
    """A typo of a count fails at validation instead of allocating until killed."""
    with pytest.raises(FacebalanceError, match=rf"params: {section}\.{key} = {value} is "
                                               r"invalid; expected between \d+ and \d+$"):
        parse_params({section: {key: value}})
