"""Baselines stored in git: ``<dir>/<fingerprint>/<model>/<precision>.json``.

The fingerprint names what changes the numbers (accelerator and count, engine, major.minor
versions of vLLM and torch); the full environment is stored inside each file. Each metric entry
keeps the workload it was measured on and the figures of the last ``HISTORY`` saved sessions
(the between-session spread the gate needs), each with the reference kernel's time of its
session (how fast the machine was: :mod:`pytest_slm.measure.machine`). Files are small, flat and key-sorted, so a
baseline refresh reads well as a diff. Writes are read-merge-write under a file lock, so two
workers or two CI jobs saving at once lose nothing. A file that cannot be read fails the tests compared
with it, naming it, and is never written over: a save moves it aside (``bf16.json.corrupt``) and lists
it in :attr:`BaselineStore.set_aside`. Every part of a path is a slug, and the path is checked to stay
inside the baselines folder whatever the model is called.
"""

from __future__ import annotations

import json
import os
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
    """A baseline file that cannot be used, or a name that cannot make one; the message names it."""


#: how an unreadable file's error ends: what to do about it
_RECOVER = (
    "; fix or delete it, or save with --slm-save-baseline --slm-baseline-accept, which keeps it aside "
    "as <file>.corrupt and starts a new one"
)


def _file_name(model: str, precision: str) -> Path:
    return Path(_part(model, "model")) / f"{_part(precision, 'precision')}.json"


def _slug(text: str) -> str:
    return naming.slug(text, keep=".")


def _part(value: str, what: str, keep: str = ".") -> str:
    """``value`` as one path component: a slug that is neither empty nor dots only (``..``)."""
    part = naming.slug(value, keep=keep)
    if not part.strip("."):
        raise BaselineError(
            f"{what} {value!r} cannot name a baseline file: its slug {part!r} is not a folder or file name "
            "inside the baselines folder"
        )
    return part


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
class SetAside:
    """A baseline file that could not be read, moved aside by a save instead of being written over."""

    path: Path
    aside: Path
    #: why it could not be read (the :class:`BaselineError` message, which names the file)
    reason: str

    def message(self) -> str:
        return f"{self.reason}: kept aside as {self.aside}, and a new file was started"


def _aside_name(path: Path) -> Path:
    """``bf16.json.corrupt``, or ``bf16.json.corrupt.1``, ``.2``, ... when that name is taken."""
    aside = path.with_name(path.name + ".corrupt")
    n = 0
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt.{n}")
    return aside


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
        #: unreadable files this store's saves moved aside, for the caller to report
        self.set_aside: list[SetAside] = []

    def path(self, fp: str, model: str, precision: str) -> Path:
        """``<root>/<fingerprint>/<model>/<precision>.json``, each part a slug; a value that would
        leave ``root`` (``..``, an empty name) raises :class:`BaselineError` naming it."""
        path = self.root / _part(fp, "fingerprint", keep="._-") / _file_name(model, precision)
        # belt and braces: a slug holds no separator, but nothing below root may be reached otherwise
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise BaselineError(
                f"baseline path {path} for fingerprint {fp!r}, model {model!r}, precision {precision!r} "
                f"leaves the baselines folder {self.root}"
            )
        return path

    def _read(self, path: Path) -> dict[str, Any] | None:
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BaselineError(f"baseline file {path} is not readable JSON: {exc}{_RECOVER}") from None
        if not isinstance(data, dict) or data.get("schema") not in READABLE:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise BaselineError(f"baseline file {path} has schema {found!r}; expected {SCHEMA!r}{_RECOVER}")
        entries = data.get("metrics")
        if not isinstance(entries, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("value"), (int, float)) for e in entries.values()
        ):
            raise BaselineError(
                f"baseline file {path}: 'metrics' must map names to objects with a numeric 'value'{_RECOVER}"
            )
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
            if d.is_dir() and d.name != fp and (d / _file_name(model, precision)).exists()
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

        Entries of other metrics already in the file are kept. A file that cannot be read is never
        merged into nor written over: it is renamed to ``<name>.corrupt`` (``.corrupt.1``, ... when
        taken), noted in :attr:`set_aside`, and a new file started. ``resets`` names entries whose
        session history starts again."""
        path = self.path(fp, model, precision)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=120):
            try:
                existing = self._read(path)
            except BaselineError as exc:
                existing = None
                aside = _aside_name(path)  # under the lock: no other saver picks the same name
                os.replace(path, aside)
                self.set_aside.append(SetAside(path, aside, str(exc).removesuffix(_RECOVER)))
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
