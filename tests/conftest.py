"""Shared fixtures for pytest-slm's own tests: a fake checkpoint and a pytester wrapper
that runs inner sessions on the deterministic fake engine."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

# The plugin imports numpy/scipy lazily (first baseline comparison). Import them here, once, so
# pytester's in-process runs find them already loaded instead of importing numpy a second time
# after each run's sys.modules restore (numpy warns about that, and warnings are errors here).
# The same for pandas, which the report's compact table uses.
import pandas  # noqa: F401
import pytest
import scipy.stats  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
FAKE_ENGINE = "tests.fake_engine:FakeEngine"


@pytest.fixture
def fake_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that passes as a Hugging Face checkpoint (config + weights file)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny-model"
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "model.safetensors").write_bytes(b"\0" * 1024)
    return path


class SlmPytester:
    """Runs inner pytest sessions with pytest-slm on the fake engine."""

    def __init__(self, pytester: pytest.Pytester, checkpoint: Path, log: Path) -> None:
        self.pytester = pytester
        self.checkpoint = checkpoint
        self.log = log
        self.output = pytester.path / "out"

    def base_args(self) -> list[str]:
        return [
            "-p",
            "no:cacheprovider",
            "--slm-engine",
            FAKE_ENGINE,
            "--models",
            str(self.checkpoint),
            "--slm-output",
            str(self.output),
            "--slm-cache-dir",
            str(self.pytester.path / "cache"),
            "--slm-num-runs",
            "3",
            "--slm-num-warmup",
            "1",
            "--slm-max-new-tokens",
            "8",
        ]

    def run(self, *args: str, subprocess: bool = False) -> pytest.RunResult:
        # pytest takes the rootdir (and so the node ids) from the paths on the command line that exist:
        # create the output and cache folders up front, so the first run's ids are the later runs' ids
        self.output.mkdir(exist_ok=True)
        (self.pytester.path / "cache").mkdir(exist_ok=True)
        full = [*self.base_args(), *args]
        if "-n" in args and "--slm-max-foreign-load" not in args:
            # the fake engine's timings are synthetic, but its xdist workers are real processes on this
            # machine's cores, each the others' foreign load: the check would void them for nothing here
            full += ["--slm-max-foreign-load", "1"]
        if subprocess:
            return self.pytester.runpytest_subprocess(*full)
        return self.pytester.runpytest(*full)

    def results(self) -> dict:  # type: ignore[type-arg]
        import json

        return json.loads((self.output / "results.json").read_text())

    def engine_log(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def slm_pytester(pytester: pytest.Pytester, fake_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> SlmPytester:
    log = pytester.path / "engine.log"
    monkeypatch.setenv("SLM_FAKE_LOG", str(log))
    # Subprocess runs must import tests.fake_engine too.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), *sys.path]))
    for var in [v for v in os.environ if v.startswith("SLM_") and v not in ("SLM_FAKE_LOG",)]:
        monkeypatch.delenv(var)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makeini("[pytest]\nfilterwarnings = error\naddopts = --strict-markers\n")
    return SlmPytester(pytester, fake_checkpoint, log)


def lines_with(result: pytest.RunResult, needle: str) -> Sequence[str]:
    return [line for line in result.outlines + result.errlines if needle in line]
