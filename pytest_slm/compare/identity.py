"""What a figure was measured *on*: the workload identity a baseline entry is only compared with.

A baseline figure means something only for the same workload: the same batch size, output
length, prompts, run sizes, engine arguments (context length, memory fraction, prefix caching,
KV-cache dtype), chat-template use, and for accuracy the task version, few-shot count and item
limit. The identity is a flat dict of JSON scalars: the session part (engine and run settings
shared by every figure of a model × precision) merged with what the measurement itself put in
``Metric.info["workload"]``. Pytest-free.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pytest_slm.record import Metric

#: identity fields that describe *where* a figure came from but do not change it
IGNORED = frozenset({"target_rel_ci", "max_runs"})


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def flatten(prefix: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and other values as canonical JSON strings."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(name + ".", value))
        else:
            out[name] = _scalar(value)
    return out


def session_identity(engine_facts: Mapping[str, Any] | None, settings_view: Mapping[str, Any]) -> dict[str, Any]:
    """The part every figure of one engine shares: its engine arguments and the run settings."""
    out = flatten("", settings_view)
    if engine_facts:
        out.update(flatten("engine.", engine_facts.get("engine_args") or {}))
        if engine_facts.get("environment"):
            out.update(flatten("env.", engine_facts["environment"]))
    return out


def metric_identity(session: Mapping[str, Any], metric_info: Mapping[str, Any]) -> dict[str, Any]:
    """The full identity of one figure: the session part plus the measurement's own workload."""
    own = metric_info.get("workload") or {}
    merged = {**session, **flatten("", own)}
    return {k: v for k, v in sorted(merged.items()) if k not in IGNORED}


def digest(identity: Mapping[str, Any]) -> str:
    """A short stable hash of an identity (for keys and report columns)."""
    text = json.dumps(dict(identity), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def differences(stored: Mapping[str, Any], current: Mapping[str, Any], limit: int = 4) -> list[str]:
    """``"<field> was X, is Y"`` for each field that differs (missing fields show as absent)."""
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key, "absent"), current.get(key, "absent")
        if a != b:
            out.append(f"{key} was {a!r}, is {b!r}")
    if len(out) > limit:
        out = [*out[:limit], f"and {len(out) - limit} more"]
    return out


def figure_identities(engine_facts: Mapping[str, Any] | None, figures: Iterable[Metric]) -> dict[str, dict[str, Any]]:
    """Each figure's workload identity (name -> identity): the engine's arguments plus the
    measurement's own workload."""
    session = session_identity(engine_facts, {})
    return {m.name: metric_identity(session, m.info) for m in figures}


def baseline_key(file_name: str, function: str, params: str, engine_id: str | None) -> str:
    """A test's identity across engines: ``file::function[other params]`` (``engine_id``, the model and
    precision part of the test's parameter id ``params``, removed; a KV-cache dtype other than auto
    stays: ``[kvfp8-single]``)."""
    if engine_id and params.startswith(engine_id):
        params = params[len(engine_id) :].lstrip("-")
    return f"{file_name}::{function}" + (f"[{params}]" if params else "")
