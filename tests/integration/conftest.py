"""Shared by the integration tier: run the real benchmark suite as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

RunBenches = Callable[..., tuple[subprocess.CompletedProcess[str], dict[str, Any]]]


@pytest.fixture(scope="session")
def run_benches() -> RunBenches:
    """``run_benches(out_dir, *pytest_args)``: ``pytest benches`` in a subprocess from the repository
    root (offline, no SLM_* variables leaking in); returns the process and results.json (or {})."""

    def run(out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_")}
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "benches",
                "-p",
                "no:cacheprovider",
                "-q",
                "--slm-output",
                str(out),
                *args,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=2400,
            check=False,
        )
        results = out / "results.json"
        return proc, json.loads(results.read_text()) if results.exists() else {}

    return run
