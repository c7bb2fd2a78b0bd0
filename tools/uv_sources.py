"""Print uv's flags for the package sources pip is configured with (``make setup``).

uv reads no pip configuration: on a machine whose pip.conf (or ``PIP_*`` variables) points at
a local mirror or wheel folder, ``uv pip install`` would go past it to PyPI. This turns what
``pip config list`` shows into ``--index-url``, ``--extra-index-url`` and ``--find-links``
flags, one per source, in pip's order. With no such setting it prints nothing (uv then uses
PyPI alone, as pip does).

Usage: ``python tools/uv_sources.py`` (reads ``python -m pip config list``), or pipe that
listing in: ``... | python tools/uv_sources.py -``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

KEYS = ("index-url", "extra-index-url", "find-links")
_LINE = re.compile(r"^[^.=]*\.(?P<key>[a-z-]+)=(?P<value>.*)$")


def uv_flags(listing: str) -> list[str]:
    """The uv flags for the sources in a ``pip config list`` listing.

    Parameters
    ----------
    listing
        Lines such as ``global.extra-index-url='file:///a file:///b'`` or
        ``:env:.find-links='/opt/wheels'``; other keys are ignored.

    Returns
    -------
    list of str
        ``["--extra-index-url", "file:///a", "--extra-index-url", "file:///b", ...]``; a
        source given twice (a file and a variable) is passed once, and one ``--index-url``
        at most: a ``PIP_INDEX_URL`` variable's over a file's, as pip reads them.
    """
    flags: list[str] = []
    index_url: dict[bool, str] = {}  # from a variable (True) or a file (False)
    seen: set[tuple[str, str]] = set()
    for line in listing.splitlines():
        m = _LINE.match(line.strip())
        if not m or m["key"] not in KEYS:
            continue
        for value in shlex.split(m["value"]):
            for source in value.split():
                if m["key"] == "index-url":
                    index_url[line.startswith(":env:")] = source
                elif (m["key"], source) not in seen:
                    seen.add((m["key"], source))
                    flags += [f"--{m['key']}", source]
    chosen = index_url.get(True, index_url.get(False))
    return (["--index-url", chosen] if chosen else []) + flags


def main() -> None:
    if sys.argv[1:] == ["-"]:
        listing = sys.stdin.read()
    else:
        listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                                 capture_output=True, text=True).stdout
    print(" ".join(shlex.quote(f) for f in uv_flags(listing)))


if __name__ == "__main__":
    main()
