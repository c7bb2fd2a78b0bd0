"""constraints.txt (``make lock``) pins every dependency pyproject.toml asks for, within its
bounds, and leaves torch to the Makefile."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .conftest import REPO

MAKEFILE_PINS = {"torch", "torchvision", "facenet-pytorch", "uv"}


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for n, line in enumerate((REPO / "constraints.txt").read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)", line.strip())
        assert m, f"constraints.txt line {n}: {line!r} is not name==version"
        name = canonicalize_name(m[1])
        assert name not in pins, f"constraints.txt line {n}: {m[1]} pinned twice"
        pins[name] = Version(m[2])
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("dev", "dlib"):  # what `make setup` installs
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def test_every_dependency_is_pinned_within_its_bounds() -> None:
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name in MAKEFILE_PINS:
            continue
        assert name in pins, f"{req.name} ({req}) has no pin in constraints.txt: make lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]} outside pyproject's {req}: "
            "make lock")


def test_torch_is_left_to_the_makefile() -> None:
    pins = _pins()
    pinned_by_make = {n for n in pins if n in MAKEFILE_PINS or n.startswith("nvidia-")}
    assert not pinned_by_make, f"constraints.txt pins {sorted(pinned_by_make)}"
    makefile = (REPO / "Makefile").read_text()
    assert "-c constraints.txt" in makefile
    assert re.search(r"STAMP := .*constraints\.txt.* \| cksum", makefile)
