"""Service-level objectives, goodput and the saturation point of a sweep. Pytest-free.

An SLO bounds a request's TTFT, TPOT and (optionally) end-to-end latency. *Goodput* is the rate of
requests that met every bound (requests/s over the run's wall time). A level *meets* the SLO
when the ``percentile`` of each bounded figure over its requests is within the bound and no request
failed (MLPerf's rule for its LLM server scenarios, at the 99th percentile). The *saturation
point* of a sweep is the highest load level that still meets it.

Presets are MLPerf Inference's token-latency limits for Llama-3.1-8B (mlcommons/inference,
``loadgen/mlperf.conf``: ``llama3_1-8b.Server.ttft_latency = 2000``, ``tpot_latency = 100`` and
``llama3_1-8b-interactive.Server.ttft_latency = 500``, ``tpot_latency = 30``, milliseconds, with
``*.Server.target_latency_percentile = 99``). MLPerf bounds no end-to-end latency for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_slm.measure.workloads import percentile

LIMIT_KEYS = ("ttft", "tpot", "e2e")


class SLOError(ValueError):
    """A bad ``--slm-slo`` entry; the message names it and lists what is valid."""


@dataclass(frozen=True)
class SLO:
    """Bounds in seconds (None: unbounded) checked at ``percentile``."""

    name: str
    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    percentile: float = 99.0

    @property
    def key(self) -> str:
        """The SLO in metric names: ``mlperf_server``, ``ttft0.5_tpot0.03``."""
        return self.name.replace("-", "_").replace("=", "").replace(",", "_")

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in (("ttft", self.ttft_s), ("tpot", self.tpot_s), ("e2e", self.e2e_s)) if v is not None}

    def describe(self) -> dict[str, Any]:
        """Flat JSON scalars for ``info["workload"]`` (the gate keys baselines on the SLO too)."""
        return {
            "slo": self.name,
            "slo_ttft_s": self.ttft_s,
            "slo_tpot_s": self.tpot_s,
            "slo_e2e_s": self.e2e_s,
            "slo_percentile": self.percentile,
        }


PRESETS: dict[str, SLO] = {
    # MLPerf Inference, llama3_1-8b Server scenario (loadgen/mlperf.conf)
    "mlperf-server": SLO("mlperf-server", ttft_s=2.0, tpot_s=0.100),
    # MLPerf Inference, llama3_1-8b-interactive Server scenario (loadgen/mlperf.conf)
    "mlperf-interactive": SLO("mlperf-interactive", ttft_s=0.5, tpot_s=0.030),
}


def parse_slo(text: str) -> SLO:
    """A preset name, or ``ttft=0.5,tpot=0.03[,e2e=10][,p=99]`` (seconds; ``p`` the percentile)."""
    text = text.strip()
    if text in PRESETS:
        return PRESETS[text]
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or key not in (*LIMIT_KEYS, "p"):
            raise SLOError(
                f"SLO {text!r}: bad entry {part!r}; use a preset ({', '.join(PRESETS)}) or "
                "ttft=S,tpot=S[,e2e=S][,p=PERCENTILE]"
            )
        try:
            values[key] = float(raw)
        except ValueError:
            raise SLOError(f"SLO {text!r}: {key} must be a number, got {raw!r}") from None
        if values[key] <= 0:
            raise SLOError(f"SLO {text!r}: {key} must be > 0, got {raw!r}")
    if not set(values) & set(LIMIT_KEYS):
        raise SLOError(f"SLO {text!r}: no limit given (ttft, tpot or e2e)")
    p = values.pop("p", 99.0)
    if not 0 < p <= 100:
        raise SLOError(f"SLO {text!r}: p must be in (0, 100], got {p:g}")
    name = ",".join(f"{k}={v:g}" for k, v in values.items()) + (f",p={p:g}" if p != 99.0 else "")
    return SLO(name, values.get("ttft"), values.get("tpot"), values.get("e2e"), p)


def request_meets(slo: SLO, figures: Mapping[str, float | None]) -> bool:
    """Whether one request's figures (``ttft``, ``tpot``, ``e2e`` in s) are all within the bounds.

    A bounded figure the request does not have (TPOT of a one-token answer) does not count against it."""
    for key, limit in slo.limits().items():
        value = figures.get(key)
        if value is not None and value > limit:
            return False
    return True


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
