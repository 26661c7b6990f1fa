"""What a model config entry changes in a session: its models, each model's precisions, KV-cache
dtypes, accuracy tasks and engine arguments (the matrix), and its settings.

Pytest-free. Precedence for a model's settings: command line > environment > its config entry >
ini > default; ``--precision`` and ``--slm-accuracy-tasks`` given on the command line or in the
environment narrow a model's own lists instead of replacing them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pytest_slm.configs.schema import ModelEntry, ModelsConfig
from pytest_slm.configs.validate import dtype_conflict
from pytest_slm.precisions import Precision
from pytest_slm.settings import Settings


def explicit(settings: Settings, name: str) -> bool:
    """True when ``name`` was set on the command line or in the environment (these beat a config)."""
    source = settings.sources.get(name, "")
    return source.startswith(("--", "environment variable"))


def select(settings: Settings, config: ModelsConfig | None) -> list[tuple[str, ModelEntry | None]]:
    """The session's models: ``--models`` entries (a config name or model picks its entry), or every
    config entry when ``--models`` was not given."""
    if config is None:
        return [(m, None) for m in settings.models]
    if "models" not in settings.sources:
        return [(e.model, e) for e in config.entries]
    out: list[tuple[str, ModelEntry | None]] = []
    for m in settings.models:
        entry = config.get(m)
        out.append((entry.model, entry) if entry else (m, None))
    return out


def precisions_for(settings: Settings, entry: ModelEntry | None) -> tuple[Precision, ...]:
    """The entry's precisions, narrowed by an explicit ``--precision``; else the session's."""
    if entry is None or entry.precisions is None:
        return settings.precisions
    if explicit(settings, "precisions"):
        return tuple(p for p in entry.precisions if p in settings.precisions)
    return entry.precisions


def engine_args_for(settings: Settings, entry: ModelEntry | None, precision: Precision) -> dict[str, Any]:
    """The entry's engine arguments for one cell; an explicit ``--slm-max-model-len`` or
    ``--slm-gpu-memory-utilization`` wins over the entry (the engine sets those from settings)."""
    if entry is None:
        return {}
    dtype_conflict(entry, precision)
    args = dict(entry.engine_args)
    for name in ("max_model_len", "gpu_memory_utilization"):
        if explicit(settings, name):
            args.pop(name, None)
    if precision.dtype != "auto":
        args.pop("dtype", None)  # equal to the precision's (dtype_conflict passed)
    args.pop("kv_cache_dtype", None)  # a matrix axis: it reaches the engine as EngineSpec.kv_cache_dtype
    return args


def kv_dtypes_for(settings: Settings, entry: ModelEntry | None) -> tuple[str, ...]:
    """The KV-cache dtypes this model runs: the entry's, unless ``--slm-kv-cache-dtype`` was given
    on the command line or in the environment (then the session's, as for every other value)."""
    if entry is None or "kv_cache_dtype" not in entry.engine_args or explicit(settings, "kv_cache_dtype"):
        return settings.kv_cache_dtype
    return tuple(entry.engine_args["kv_cache_dtype"])


def tasks_for(settings: Settings, entry: ModelEntry | None) -> tuple[str, ...]:
    """The accuracy tasks this model runs: the entry's (narrowed by explicit ``--slm-accuracy-tasks``)."""
    if entry is None or entry.accuracy.tasks is None:
        return settings.accuracy_tasks
    names = tuple(t.name for t in entry.accuracy.tasks)
    if explicit(settings, "accuracy_tasks"):
        return tuple(t for t in names if t in settings.accuracy_tasks)
    return names


def settings_for(settings: Settings, entry: ModelEntry | None) -> Settings:
    """Session settings with this model's calibration and accuracy settings applied."""
    if entry is None:
        return settings
    values: dict[str, Any] = {}
    cal = entry.calibration
    for field_name, value in (
        ("calibration_dataset", cal.dataset),
        ("calibration_split", cal.split),
        ("num_calibration_samples", cal.num_samples),
        ("max_sequence_length", cal.max_sequence_length),
        ("accuracy_limit", entry.accuracy.limit),
        ("num_fewshot", entry.accuracy.num_fewshot),
    ):
        if value is not None and not explicit(settings, field_name):
            values[field_name] = value
    values["accuracy_tasks"] = tasks_for(settings, entry)
    if not explicit(settings, "accuracy_limit"):
        values["accuracy_task_limits"] = {t.name: t.limit for t in entry.accuracy.tasks or () if t.limit is not None}
    sources = {**settings.sources, **dict.fromkeys(values, entry.where)}
    return dataclasses.replace(settings, **values, sources=sources)
