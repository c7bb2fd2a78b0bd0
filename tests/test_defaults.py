"""One set of defaults: a lib config that mirrors a params section defaults to the values
the pipeline runs with (config.py's ``Params()`` and params.yaml), so a user calling the
library from Python gets the measured setting, not an older one."""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass

import pytest
import yaml

from facebalance.config import Params, from_params, parse_params
from facebalance.latent.invert import InvertConfig
from facebalance.latent.pairs import PairSpec
from facebalance.models.embedder import EmbedderConfig
from facebalance.models.encoder import EncoderConfig, EncoderTrainConfig
from facebalance.models.gan import GanConfig, GanTrainConfig
from facebalance.models.train import TrainConfig
from facebalance.models.verifier import VerifyConfig

from .conftest import REPO

#: (lib config, params section, prefix of its fields in the section)
MIRRORS = [
    (GanConfig, "gan", ""),
    (GanTrainConfig, "gan", ""),
    (PairSpec, "complement", ""),
    (InvertConfig, "invert", ""),
    (EncoderConfig, "invert", "encoder_"),
    (EncoderTrainConfig, "invert", "encoder_"),
    (TrainConfig, "train_target", ""),
    (EmbedderConfig, "embed", ""),
    (VerifyConfig, "verify", ""),
]


def _default(f):
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize(("cls", "section", "prefix"), MIRRORS,
                         ids=[c.__name__ for c, _, _ in MIRRORS])
def test_lib_defaults_are_the_pipeline_defaults(cls: type, section: str, prefix: str) -> None:
    shipped = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    default, used = getattr(Params(), section), getattr(shipped, section)
    shared = [f for f in fields(cls) if hasattr(default, prefix + f.name)]
    assert shared, f"{cls.__name__} shares no field with {section}"
    for f in shared:
        name = prefix + f.name
        assert _plain(_default(f)) == _plain(getattr(default, name)), (
            f"{cls.__name__}.{f.name} = {_default(f)!r} but config.py's {section}.{name} = "
            f"{getattr(default, name)!r}")
        assert _plain(getattr(default, name)) == _plain(getattr(used, name)), (
            f"config.py's {section}.{name} = {getattr(default, name)!r} but params.yaml has "
            f"{getattr(used, name)!r}")


def test_from_params_takes_the_section_and_the_given_values() -> None:
    p = Params()
    spec = from_params(PairSpec, p.complement, n_pairs=10, seed=3)
    assert (spec.n_pairs, spec.seed, spec.min_distance) == (10, 3, p.complement.min_distance)
    enc = from_params(EncoderTrainConfig, p.invert, prefix="encoder_", seed=1)
    assert (enc.steps, enc.lr) == (p.invert.encoder_steps, p.invert.encoder_lr)
    with pytest.raises(TypeError, match="PairSpec has no field 'n_pair'"):
        from_params(PairSpec, p.complement, n_pair=10)
    assert is_dataclass(spec)
