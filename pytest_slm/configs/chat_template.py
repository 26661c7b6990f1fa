"""A model config entry's chat template, handed to the engine's tokenizer.

Pytest-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def chat_template_text(engine_args: Mapping[str, Any]) -> str | None:
    """The Jinja text of an entry's ``chat_template`` (a file path made absolute on load, or the text)."""
    value = engine_args.get("chat_template")
    if value is None:
        return None
    text = str(value)
    return text if "{{" in text or "{%" in text else Path(text).read_text(encoding="utf-8")


def apply_chat_template(engine: Any, engine_args: Mapping[str, Any]) -> None:
    """Give the engine's tokenizer the entry's chat template: the workloads and lm-eval render prompts
    with the tokenizer, while vLLM's own ``chat_template`` argument serves only ``LLM.chat``."""
    template = chat_template_text(engine_args)
    tokenizer = getattr(engine, "tokenizer", None)
    if template is not None and tokenizer is not None:
        tokenizer.chat_template = template
