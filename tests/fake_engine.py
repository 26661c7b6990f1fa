"""A deterministic engine for the plugin's own tests. Never what ``benches/`` measures.

Select it with ``--slm-engine tests.fake_engine:FakeEngine``. Token timings are synthetic
(TTFT and TPOT from ``SLM_FAKE_TTFT_S`` / ``SLM_FAKE_TPOT_S``), so latency figures are
exact and tests need not sleep. The reference kernel's time is synthetic too
(``SLM_FAKE_MACHINE_S``: one value, or ``a,b,...`` for the first timings, the last value
repeating: ``0.005,0.006`` is a machine that slows down during the first window and stays slow;
``none``: no probe).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_slm.checkpoints.resolve import Checkpoint
from pytest_slm.devices import DeviceChoice
from pytest_slm.engine_api import BatchOutput, EngineSpec, Samplings, StreamTrace, per_prompt
from pytest_slm.engines.vllm.gating import unsupported_reason
from pytest_slm.measure.machine import Probe
from pytest_slm.precisions import Precision
from pytest_slm.record import Metric
from pytest_slm.settings import Settings

LOG_ENV = "SLM_FAKE_LOG"  # a file the fake appends "load <id>" / "close <id>" lines to


class CharTokenizer:
    """One token per character (id = code point + 1); id 0 is end-of-text."""

    eos_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) + 1 for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i - 1) if i > 0 else "<eot>" for i in ids)


class FakeEngine:
    kind = "fake"
    #: the fake serves every precision from the source checkpoint (no llmcompressor run)
    needs_quantized_checkpoint = False
    tokenizer = CharTokenizer()
    max_model_len = 4096

    def __init__(self, spec: EngineSpec, checkpoint: Checkpoint, settings: Settings, device: DeviceChoice) -> None:
        self.spec = spec
        self.checkpoint = checkpoint
        self.device = device
        self.ttft_s = float(os.environ.get("SLM_FAKE_TTFT_S", "0.05"))
        self.tpot_s = float(os.environ.get("SLM_FAKE_TPOT_S", "0.02"))
        self.engine_skew = float(os.environ.get("SLM_FAKE_ENGINE_SKEW", "1.0"))
        self.jitter = float(os.environ.get("SLM_FAKE_JITTER", "0"))  # relative, deterministic per call
        self.queue_delay_s = float(os.environ.get("SLM_FAKE_QUEUE_DELAY_S", "0"))
        self.preemptions = int(os.environ.get("SLM_FAKE_PREEMPTIONS", "0"))
        self._calls = 0
        self._probes = 0
        self.closed = False
        self._log("load")

    def _log(self, what: str) -> None:
        path = os.environ.get(LOG_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as f:
                gpu = self.device.gpu.uuid if self.device.gpu else "cpu"
                visible = os.environ.get("CUDA_VISIBLE_DEVICES", "-")
                worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
                f.write(f"{what} {self.spec.id} pid={os.getpid()} worker={worker} device={gpu} visible={visible}\n")

    def generate(self, prompts: Sequence[str], sampling: Samplings) -> BatchOutput:
        assert not self.closed, "generate on a closed engine"
        time.sleep(0.001)
        specs = per_prompt(sampling, len(prompts))
        return BatchOutput(
            len(prompts),
            sum(len(p.split()) for p in prompts),
            sum(s.max_new_tokens for s in specs),
            texts=tuple(p[::-1][: s.max_new_tokens] for p, s in zip(prompts, specs, strict=True)),
        )

    def stream(self, prompts: Sequence[str], sampling: Samplings) -> list[StreamTrace]:
        assert not self.closed, "stream on a closed engine"
        t0 = time.perf_counter()
        self._calls += 1
        tpot = self.tpot_s * (1 + self.jitter * ((self._calls * 7919) % 13 - 6) / 6)
        traces = []
        for p, s in zip(prompts, per_prompt(sampling, len(prompts)), strict=True):
            k = s.max_new_tokens
            queued = t0 + self.queue_delay_s
            first = queued + self.ttft_s * self.engine_skew
            traces.append(
                StreamTrace(
                    submit_s=t0,
                    token_times_s=tuple(t0 + self.ttft_s + i * tpot for i in range(k)),
                    prompt_tokens=len(p.split()),
                    engine={
                        "ttft_s": self.ttft_s * self.engine_skew,
                        "tpot_s": self.tpot_s * self.engine_skew,
                        "queued_ts": queued,
                        "first_token_ts": first,
                        "num_preemptions": float(self.preemptions),
                    },
                    text=p[::-1][:k],
                )
            )
        return traces

    def score(self, token_prompts: Sequence[Sequence[int]]) -> list[list[tuple[float, int]]]:
        """Deterministic log-likelihoods: repeating the previous character is the model's guess;
        a quantized precision is a little worse at telling letters apart."""
        noise = 0.35 if self.spec.precision.quantized else 0.0

        def logprob(prev: int, tok: int) -> float:
            return -0.1 if tok == prev else -1.0 - ((tok * 7 + prev) % 11) / 10 - noise * (tok % 3)

        return [[(logprob(p, t), p) for p, t in itertools.pairwise(ps)] for ps in token_prompts]

    def complete(
        self, token_prompts: Sequence[Sequence[int]], *, max_tokens: int, stop: Sequence[str], temperature: float = 0.0
    ) -> list[str]:
        answer = os.environ.get("SLM_FAKE_ANSWER", " 2 + 2 = 4.\n#### 4\n\nQuestion: next")
        out = []
        for _ in token_prompts:
            text = answer[:max_tokens]
            for s in stop:
                text = text.split(s)[0]
            out.append(text)
        return out

    def machine_probe(self) -> Probe | None:
        """The reference kernel's time: ``SLM_FAKE_MACHINE_S`` (its values in turn, then the last)."""
        given = os.environ.get("SLM_FAKE_MACHINE_S", "0.005")
        if given == "none":
            return None
        times = [float(x) for x in given.split(",")]
        self._probes += 1
        return Probe(seconds=times[min(self._probes, len(times)) - 1], rel_iqr=0.01, calls=40, device="cpu")

    def memory_metrics(self) -> list[Metric]:
        return [Metric("peak_rss_bytes", 1_000_000, "B", False, info={"device": "fake"})]

    def describe(self) -> dict[str, Any]:
        # the engine arguments the fake was given (a model config's), as the vLLM engine reports its own
        return {"engine": "fake", "device": "none", "engine_args": dict(self.spec.engine_args)}

    def close(self) -> None:
        self.closed = True
        self._log("close")


class GatedFakeEngine(FakeEngine):
    """A fake that claims to sit on a compute-capability 8.0 GPU (FP8 not supported)."""

    @staticmethod
    def unsupported_reason(precision: Precision, device: DeviceChoice, checkpoint: Path | None) -> str | None:
        return unsupported_reason(precision, (8, 0), "fake A100")
