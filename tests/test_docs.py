"""README.md and the pages under docs/ against the code: every option they name exists, every option is
named in one of them, and every docs/ page the README links to is there."""

from __future__ import annotations

import re
from pathlib import Path

from pytest_slm.options import OPTIONS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = sorted((REPO / "docs").glob("*.md"))
FLAG = re.compile(r"--slm-[a-z0-9]+(?:-[a-z0-9]+)*|--models\b|--precision\b")


def named(path: Path) -> set[str]:
    return set(FLAG.findall(path.read_text(encoding="utf-8")))


def test_every_option_the_docs_name_exists() -> None:
    flags = {spec.flag for spec in OPTIONS}
    for path in [README, *PAGES]:
        unknown = sorted(named(path) - flags)
        assert not unknown, f"{path.relative_to(REPO)} names options that do not exist: {unknown}"


def test_every_option_is_documented() -> None:
    documented = set().union(*(named(path) for path in [README, *PAGES]))
    missing = sorted({spec.flag for spec in OPTIONS} - documented)
    assert not missing, f"options named neither in README.md nor in docs/*.md: {missing}"


def test_the_readme_links_to_pages_that_exist() -> None:
    links = re.findall(r"\]\((docs/[^)#\s]+)", README.read_text(encoding="utf-8"))
    assert links, "README.md links to no docs/ page"
    missing = sorted({link for link in links if not (REPO / link).exists()})
    assert not missing, missing


def test_the_readme_stays_short() -> None:
    """A newcomer reads it in five minutes; the depth lives in docs/."""
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250
