"""Chat templates: instruct models are asked the way they are served. Pytest-free.

``--slm-chat-template auto`` (the default) wraps every prompt as one user message with the
tokenizer's own chat template where the tokenizer has one; ``on`` requires a template, ``off``
sends the raw text. The choice is part of the workload identity of every figure.
"""

from __future__ import annotations

from typing import Any

MODES = ("auto", "on", "off")


class ChatTemplateError(ValueError):
    """``--slm-chat-template on`` for a tokenizer without a chat template."""


def has_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None)) and hasattr(tokenizer, "apply_chat_template")


def use_chat_template(mode: str, tokenizer: Any, model: str = "the model") -> bool:
    """Whether prompts get the chat template under ``mode``."""
    if mode not in MODES:
        raise ValueError(f"chat template mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off":
        return False
    if has_template(tokenizer):
        return True
    if mode == "on":
        raise ChatTemplateError(f"--slm-chat-template on: the tokenizer of {model} has no chat template")
    return False


def render(tokenizer: Any, prompt: str) -> str:
    """``prompt`` as a single user turn with the generation prompt appended."""
    return str(
        tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    )
