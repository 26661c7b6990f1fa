"""Shared by the integration tier: run the real benchmark suite as a user would.

``scripts/test.sh`` runs the modules marked ``timed`` (their figures are timings that must be measured
on a quiet machine: the bf16 suite, the server) alone, and the others (the precision matrix's
quantization and accuracy, the KV-cache dtype, shards, workers, tensor parallel, the wheel, the
references) side by side, one module per xdist worker and one core per worker's engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

RunBenches = Callable[..., tuple[subprocess.CompletedProcess[str], dict[str, Any]]]


@pytest.fixture(scope="session", autouse=True)
def one_core_per_worker() -> Iterator[None]:
    """Under ``-n N`` (scripts/test.sh runs the untimed integration tests so) each worker's engines
    compute on a core of their own, and torch outside an engine (transformers, llmcompressor) on one
    thread. vLLM-CPU binds an engine's OpenMP threads to the first core by default, so two workers'
    engines would share one core and leave the other idle; and OpenMP threads that wait for each other
    on an oversubscribed machine spin away their time slices. A binding set from outside (or by a test,
    like the tensor-parallel one) wins."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None or "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        yield
        return
    cpus = sorted(os.sched_getaffinity(0))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_CPU_OMP_THREADS_BIND", str(cpus[int(worker.removeprefix("gw")) % len(cpus)]))
        mp.setenv("OMP_NUM_THREADS", "1")
        if "torch" in sys.modules:  # imported already: the variable is read once, at import
            sys.modules["torch"].set_num_threads(1)
        yield


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
