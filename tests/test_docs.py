"""The documentation: the mkdocs site builds strictly and the README stays a front page.

``mkdocs build --strict`` with the ``validation`` settings of ``mkdocs.yml`` fails on a
broken link or anchor between docs pages and on a page missing from ``nav``; the README is
not part of the site, so its relative links and anchors are checked here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 300

#: ``](target)`` of a markdown link or image; the target ends at whitespace or ``)``.
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def outside_fences(text: str) -> list[str]:
    """The lines of a markdown text that are not inside a fenced code block."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchor(heading: str) -> str:
    """A heading's anchor as mkdocs makes it (Python-Markdown's toc slugify of the text
    without its code and emphasis marks: lowercase, punctuation other than '-' and '_'
    dropped, spaces to '-'); GitHub's is the same for the headings used here."""
    return slugify(re.sub(r"[`*]", "", heading), "-")


def heading_slugs(path: Path) -> set[str]:
    """The anchors of a markdown file's headings."""
    return {anchor(m.group(1)) for line in outside_fences(path.read_text(encoding="utf-8"))
            if (m := HEADING.match(line))}


def relative_links(path: Path) -> list[str]:
    """Link targets of a markdown file that are not URLs (``http:``, ``mailto:``, ...)."""
    links = []
    for line in outside_fences(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)  # inline code is not a link
        for target in LINK.findall(line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                links.append(target)
    return links


def test_anchor_follows_mkdocs() -> None:
    assert anchor("Measured: the GAN defaults over four settings (`gan.balance`)") == (
        "measured-the-gan-defaults-over-four-settings-ganbalance")
    assert anchor("Measured: the `skin4_guided` preset") == "measured-the-skin4_guided-preset"
    assert anchor("Latent-space de-biasing (z/z′ complements)") == (
        "latent-space-de-biasing-zz-complements")


def test_a_missing_anchor_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n```\n# not a heading\n```\n\n## Run on **your** data\n")
    assert heading_slugs(page) == {"title", "run-on-your-data"}


def test_mkdocs_site_builds_strict(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
         str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_is_a_front_page() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n < MAX_README_LINES, f"README.md has {n} lines; move detail into docs/"


@pytest.mark.parametrize("target", relative_links(README))
def test_readme_links_resolve(target: str) -> None:
    path, _, anchor = target.partition("#")
    page = (ROOT / path) if path else README
    assert page.is_file(), f"README.md links to {target}: {page} is not a file"
    if anchor and page.suffix == ".md":
        assert anchor in heading_slugs(page), (
            f"README.md links to {target}: {page.relative_to(ROOT)} has no heading "
            f"with the anchor #{anchor}")
