"""Quantized checkpoints on demand, cached: one directory per (source, recipe, calibration, versions).

A hit costs a stat and a small JSON read. A miss quantizes in a subprocess under a file lock
(two xdist workers asking for the same checkpoint quantize it once), into a staged directory
renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from pytest_slm import atomic
from pytest_slm.checkpoints.calibration import resolve_calibration
from pytest_slm.checkpoints.quantize_worker import RESULT_PREFIX
from pytest_slm.checkpoints.recipes import needs_calibration, recipe
from pytest_slm.checkpoints.resolve import META_FILE, Checkpoint, cached_content_hash, is_checkpoint_dir
from pytest_slm.precisions import Precision
from pytest_slm.record import Metric

VERSIONED = ("llmcompressor", "compressed-tensors", "transformers")


class QuantizeSettings(Protocol):
    """What quantizing reads of the session's settings (:class:`pytest_slm.settings.Settings` has all of
    it): named here so checkpoints stay below the configuration layer that reads checkpoints."""

    @property
    def cache_dir(self) -> Path: ...

    @property
    def quantized_dir(self) -> Path: ...

    @property
    def calibration_dataset(self) -> str | None: ...

    @property
    def calibration_split(self) -> str: ...

    @property
    def num_calibration_samples(self) -> int: ...

    @property
    def max_sequence_length(self) -> int: ...


class QuantizationError(RuntimeError):
    """llmcompressor failed for one model × precision; carries the tail of its output."""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cache_key(source: Checkpoint, precision: Precision, settings: QuantizeSettings) -> tuple[str, dict[str, Any]]:
    """The key (16 hex digits) and the document it hashes. Everything that changes the output is in it."""
    steps, group = recipe(precision, source.path)
    calibrate = needs_calibration(steps)
    calib = (
        resolve_calibration(settings.calibration_dataset, settings.calibration_split, settings.num_calibration_samples)
        if calibrate
        else None
    )
    doc: dict[str, Any] = {
        "source_sha256": source.sha256,
        "precision": precision.name,
        "recipe": steps,
        "group_size": group,
        "calibration": None
        if calib is None
        else {
            "source": calib.source,
            "identity": calib.identity,
            "generated": calib.generated,
            "num_samples": settings.num_calibration_samples,
            "max_sequence_length": settings.max_sequence_length,
        },
        "versions": {d: _version(d) for d in VERSIONED},
    }
    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    return key, {**doc, "_calibration": calib}


def cached_path(source: Checkpoint, precision: Precision, key: str, settings: QuantizeSettings) -> Path:
    return settings.quantized_dir / f"{source.name}-{precision.name}-{key}"


def quantized_checkpoint(
    source: Checkpoint,
    precision: Precision,
    settings: QuantizeSettings,
    progress: Callable[[str], None] | None = None,
    python: str | None = None,
    stats: dict[str, Any] | None = None,
) -> Checkpoint:
    """The ``precision`` version of ``source``, quantizing it once if the cache has none.

    ``stats`` (if given) receives ``cache_hit`` and ``ready_s`` (seconds until the checkpoint was ready)."""
    t0 = time.perf_counter()
    hit = True
    from filelock import FileLock

    key, doc = cache_key(source, precision, settings)
    calib = doc.pop("_calibration")
    final = cached_path(source, precision, key, settings)
    if not is_checkpoint_dir(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            if not is_checkpoint_dir(final):
                hit = False
                _quantize(source, precision, settings, doc, calib, final, progress, python)
    if stats is not None:
        stats.update(cache_hit=hit, ready_s=time.perf_counter() - t0)
    return Checkpoint(
        name=source.name,
        path=final,
        source=f"{source.source}@{precision.name}",
        sha256=cached_content_hash(final, settings.cache_dir),
        origin={"quantized_from": str(source.path), "precision": precision.name, "source_origin": source.origin},
    )


def _quantize(
    source: Checkpoint,
    precision: Precision,
    settings: QuantizeSettings,
    doc: dict[str, Any],
    calib: Any,
    final: Path,
    progress: Callable[[str], None] | None,
    python: str | None,
) -> None:
    say = progress or (lambda line: None)
    if calib is not None and calib.generated:
        say(
            f"[pytest-slm] no --slm-calibration-dataset: using {len(calib.texts)} calibration texts pytest-slm "
            "generates itself (explanations, dialogues, word problems, code)"
        )
    with atomic.staged_dir(final) as tmp, tempfile.TemporaryDirectory(prefix="slm-quant-") as work:
        spec: dict[str, Any] = {
            "source": str(source.path),
            "out": str(tmp),
            "recipe": doc["recipe"],
            "calibrate": calib is not None,
            "num_samples": settings.num_calibration_samples,
            "max_sequence_length": settings.max_sequence_length,
        }
        if calib is not None and calib.texts is not None:
            texts_file = Path(work) / "calibration.jsonl"
            texts_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in calib.texts), encoding="utf-8")
            spec["texts_file"] = str(texts_file)
        elif calib is not None:
            spec.update(hub_id=calib.hub_id, split=calib.split)
        spec_file = Path(work) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        say(f"[pytest-slm] quantizing {source.name} to {precision.name} ({precision.description}) -> {final}")
        t0 = time.perf_counter()
        result, tail = _run_worker(python or sys.executable, spec_file, say)
        if result is None:
            raise QuantizationError(
                f"quantizing {source.name} to {precision.name} failed (llmcompressor):\n" + "\n".join(tail[-40:])
            )
        meta = {
            "kind": "quantized",
            "quantized_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "precision": precision.name,
            "scheme": precision.scheme,
            "method": precision.method,
            "source": str(source.path),
            "source_sha256": source.sha256,
            "recipe": doc["recipe"],
            "group_size": doc["group_size"],
            "calibration": doc["calibration"],
            "versions": doc["versions"],
            "wall_s": round(time.perf_counter() - t0, 2),
            **result,
        }
        from pytest_slm.checkpoints.resolve import content_hash

        meta["sha256"] = content_hash(tmp)
        atomic.write_json(tmp / META_FILE, meta)
    say(f"[pytest-slm] {precision.name} ready in {meta['wall_s']:.1f} s")


def _run_worker(python: str, spec_file: Path, say: Callable[[str], None]) -> tuple[dict[str, Any] | None, list[str]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [python, "-m", "pytest_slm.checkpoints.quantize_worker", str(spec_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        bufsize=1,
    )
    assert proc.stdout is not None
    tail: list[str] = []
    result: dict[str, Any] | None = None
    last_bar = 0.0
    for raw in proc.stdout:
        for line in raw.replace("\r", "\n").splitlines():
            line = line.rstrip()
            if not line:
                continue
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX) :])
                continue
            tail = [*tail[-199:], line]
            # progress bars redraw many times a second: pass on one every few seconds
            if "%|" in line:
                if time.monotonic() - last_bar < 5.0:
                    continue
                last_bar = time.monotonic()
            say(line)
    if proc.wait() != 0:
        return None, tail
    return result, tail


def read_meta(path: Path) -> dict[str, Any]:
    """The checkpoint's ``slm-checkpoint.json`` ({} if absent or unreadable).

    Checkpoints quantized before ``quantized_at`` was recorded get it from the file's mtime
    (written once, when quantization finished), with ``quantized_at_from`` saying so.
    """
    meta_file = path / META_FILE
    try:
        data = json.loads(meta_file.read_text())
        if not isinstance(data, dict):
            return {}
        if data.get("kind") == "quantized" and "quantized_at" not in data:
            mtime = datetime.fromtimestamp(meta_file.stat().st_mtime, timezone.utc)
            data.update(quantized_at=mtime.isoformat(timespec="seconds"), quantized_at_from="file mtime")
        return data
    except (OSError, ValueError):
        return {}


def quantization_metrics(meta: Mapping[str, Any]) -> list[Metric]:
    """What preparing a quantized checkpoint cost in this session, from its metadata (:func:`read_meta`)
    merged with the ``stats`` of :func:`quantized_checkpoint` (``cache_hit``, ``ready_s``).

    ``quantize_cache_hit`` is 1 on a hit, 0 on a miss. The llmcompressor run time is ``quantize_s``
    only when it was measured in this session (a miss); on a hit the duration stored with the
    checkpoint is kept as ``quantize_recorded_s``, with when and by which versions it was recorded.
    The time until the checkpoint was ready is ``quantized_cache_hit_s`` or ``quantized_cache_miss_s``.
    """
    hit = bool(meta["cache_hit"])
    details = {
        "group_size": meta.get("group_size"),
        "samples_used": meta.get("samples_used"),
        "calibration": meta.get("calibration"),
    }
    metrics = [Metric("quantize_cache_hit", 1.0 if hit else 0.0, "1", higher_is_better=True)]
    quantize_s = meta.get("quantize_s")
    if isinstance(quantize_s, (int, float)):
        if hit:
            recorded = {
                "recorded_at": meta.get("quantized_at"),
                "recorded_at_from": meta.get("quantized_at_from", "checkpoint metadata"),
                "recorded_with": meta.get("versions"),
                "note": "measured when this cached checkpoint was quantized, not in this session",
            }
            metrics.append(Metric("quantize_recorded_s", float(quantize_s), "s", False, info={**details, **recorded}))
        else:
            metrics.append(
                Metric("quantize_s", float(quantize_s), "s", False, info={**details, "versions": meta.get("versions")})
            )
    # a hit costs a hash lookup; a miss includes quantizing, so the two are different metrics
    ready = "quantized_cache_hit_s" if hit else "quantized_cache_miss_s"
    metrics.append(Metric(ready, float(meta["ready_s"]), "s", higher_is_better=False))
    return metrics
