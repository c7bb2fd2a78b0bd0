"""tools/uv_sources.py: pip's configured package sources as uv flags (``make setup``)."""

from __future__ import annotations

import importlib.util

from .conftest import REPO

_spec = importlib.util.spec_from_file_location("uv_sources", REPO / "tools/uv_sources.py")
uv_sources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(uv_sources)


def test_every_source_becomes_one_flag_in_pips_order() -> None:
    listing = ("global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
               ":env:.find-links='/opt/wheels'\n"
               "global.extra-index-url='file:///opt/pypi/simple file:///opt/more/simple'\n"
               "global.find-links='/opt/wheels'\n"
               "global.timeout='60'\n")
    assert uv_sources.uv_flags(listing) == [
        "--find-links", "/opt/wheels",  # a file and a variable: once
        "--extra-index-url", "file:///opt/pypi/simple",
        "--extra-index-url", "file:///opt/more/simple"]


def test_one_index_url_the_variable_over_the_file() -> None:
    env, file = (":env:.index-url='https://env.example/simple'",
                 "global.index-url='https://file.example/simple'")
    for listing in (f"{env}\n{file}\n", f"{file}\n{env}\n"):
        assert uv_sources.uv_flags(listing) == ["--index-url", "https://env.example/simple"]
    assert uv_sources.uv_flags(file) == ["--index-url", "https://file.example/simple"]


def test_no_configuration_gives_no_flags() -> None:
    assert uv_sources.uv_flags("") == []
    assert uv_sources.uv_flags("global.timeout='60'\nnot a config line\n") == []
