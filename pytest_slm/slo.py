"""Service-level objectives: what an SLO bounds, how one is written, and whether one request met it. Pytest-free.

An SLO bounds a request's TTFT, TPOT and (optionally) end-to-end latency, checked at a percentile of
a level's requests (:mod:`pytest_slm.serving.goodput` applies it to a served level). It is a value of
the session's configuration (``--slm-slo``), like a precision, so it sits at the bottom of the package:
the settings validate it without knowing the serving layer.

Presets are MLPerf Inference's token-latency limits for Llama-3.1-8B (mlcommons/inference,
``loadgen/mlperf.conf``: ``llama3_1-8b.Server.ttft_latency = 2000``, ``tpot_latency = 100`` and
``llama3_1-8b-interactive.Server.ttft_latency = 500``, ``tpot_latency = 30``, milliseconds, with
``*.Server.target_latency_percentile = 99``). MLPerf bounds no end-to-end latency for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
