"""Named tasks: each preset is a set of param changes from the committed ``params.yaml``.

A preset runs as a DVC experiment (``dvc exp run -n <name> -S key=value ...``), so its
results sit beside the others in ``dvc exp show`` and ``dvc exp diff``. ``facebalance
preset <name>`` validates the changed params first and prints or runs that command;
``--set key=value`` changes more on top of the preset (``--set train_target.seeds=[0]``).

- ``blond_male``: the default (binary blond vs binary male, CelebA-like skew, 8 strategies).
- ``skin4``: binary blond vs 4 skin-tone groups with shares 0.55/0.25/0.12/0.08 and
  P(blond | group) falling from 0.30 to 0.03 (the "Balanced Face Dataset" setting, K = 4).
- ``race_gender``: multitask skin class (4) + gender from one backbone, skin skewed as in
  ``skin4``; fairness is the spread of per-class accuracy (the FairFace study).
- ``hard``: the stress test of the GAN strategies (issue 13): 9,000 training images,
  P(blond | group) 0.85 vs 0.15, the default blond cue (the plain attribute classifier
  that labels G(z) is 86% accurate, the reweighted one 89%), as on the real photos where
  the old defaults hurt; ``dataset.blond_cue`` below 1 makes it harder.
- ``age``: age regression, UTKFace-like ages (most 20-35), 10-year groups; WMAE ("Fighting
  Ageism in datasets").
- ``skin4_guided``: the ``skin4`` task with guided group directions (arXiv 2308.03495)
  beside the baseline and plain oversampling (the z/z' complements need two groups).
- ``age_smote``: the ``age`` task with that paper's strategies: naive oversampling, latent
  SMOTE (GAN inversion + interpolation in latent space) and its pixel-space control.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from facebalance.errors import FacebalanceError

_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
SKIN_SHARES = [0.55, 0.25, 0.12, 0.08]
CLASSIC = ["baseline", "reweight", "oversample", "mixup", "cutmix", "val_attention"]

PRESETS: dict[str, dict[str, Any]] = {
    "blond_male": {},
    "skin4": {
        "dataset.protected": "skin",
        "dataset.skin_shares": SKIN_SHARES,
        "dataset.p_target_given_group": [0.30, 0.15, 0.06, 0.03],
        "strategies": CLASSIC,
        "compare.references": ["baseline"],
    },
    "skin4_guided": {
        "dataset.protected": "skin",
        "dataset.skin_shares": SKIN_SHARES,
        "dataset.p_target_given_group": [0.30, 0.15, 0.06, 0.03],
        "strategies": ["baseline", "oversample", "guided"],
        "compare.references": ["baseline", "oversample"],
    },
    "race_gender": {
        "dataset.target": "skin",
        "dataset.protected": "skin",
        "dataset.skin_shares": SKIN_SHARES,
        "task.kind": "multitask",
        "task.extra_targets": ["male"],
        "strategies": CLASSIC,
        "compare.references": ["baseline"],
    },
    "hard": {
        "dataset.n_train": 9000,
        "dataset.p_protected": 0.5,
        "dataset.p_target_given_group": [0.85, 0.15],
        "dataset.blond_cue": 1.0,
        "strategies": ["baseline", "reweight", "oversample", "gan_complement", "gan_gz_only"],
    },
    "age": {
        "dataset.target": "age",
        "dataset.protected": "",
        "dataset.age_profile": "utkface",
        "task.kind": "regression",
        "task.age_bins": [30, 40, 50, 60, 70],
        "strategies": ["baseline", "oversample", "reweight", "val_attention"],
        "compare.references": ["baseline"],
    },
    "age_smote": {
        "dataset.target": "age",
        "dataset.protected": "",
        "dataset.age_profile": "utkface",
        "task.kind": "regression",
        "task.age_bins": [30, 40, 50, 60, 70],
        "strategies": ["baseline", "oversample", "latent_smote", "pixel_smote"],
        "compare.references": ["baseline", "pixel_smote"],
    },
}


def preset_changes(name: str) -> dict[str, Any]:
    """The dotted-key param changes of a preset.

    Raises
    ------
    FacebalanceError
        Naming the valid presets when ``name`` is not one.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise FacebalanceError(
            f"unknown preset {name!r}; valid: {', '.join(PRESETS)}") from None


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """Dotted-key changes from ``key=value`` strings, each value read as YAML (PyYAML's
    YAML 1.1: ``seeds=[0]`` is a list, ``lr=0.01`` a float; ``1e-5`` is a float here too).

    Raises
    ------
    FacebalanceError
        Naming the item when it has no ``=``, its value is not YAML, or the value is a
        mapping (``dvc exp run -S`` takes one key at a time: ``train_target.seeds=[0]``).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise FacebalanceError(f"--set {item!r}: expected key=value (train_target.seeds=[0])")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise FacebalanceError(f"--set {item!r}: the value is not YAML ({err})") from None
        if isinstance(value, Mapping):
            raise FacebalanceError(f"--set {item!r}: a mapping; set its keys one at a time "
                                   f"({key}.<key>=<value>)")
        if isinstance(value, str) and _EXPONENT.fullmatch(value):
            value = float(value)  # YAML 1.1 reads 1e-5 as a string; DVC reads a float
        out[key] = value
    return out


def apply_changes(data: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a params mapping with dotted-key changes applied (sections created)."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for key, value in changes.items():
        section, _, leaf = key.partition(".")
        if leaf:
            out.setdefault(section, {})[leaf] = value
        else:
            out[section] = value
    return out


def set_args(changes: Mapping[str, Any]) -> list[str]:
    """``dvc exp run`` arguments for the changes: ``-S key=<JSON value>`` (JSON is YAML,
    so lists stay lists and an empty string stays a string)."""
    args: list[str] = []
    for key, value in changes.items():
        args += ["-S", f"{key}={json.dumps(value)}"]
    return args
