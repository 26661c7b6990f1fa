"""A model config's entries as plain data: what :mod:`pytest_slm.configs.validate` builds from YAML.

Pytest-free and light: the engine API and the stash import these types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_slm.parallel import ParallelLayout
from pytest_slm.precisions import Precision

DEFAULT_TOKEN_ENV = "HF_TOKEN"


class ModelConfigError(ValueError):
    """A model config that cannot be used; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class Calibration:
    """Calibration for this model's quantized precisions (unset: the session's settings)."""

    dataset: str | None = None
    split: str | None = None
    num_samples: int | None = None
    max_sequence_length: int | None = None


@dataclass(frozen=True)
class AccuracyTask:
    """One lm-eval task for this model, with its own item limit (None: the model's limit)."""

    name: str
    limit: int | float | None = None


@dataclass(frozen=True)
class Accuracy:
    """This model's accuracy tasks (None: the session's), default item limit and few-shot count."""

    tasks: tuple[AccuracyTask, ...] | None = None
    limit: int | float | None = None
    num_fewshot: int | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One model of a config file, validated."""

    name: str
    model: str  # hub id, alias, or an absolute local path
    file: Path
    revision: str | None = None
    display_name: str | None = None
    parameters: int | None = None
    precisions: tuple[Precision, ...] | None = None
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    calibration: Calibration = Calibration()
    accuracy: Accuracy = Accuracy()
    token_env: str = DEFAULT_TOKEN_ENV

    @property
    def where(self) -> str:
        return f"{self.file}: model {self.name!r}"

    @property
    def layout(self) -> ParallelLayout:
        return ParallelLayout.from_engine_args(self.engine_args)

    def facts(self) -> dict[str, Any]:
        """What the report shows about the entry (the token's variable name, never its value)."""
        return {
            "file": str(self.file),
            "name": self.name,
            "model": self.model,
            "revision": self.revision,
            "display_name": self.display_name,
            "parameters": self.parameters,
            "precisions": [p.name for p in self.precisions] if self.precisions is not None else None,
            "engine_args": dict(self.engine_args),
            "calibration": dataclasses.asdict(self.calibration),
            "accuracy": dataclasses.asdict(self.accuracy),
            "token_env": self.token_env,
        }


@dataclass(frozen=True)
class ModelsConfig:
    """Every entry of the config file(s), in file order."""

    files: tuple[Path, ...]
    entries: tuple[ModelEntry, ...]

    def get(self, name: str) -> ModelEntry | None:
        """The entry called ``name``, else the one whose ``model`` is exactly ``name``."""
        for e in self.entries:
            if e.name == name:
                return e
        return next((e for e in self.entries if e.model == name), None)
