"""Lazy engine registry: names map to ``"module:Class"`` strings imported only when used."""

from __future__ import annotations

import importlib
from typing import Any

ENGINES: dict[str, str] = {
    "vllm": "pytest_slm.engines.vllm.engine:VLLMEngine",
    "openai": "pytest_slm.engines.openai.engine:OpenAIEngine",
}


class UnknownEngine(ValueError):
    """An engine name that is neither registered nor an importable ``module:Class``."""


def load_engine_class(name: str) -> Any:
    """Import the class for ``name`` (a registered name or ``module:Class``)."""
    target = ENGINES.get(name, name)
    if ":" not in target:
        raise UnknownEngine(f"unknown engine {name!r}; valid: {', '.join(sorted(ENGINES))} or module:Class")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownEngine(f"engine {name!r}: cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UnknownEngine(f"engine {name!r}: module {module_name!r} has no {attr!r}") from None
