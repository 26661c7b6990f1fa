"""Goodput, SLO attainment and the saturation point of a sweep. Pytest-free.

*Goodput* is the rate of requests that met every bound of an SLO (:mod:`pytest_slm.slo`; requests/s
over the run's wall time). A level *meets* the SLO when the ``percentile`` of each bounded figure
over its requests is within the bound and no request failed (MLPerf's rule for its LLM server
scenarios, at the 99th percentile). The *saturation point* of a sweep is the highest load level that
still meets it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_slm.slo import SLO, request_meets
from pytest_slm.stats import percentile


@dataclass(frozen=True)
class Attainment:
    """How one level did against one SLO."""

    slo: SLO
    good: int  # requests within every bound
    total: int  # requests sent
    failed: int
    wall_s: float
    at_percentile: dict[str, float]  # the percentile of each bounded figure
    met: bool

    @property
    def goodput_rps(self) -> float:
        return self.good / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def good_fraction(self) -> float:
        return self.good / self.total if self.total else 0.0


def attainment(slo: SLO, per_request: Sequence[Mapping[str, float | None]], failed: int, wall_s: float) -> Attainment:
    """Goodput and the percentile rule for one level (``per_request``: the completed requests' figures)."""
    good = sum(request_meets(slo, r) for r in per_request)
    at: dict[str, float] = {}
    met = failed == 0 and bool(per_request)
    for key, limit in slo.limits().items():
        values = [v for r in per_request if (v := r.get(key)) is not None]
        if values:
            at[key] = percentile(values, slo.percentile)
            met = met and at[key] <= limit
    return Attainment(slo, good, len(per_request) + failed, failed, wall_s, at, met)


def saturation_point(levels: Sequence[tuple[float, bool]]) -> float | None:
    """The highest load value of a sweep that met the SLO, or None when none did.

    ``levels``: (load value, met) for every level of one kind. Only levels up to the first failure
    count: a level that meets the SLO above one that does not is a fluke of a noisy run, not capacity."""
    best = None
    for value, met in sorted(levels):
        if not met:
            break
        best = value
    return best
