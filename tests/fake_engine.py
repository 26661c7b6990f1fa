"""A deterministic engine for the plugin's own tests. Never what ``benches/`` measures.

Select it with ``--slm-engine tests.fake_engine:FakeEngine``. Token timings are synthetic
(TTFT and TPOT from ``SLM_FAKE_TTFT_S`` / ``SLM_FAKE_TPOT_S``), so latency figures are
exact and tests need not sleep.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from pytest_slm.checkpoints.resolve import Checkpoint
from pytest_slm.engines.base import BatchOutput, EngineSpec, SamplingSpec, StreamTrace
from pytest_slm.engines.gating import unsupported_reason
from pytest_slm.precisions import Precision
from pytest_slm.record import Metric
from pytest_slm.settings import Settings

LOG_ENV = "SLM_FAKE_LOG"  # a file the fake appends "load <id>" / "close <id>" lines to


class FakeEngine:
    kind = "fake"

    def __init__(self, spec: EngineSpec, checkpoint: Checkpoint, settings: Settings) -> None:
        self.spec = spec
        self.checkpoint = checkpoint
        self.ttft_s = float(os.environ.get("SLM_FAKE_TTFT_S", "0.05"))
        self.tpot_s = float(os.environ.get("SLM_FAKE_TPOT_S", "0.02"))
        self.engine_skew = float(os.environ.get("SLM_FAKE_ENGINE_SKEW", "1.0"))
        self.closed = False
        self._log("load")

    def _log(self, what: str) -> None:
        path = os.environ.get(LOG_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{what} {self.spec.id} pid={os.getpid()}\n")

    def generate(self, prompts: Sequence[str], sampling: SamplingSpec) -> BatchOutput:
        assert not self.closed, "generate on a closed engine"
        time.sleep(0.001)
        n = len(prompts)
        return BatchOutput(n, sum(len(p.split()) for p in prompts), n * sampling.max_new_tokens)

    def stream(self, prompts: Sequence[str], sampling: SamplingSpec) -> list[StreamTrace]:
        assert not self.closed, "stream on a closed engine"
        t0 = time.perf_counter()
        k = sampling.max_new_tokens
        return [
            StreamTrace(
                submit_s=t0,
                token_times_s=tuple(t0 + self.ttft_s + i * self.tpot_s for i in range(k)),
                prompt_tokens=len(p.split()),
                engine={"ttft_s": self.ttft_s * self.engine_skew, "tpot_s": self.tpot_s * self.engine_skew},
            )
            for p in prompts
        ]

    def memory_metrics(self) -> list[Metric]:
        return [Metric("peak_rss_bytes", 1_000_000, "B", False, info={"device": "fake"})]

    def describe(self) -> dict[str, Any]:
        return {"engine": "fake", "device": "none"}

    def close(self) -> None:
        self.closed = True
        self._log("close")


class GatedFakeEngine(FakeEngine):
    """A fake that claims to sit on a compute-capability 8.0 GPU (FP8 not supported)."""

    @staticmethod
    def unsupported_reason(precision: Precision) -> str | None:
        return unsupported_reason(precision, (8, 0), "fake A100")
