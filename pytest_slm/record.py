"""Measurements as values that carry their unit and direction, and the per-test recorder.

Pytest-free: the plugin moves records between processes as plain dicts
(``item.user_properties``), so everything here round-trips through JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: user_properties key under which a test's records travel to the xdist controller.
USER_PROPERTY_KEY = "slm_records"

#: a collected test's outcome in ``results.json``'s ``tests`` before any report of it arrived (a run
#: killed later leaves it so), and while only its setup has passed
NOT_RUN = "not run"
STARTED = "started"
#: the outcomes of a test that never finished: an error in setup or teardown, a crash, a killed run
ERRORED = frozenset({"error", NOT_RUN, STARTED})


@dataclass(frozen=True)
class Metric:
    """One measured figure.

    ``samples`` holds the per-repetition values the figure summarises (the unit of
    evidence for baseline comparisons); ``info`` holds method details (window, kernel,
    profile) that explain the number but are not compared.
    """

    name: str
    value: float
    unit: str
    higher_is_better: bool
    n: int | None = None
    stderr: float | None = None
    samples: tuple[float, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"metric name {self.name!r} must be alphanumeric with '_' or '.'")
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool):
            raise TypeError(f"metric {self.name!r}: value must be a number, got {self.value!r}")
        if not math.isfinite(float(self.value)):
            raise ValueError(f"metric {self.name!r}: value {self.value!r} is not finite")
        if not self.unit:
            raise ValueError(f"metric {self.name!r} needs a unit (use '1' for a dimensionless ratio)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples"] = list(self.samples)
        d["info"] = dict(self.info)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Metric:
        return cls(
            name=d["name"],
            value=float(d["value"]),
            unit=d["unit"],
            higher_is_better=bool(d["higher_is_better"]),
            n=d.get("n"),
            stderr=d.get("stderr"),
            samples=tuple(float(x) for x in d.get("samples", ())),
            info=dict(d.get("info", {})),
        )


@dataclass
class Recorder:
    """Collects the metrics one test measures; the plugin checks and reports them after the test body.

    Use through the ``slm`` fixture: ``slm.record("ttft_p50_s", 0.05, unit="s", higher_is_better=False)``.
    Records are never dropped: a threshold breach fails the test only after every
    metric of the test has been recorded.
    """

    context: Mapping[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    #: why this test's measurement cannot be trusted (see :meth:`invalid`)
    invalid_reasons: list[str] = field(default_factory=list)

    def invalid(self, reason: str) -> None:
        """Declare the measurement untrustworthy (client saturated, warm-up not reached, foreign
        load, throttling, counter reset, ...). The test still records its figures, then fails as
        an *invalid measurement* with the reason: never compared with a baseline, never a regression."""
        if reason and reason not in self.invalid_reasons:
            self.invalid_reasons.append(reason)

    def validate(self, problems: Iterable[str]) -> None:
        """:meth:`invalid` for every problem a measurement reported (e.g. ``run.problems()``)."""
        for reason in problems:
            self.invalid(reason)

    def record(
        self,
        name: str,
        value: float,
        *,
        unit: str,
        higher_is_better: bool,
        n: int | None = None,
        stderr: float | None = None,
        samples: Sequence[float] = (),
        **info: Any,
    ) -> Metric:
        """Record one figure with its unit and direction; returns the stored :class:`Metric`."""
        if any(m.name == name for m in self.metrics):
            raise ValueError(f"metric {name!r} was already recorded by this test")
        metric = Metric(
            name=name,
            value=float(value),
            unit=unit,
            higher_is_better=higher_is_better,
            n=n,
            stderr=stderr,
            samples=tuple(float(s) for s in samples),
            info=info,
        )
        self.metrics.append(metric)
        return metric

    def extend(self, metrics: Iterable[Metric]) -> None:
        """Record several already-built metrics (from a measurement module)."""
        for m in metrics:
            if any(x.name == m.name for x in self.metrics):
                raise ValueError(f"metric {m.name!r} was already recorded by this test")
            self.metrics.append(m)
