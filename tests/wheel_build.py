"""Build pytest-slm's wheel from a copy of the sources (so the build leaves nothing in the clone)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "pytest_slm"


def _junk(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def package_files(root: Path = REPO) -> set[str]:
    """Every file of the package's source tree, as paths relative to ``root`` (``pytest_slm/...``)."""
    return {
        p.relative_to(root).as_posix()
        for p in (root / PACKAGE).rglob("*")
        if p.is_file() and not _junk(p.relative_to(root))
    }


def build_wheel(work: Path) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` of a copy of the project; returns the ``.whl``."""
    src = work / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / PACKAGE, src / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))
    dist = work / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = dist.glob("pytest_slm-*.whl")
    return wheel


def wheel_package_files(wheel: Path) -> set[str]:
    """The package's files inside ``wheel`` (dist-info excluded)."""
    with zipfile.ZipFile(wheel) as zf:
        return {n for n in zf.namelist() if n.startswith(PACKAGE + "/") and not n.endswith("/")}
