"""tools/uv_install.py: ``make setup``'s uv install gets the settings pip is configured with."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from .conftest import REPO

SCRIPT = REPO / "tools/uv_install.py"
_spec = importlib.util.spec_from_file_location("uv_install", SCRIPT)
uv_install = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(uv_install)


def _options(**changes: object) -> SimpleNamespace:
    base = {"no_index": False, "index_url": "https://pypi.org/simple", "extra_index_urls": [],
            "find_links": [], "constraints": [], "trusted_hosts": [], "cert": None}
    return SimpleNamespace(**{**base, **changes})


def test_each_pip_setting_becomes_its_uv_flag_in_pips_order() -> None:
    args, env = uv_install.uv_args(_options(
        index_url="https://mirror.example/simple",
        extra_index_urls=["file:///opt/pypi/simple", "file:///opt/more/simple"],
        find_links=["/opt/wheels"], constraints=["/etc/xdg/pip/constraints.txt"],
        trusted_hosts=["mirror.example"], cert="/etc/ssl/company.pem", no_index=True))
    assert args == ["--no-index", "--index-url", "https://mirror.example/simple",
                    "--extra-index-url", "file:///opt/pypi/simple",
                    "--extra-index-url", "file:///opt/more/simple",
                    "--find-links", "/opt/wheels",
                    "--constraint", "/etc/xdg/pip/constraints.txt",
                    "--allow-insecure-host", "mirror.example"]
    assert env == {"SSL_CERT_FILE": "/etc/ssl/company.pem"}


def test_pip_defaults_add_nothing() -> None:
    assert uv_install.uv_args(_options()) == ([], {})
    assert uv_install.uv_args(_options(index_url="https://pypi.org/simple/")) == ([], {})


def test_a_password_in_a_url_is_masked_in_the_echo() -> None:
    line = uv_install.shown(["uv", "--index-url", "https://ann:s3cret@mirror.example/simple",
                             "torch==2.14.1"], {"SSL_CERT_FILE": "/etc/ssl/c.pem"})
    assert "s3cret" not in line
    assert line == ("SSL_CERT_FILE=/etc/ssl/c.pem uv --index-url "
                    "'https://ann:****@mirror.example/simple' torch==2.14.1")


def test_pips_own_files_and_variables_are_read_with_its_precedence(tmp_path: Path) -> None:
    """Through the real pip: a multi-line value of a config file's [install] section, and a
    variable over the file for the same key."""
    pytest.importorskip("uv", reason="make setup installs uv into the venv")
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nfind-links = /from/global\n"
                    "[install]\nextra-index-url =\n    file:///a/simple\n    file:///b/simple\n"
                    "find-links = /from/install\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": str(conf), "PIP_CONSTRAINT": str(tmp_path / "cap.txt")}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--print", "-q", "torch"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    pairs = list(itertools.pairwise(words))
    assert [v for k, v in pairs if k == "--extra-index-url"] == ["file:///a/simple",
                                                                "file:///b/simple"]
    assert [v for k, v in pairs if k == "--find-links"] == ["/from/install"]
    assert [v for k, v in pairs if k == "--constraint"] == [str(tmp_path / "cap.txt")]
    assert words[-2:] == ["-q", "torch"] and ("--python", sys.executable) in pairs
