"""What a model config entry says about its checkpoint: the Hugging Face token for a gated model,
and the parameter count the checkpoint must match.

Pytest-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_slm.checkpoints.params import checkpoint_parameters, format_parameter_count
from pytest_slm.configs.schema import DEFAULT_TOKEN_ENV, ModelEntry
from pytest_slm.configs.validate import At

#: A config's parameter count may differ from the checkpoint's by this fraction. Stated counts are
#: rounded (Qwen2.5-0.5B holds 494M, SmolLM2-360M 362M, Phi-3.5-mini 3.82B) and safetensors count
#: what is stored (tied embeddings once); 15 % absorbs that, while a wrong checkpoint is caught: the
#: next size within any family is at least twice as large (135M/360M/1.7B, 0.5B/1.5B/3B, 1B/3B/8B).
PARAMETER_TOLERANCE = 0.15


def hub_token(entry: ModelEntry | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The Hugging Face token for gated models, from the entry's ``token_env`` (default HF_TOKEN)."""
    name = entry.token_env if entry is not None else DEFAULT_TOKEN_ENV
    return environ.get(name) or None


def check_parameters(entry: ModelEntry, checkpoint: Path) -> dict[str, Any]:
    """Compare the entry's parameter count with the checkpoint's; raise when they disagree.

    Returns facts for the report: the counted parameters, how they were counted, the verdict."""
    found = checkpoint_parameters(checkpoint)
    facts: dict[str, Any] = {"stated": entry.parameters, "counted": None, "counted_from": None}
    if found is None:
        facts["check"] = f"not checked: no safetensors header or config.json sizes to count in {checkpoint}"
        return facts
    counted, how = found
    facts.update(counted=counted, counted_from=how)
    if entry.parameters is None:
        facts["check"] = "no parameter count in the config"
        return facts
    ratio = entry.parameters / counted
    facts["ratio"] = ratio
    if abs(ratio - 1) > PARAMETER_TOLERANCE:
        raise At(entry.file, repr(entry.name), "parameters").error(
            f"says {format_parameter_count(entry.parameters)} parameters but the checkpoint {checkpoint} has "
            f"{format_parameter_count(counted)} (counted from its {how}); a wrong model or a wrong count "
            f"(tolerance ±{PARAMETER_TOLERANCE:.0%})"
        )
    facts["check"] = f"within ±{PARAMETER_TOLERANCE:.0%}"
    return facts
