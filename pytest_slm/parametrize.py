"""The model × precision × KV-cache dtype matrix that ``slm_engine`` is parametrized over. Pytest-free."""

from __future__ import annotations

from pytest_slm.engines.base import EngineSpec
from pytest_slm.settings import Settings


def engine_specs(settings: Settings) -> list[EngineSpec]:
    """Every model × precision × KV-cache dtype, models outermost so one model's engines run back to back."""
    specs = [
        EngineSpec(m, p, kv) for m in settings.models for p in settings.precisions for kv in settings.kv_cache_dtype
    ]
    ids = [s.id for s in specs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"two --models entries give the same test id(s) {dupes}; rename a checkpoint directory")
    return specs
