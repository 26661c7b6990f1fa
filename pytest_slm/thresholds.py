"""Threshold limits on metrics: parsing, lookup and checking. Pytest-free.

A limit is a string such as ``"<= 0.25"`` or ``">=100"``. Limits come from the
``slm_threshold`` marker (highest precedence) and from a TOML file::

    [thresholds]                       # every model × precision
    ttft_p50_s = "<= 0.5"

    [thresholds."smollm2-135m-int4"]   # one engine id
    output_tokens_per_s = ">= 50"
"""

from __future__ import annotations

import operator
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_slm.record import Metric

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_RE = re.compile(r"^\s*(<=|>=|<|>)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")


class ThresholdError(ValueError):
    """A limit that cannot be parsed, or a thresholds file that cannot be read."""


@dataclass(frozen=True)
class Limit:
    """A comparison operator and a bound, with where the limit was declared."""

    op: str
    bound: float
    source: str

    @classmethod
    def parse(cls, text: Any, source: str) -> Limit:
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            raise ThresholdError(f"{source}: limit {text!r} needs an operator, e.g. '<= {text}' or '>= {text}'")
        m = _RE.match(str(text))
        if not m:
            raise ThresholdError(f"{source}: cannot parse limit {text!r}; expected e.g. '<= 0.25' or '>= 100'")
        return cls(m.group(1), float(m.group(2)), source)

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


@dataclass(frozen=True)
class Breach:
    metric: Metric
    limit: Limit

    def message(self) -> str:
        return (
            f"{self.metric.name} = {self.metric.value:.6g} {self.metric.unit} breaches the limit "
            f"{self.limit} {self.metric.unit} (from {self.limit.source})"
        )


@dataclass(frozen=True)
class ThresholdTable:
    """Limits from a thresholds file: global ones and per engine id."""

    common: Mapping[str, Limit]
    per_engine: Mapping[str, Mapping[str, Limit]]

    @classmethod
    def empty(cls) -> ThresholdTable:
        return cls({}, {})

    @classmethod
    def load(cls, path: Path) -> ThresholdTable:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ThresholdError(f"cannot read thresholds file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ThresholdError(f"thresholds file {path} is not valid TOML: {exc}") from None
        table = data.get("thresholds")
        if not isinstance(table, dict):
            raise ThresholdError(f"thresholds file {path} has no [thresholds] table")
        common: dict[str, Limit] = {}
        per_engine: dict[str, dict[str, Limit]] = {}
        for key, value in table.items():
            if isinstance(value, dict):
                per_engine[key] = {m: Limit.parse(v, f"{path} [thresholds.{key}] {m}") for m, v in value.items()}
            else:
                common[key] = Limit.parse(value, f"{path} [thresholds] {key}")
        return cls(common, per_engine)

    def limits_for(self, engine_id: str | None, marker_limits: Mapping[str, Limit]) -> dict[str, Limit]:
        """Marker > file (engine id) > file (common)."""
        limits = dict(self.common)
        if engine_id is not None:
            limits.update(self.per_engine.get(engine_id, {}))
        limits.update(marker_limits)
        return limits


def marker_limits(kwargs: Mapping[str, Any], source: str) -> dict[str, Limit]:
    return {name: Limit.parse(text, f"{source} {name}") for name, text in kwargs.items()}


def check(metrics: list[Metric], limits: Mapping[str, Limit]) -> tuple[dict[str, Limit], list[Breach]]:
    """The limits that applied to ``metrics`` (by name), and those breached."""
    applied = {m.name: limits[m.name] for m in metrics if m.name in limits}
    breaches = [Breach(m, applied[m.name]) for m in metrics if m.name in applied and not applied[m.name].holds(m.value)]
    return applied, breaches
