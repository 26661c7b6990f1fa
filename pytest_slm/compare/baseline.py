"""Baselines stored in git: ``<dir>/<fingerprint>/<model>/<precision>.json``.

The fingerprint names what changes the numbers (accelerator and count, engine, major.minor
versions of vLLM and torch); the full environment is stored inside each file. Each metric entry
keeps the workload it was measured on and the figures of the last ``HISTORY`` saved sessions
(the between-session spread the gate needs), each with the reference kernel's time of its
session (how fast the machine was: :mod:`pytest_slm.measure.machine`). Files are small, flat and key-sorted, so a
baseline refresh reads well as a diff. Writes are read-merge-write under a file lock, so two
workers or two CI jobs saving at once lose nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from pytest_slm import atomic, naming
from pytest_slm.parallel import fingerprint_suffix

SCHEMA = "pytest-slm-baseline/2"
READABLE = (SCHEMA, "pytest-slm-baseline/1")
#: saved sessions kept per metric (the gate's between-session sample)
HISTORY = 10


class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file."""


def _slug(text: str) -> str:
    return naming.slug(text, keep=".")


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


def sessions_of(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The saved sessions of an entry, oldest first (a schema-1 entry counts as one session)."""
    sessions = entry.get("sessions")
    if isinstance(sessions, list) and sessions:
        return [s for s in sessions if isinstance(s, Mapping) and isinstance(s.get("value"), (int, float))]
    return [{"value": entry["value"], "se_log": entry.get("se_log"), "saved_at": entry.get("saved_at")}]


def merge_entry(old: Mapping[str, Any] | None, new: Mapping[str, Any], *, reset: bool) -> dict[str, Any]:
    """``new`` (one session's entry) on top of ``old``: the session history grows by one, up to
    :data:`HISTORY`; ``reset`` (an accepted change, or a new workload) starts it again."""
    session = {k: new.get(k) for k in ("value", "se_log", "saved_at", "git_commit", "machine")}
    history = [] if (old is None or reset) else list(sessions_of(old))
    merged = dict(new)
    merged["sessions"] = [*history, session][-HISTORY:]
    return merged


class BaselineStore:
    """Reads and writes baseline files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, fp: str, model: str, precision: str) -> Path:
        return self.root / fp / _slug(model) / f"{_slug(precision)}.json"

    def _read(self, path: Path) -> dict[str, Any] | None:
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BaselineError(f"baseline file {path} is not readable JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") not in READABLE:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise BaselineError(f"baseline file {path} has schema {found!r}; expected {SCHEMA!r}")
        entries = data.get("metrics")
        if not isinstance(entries, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("value"), (int, float)) for e in entries.values()
        ):
            raise BaselineError(f"baseline file {path}: 'metrics' must map names to objects with a numeric 'value'")
        return data

    def load(self, fp: str, model: str, precision: str) -> Baseline | None:
        path = self.path(fp, model, precision)
        data = self._read(path)
        return None if data is None else Baseline(path, data["metrics"])

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
        resets: frozenset[str] = frozenset(),
    ) -> Path:
        """Merge one session's ``entries`` into the file under a lock (read, merge, write atomically).

        Entries of other metrics already in the file are kept; a corrupt file is replaced, never
        merged into. ``resets`` names entries whose session history starts again."""
        path = self.path(fp, model, precision)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=120):
            try:
                existing = self._read(path)
            except BaselineError:
                existing = None
            metrics: dict[str, Any] = dict(existing["metrics"]) if existing else {}
            for key, entry in entries.items():
                metrics[key] = merge_entry(metrics.get(key), entry, reset=key in resets)
            atomic.write_json(
                path,
                {
                    "schema": SCHEMA,
                    "fingerprint": fp,
                    "model": model,
                    "precision": precision,
                    "environment": dict(environment),
                    "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "metrics": metrics,
                },
            )
        return path
