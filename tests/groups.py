"""Which tests share an expensive session project, so that two test processes never build
one twice (``make test`` runs ``pytest -n auto``, pytest-xdist).

xdist hands out work in units; :class:`SharedProjectScheduling` makes a unit of every test
that uses one of :data:`SHARED` (directly or through a fixture), and of each other test
file. The users are read from the test sources (``ast``, never executed):
``tests/test_groups.py`` checks the result against the fixtures pytest resolves.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

TESTS = Path(__file__).resolve().parent

#: Session fixtures that run a whole tiny pipeline, and the unit their users form. The folder
#: project's users also use the binary one, so they share its unit.
SHARED = {"binary_project": "binary", "binary_copy": "binary", "folder_run": "binary",
          "skin4_run": "skin4"}

#: Units that take minutes, handed out first so that they start at once (measured with
#: ``--durations``; the rest follow as xdist orders them: most tests first).
HEAVY = ("binary", "tests/balance/test_method_effect.py", "tests/test_gan_budget.py")


def _fixture_args(tree: ast.Module) -> dict[str, set[str]]:
    """Each function of a module (fixtures and tests) and the fixtures it asks for: its
    arguments and the names it passes to ``request.getfixturevalue`` (functions of one name
    merged)."""
    out: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            args = node.args
            names = out.setdefault(node.name, set())
            names |= {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
            names |= {call.args[0].value for call in ast.walk(node)
                      if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                      and call.func.attr == "getfixturevalue" and call.args
                      and isinstance(call.args[0], ast.Constant)}
    return out


def _uses(name: str, local: dict[str, set[str]], seen: set[str] | None = None) -> set[str]:
    """Every fixture ``name`` reaches through the module's own fixtures."""
    seen = set() if seen is None else seen
    for arg in local.get(name, set()):
        if arg not in seen:
            seen.add(arg)
            if arg in local:
                _uses(arg, local, seen)
    return seen


@cache
def _module_units(path: Path) -> dict[str, str]:
    """Test function name -> its shared unit, for the tests of one file that have one."""
    local = _fixture_args(ast.parse(path.read_text()))
    out = {}
    for name in local:
        units = {SHARED[f] for f in _uses(name, local) if f in SHARED}
        if units:
            out[name] = sorted(units)[0]
    return out


def unit_of(nodeid: str, root: Path = TESTS.parent) -> str:
    """The work unit of a test: its shared project's, else its file."""
    file, _, rest = nodeid.partition("::")
    name = rest.split("[", 1)[0].rsplit("::", 1)[-1]
    path = root / file
    if path.suffix == ".py" and path.is_file():
        return _module_units(path).get(name, file)
    return file


def make_scheduler(config: object, log: object) -> object:
    """An xdist scheduler handing out :func:`unit_of` units, the :data:`HEAVY` ones first;
    None (xdist's own) when another ``--dist`` mode was asked for."""
    from xdist.scheduler import LoadScopeScheduling

    if config.getoption("dist") != "load":  # type: ignore[attr-defined]
        return None

    class SharedProjectScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

        def _assign_work_unit(self, node: object) -> None:
            # The heavy units first: they start at once, on different processes.
            for unit in reversed(HEAVY):
                if unit in self.workqueue:
                    self.workqueue.move_to_end(unit, last=False)
            super()._assign_work_unit(node)

    return SharedProjectScheduling(config, log)


def pytest_collection_finish(session: object) -> None:
    """With ``-p tests.groups``: print each collected test's shared fixtures (what
    ``tests/test_groups.py`` compares :func:`unit_of` with)."""
    for item in session.items:  # type: ignore[attr-defined]
        shared = sorted(f for f in item.fixturenames if f in SHARED)
        print(f"UNIT {item.nodeid} {','.join(shared)}")
