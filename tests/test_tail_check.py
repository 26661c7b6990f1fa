"""The figure in docs/gates.md for heavy-tailed session changes (the reason for ``MAX_DF``), recomputed by
``scripts/tail_check.py`` from the three recorded A/A sets it was measured on: a change to the data,
the readers or the script that moves the figure fails here, and docs/gates.md is then out of date."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tail_check() -> ModuleType:
    """``scripts/tail_check.py`` as a module (``scripts`` is no package)."""
    spec = importlib.util.spec_from_file_location("tail_check", ROOT / "scripts" / "tail_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_readme_tail_figures(tail_check: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert tail_check.main(["--fit-draws", "10"]) == 0  # the simulated share needs no fit
    out = capsys.readouterr().out
    assert "all 3 sets: 188 deviations of median latencies and throughput, 13 beyond 3 robust sd (6.9 %), " in out
    assert "t fit 2.3 df" in out
    assert "a normal law: 0.27 % beyond 3 known sd" in out
    assert "3.3 % beyond 3 robust sd, 13 or more in 3.4 % of sets" in out


def test_readme_names_the_script() -> None:
    readme = (ROOT / "docs" / "gates.md").read_text()  # the noise model moved there from README.md
    rules = (ROOT / "pytest_slm" / "compare" / "rules.py").read_text()
    for text in (" ".join(readme.split()), " ".join(rules.replace("#:", " ").split())):
        assert "188 deviations" in text and "6.9 %" in text and "scripts/tail_check.py" in text
