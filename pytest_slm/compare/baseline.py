"""Baselines stored in git: ``<dir>/<fingerprint>/<model>/<precision>.json``.

The fingerprint names what changes the numbers (accelerator and count, engine, major.minor
versions of vLLM and torch); the full environment is stored inside each file. Files are small,
flat and key-sorted, so a baseline refresh reads well as a diff.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_slm import atomic
from pytest_slm.parallel import fingerprint_suffix

SCHEMA = "pytest-slm-baseline/1"


class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def _major_minor(version: str | None) -> str:
    if not version:
        return "none"
    parts = re.split(r"[.+]", version)
    return ".".join(parts[:2])


def fingerprint(environment: Mapping[str, Any], engine: str, parallel: str | None = None) -> str:
    """e.g. ``nvidia-h100-80gb-hbm3-x1__vllm-0.32__torch-2.11`` or ``cpu-intel-r-xeon-r-processor-x2__...``.

    ``parallel`` is the engine's layout label (``tp2-pp1``); a layout on more than one device adds
    it as a suffix (``...__torch-2.11__tp2-pp1``), a single-device one adds nothing."""
    hw = environment.get("hardware", {})
    versions = environment.get("versions", {})
    if hw.get("gpu_name"):
        device = f"{_slug(str(hw['gpu_name']))}-x{hw.get('gpu_count', 1)}"
    else:
        device = f"cpu-{_slug(str(hw.get('cpu_model', 'unknown')))}-x{hw.get('cpu_count', 1)}"
    torch = _major_minor(versions.get("torch"))
    return (
        f"{device}__{_slug(engine)}-{_major_minor(versions.get('vllm') if engine == 'vllm' else None)}__torch-{torch}"
        + fingerprint_suffix(parallel)
    )


@dataclass(frozen=True)
class Baseline:
    path: Path
    entries: Mapping[str, Mapping[str, Any]]


class BaselineStore:
    """Reads and writes baseline files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, fp: str, model: str, precision: str) -> Path:
        return self.root / fp / _slug(model) / f"{_slug(precision)}.json"

    def load(self, fp: str, model: str, precision: str) -> Baseline | None:
        path = self.path(fp, model, precision)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BaselineError(f"baseline file {path} is not readable JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise BaselineError(f"baseline file {path} has schema {found!r}; expected {SCHEMA!r}")
        entries = data.get("metrics")
        if not isinstance(entries, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("value"), (int, float)) for e in entries.values()
        ):
            raise BaselineError(f"baseline file {path}: 'metrics' must map names to objects with a numeric 'value'")
        return Baseline(path, entries)

    def other_fingerprints(self, fp: str, model: str, precision: str) -> list[str]:
        """Fingerprints that do have a baseline for this model × precision (for the skip message)."""
        if not self.root.is_dir():
            return []
        return sorted(
            d.name
            for d in self.root.iterdir()
            if d.is_dir() and d.name != fp and (d / _slug(model) / f"{_slug(precision)}.json").exists()
        )

    def update(
        self,
        fp: str,
        model: str,
        precision: str,
        environment: Mapping[str, Any],
        entries: Mapping[str, Mapping[str, Any]],
    ) -> Path:
        """Merge ``entries`` into the file (new values replace old ones), atomically."""
        path = self.path(fp, model, precision)
        existing: dict[str, Any] = {}
        if path.exists():
            try:
                loaded = self.load(fp, model, precision)
            except BaselineError:
                loaded = None  # a corrupt file is replaced by a fresh one, never merged into
            existing = dict(loaded.entries) if loaded else {}
        existing.update({k: dict(v) for k, v in entries.items()})
        atomic.write_json(
            path,
            {
                "schema": SCHEMA,
                "fingerprint": fp,
                "model": model,
                "precision": precision,
                "environment": dict(environment),
                "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "metrics": existing,
            },
        )
        return path
