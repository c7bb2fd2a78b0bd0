"""``make setup``'s installer: ``uv pip install`` into this venv, set up as pip is.

uv reads no pip configuration. Where pip.conf or ``PIP_*`` variables point at a mirror or a
wheel folder, cap versions with a constraint file or trust a company's certificate, a plain
``uv pip install`` would go past them (to PyPI, past the cap). This asks the venv's pip for
its effective install options -- every config file and variable, in pip's own precedence --
and passes them to uv: index URL, extra index URLs, find-links, ``no-index``, constraint
files, trusted hosts and the certificate file (``SSL_CERT_FILE``). The command is echoed with
any password in a URL masked, as pip shows it.

Usage (the Makefile's ``INSTALL`` with ``INSTALLER=uv``)::

    .venv/bin/python tools/uv_install.py [--print] PACKAGES-AND-UV-OPTIONS...

``--print`` shows the command without running it. A pip whose options cannot be read fails
here in one line (``make setup INSTALLER=pip`` installs with pip alone).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Any

PYPI = "https://pypi.org/simple"
#: How uv is asked to install: into this interpreter's venv, bytecode compiled as pip does
#: (without it every stage process compiles torch's modules again when
#: PYTHONDONTWRITEBYTECODE is set), and the best version over all indexes, as pip picks it.
BASE = ("pip", "install", "--compile-bytecode", "--index-strategy", "unsafe-best-match")


def pip_options() -> Any:
    """pip's effective options for ``pip install`` here (config files and variables)."""
    from pip._internal.commands import create_command

    options, _ = create_command("install").parse_args([])
    return options


def uv_args(options: Any) -> tuple[list[str], dict[str, str]]:
    """The uv arguments and environment variables that give pip's ``options`` to uv.

    Parameters
    ----------
    options
        pip's parsed install options (``index_url``, ``extra_index_urls``, ``find_links``,
        ``no_index``, ``constraints``, ``trusted_hosts``, ``cert``).

    Returns
    -------
    args, env
        ``["--extra-index-url", URL, ...]`` in pip's order (PyPI, pip's default index,
        is uv's default too and left out), and ``{"SSL_CERT_FILE": path}`` when pip has a
        certificate file.
    """
    args: list[str] = []
    if options.no_index:
        args.append("--no-index")
    if options.index_url and options.index_url.rstrip("/") != PYPI:
        args += ["--index-url", options.index_url]
    for url in options.extra_index_urls:
        args += ["--extra-index-url", url]
    for link in options.find_links:
        args += ["--find-links", link]
    for path in options.constraints:
        args += ["--constraint", path]
    for host in options.trusted_hosts:
        args += ["--allow-insecure-host", host]
    env = {"SSL_CERT_FILE": options.cert} if options.cert else {}
    return args, env


def shown(command: list[str], env: dict[str, str]) -> str:
    """The command as echoed: shell-quoted, a password in any URL masked."""
    from pip._internal.utils.misc import redact_auth_from_url

    words = [f"{k}={v}" for k, v in env.items()] + [redact_auth_from_url(w) for w in command]
    return shlex.join(words)


def main(argv: list[str]) -> int:
    show_only = argv[:1] == ["--print"]
    argv = argv[1:] if show_only else argv
    try:
        from uv import find_uv_bin

        uv = find_uv_bin()
        sources, env = uv_args(pip_options())
    except Exception as err:  # pip's internals moved, or uv is missing
        print(f"tools/uv_install.py: cannot hand pip's settings to uv ({err!r}); "
              "make setup INSTALLER=pip installs with pip alone", file=sys.stderr)
        return 1
    command = [uv, *BASE, "--python", sys.executable, *sources, *argv]
    print(shown(command, env), flush=True)
    if show_only:
        return 0
    return subprocess.run(command, env={**os.environ, **env}).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
