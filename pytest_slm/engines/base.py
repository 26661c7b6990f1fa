"""The engine protocol and the values that cross it. Pytest-free, import-light."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pytest_slm.checkpoints.resolve import Checkpoint, slug
from pytest_slm.modelconfig import ModelEntry
from pytest_slm.parallel import ParallelLayout
from pytest_slm.precisions import Precision
from pytest_slm.record import Metric


@dataclass(frozen=True)
class EngineSpec:
    """One cell of the model × precision (× KV-cache dtype) matrix: the value ``slm_engine`` is parametrized with.

    ``engine_args`` (from the model's config entry) are merged into the engine's own arguments
    (for vLLM, ``LLM(**kwargs)``); ``model_config`` is the entry itself, or None."""

    model: str
    precision: Precision
    #: vLLM's ``kv_cache_dtype`` ("auto": the model's dtype); a matrix axis of its own
    kv_cache_dtype: str = "auto"
    name: str | None = None  # a config entry's name; None: derived from ``model``
    engine_args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    model_config: ModelEntry | None = field(default=None, hash=False, compare=False, repr=False)

    @property
    def model_name(self) -> str:
        """The model's short name in ids, reports and baselines, e.g. ``smollm2-135m``."""
        return self.name or slug(self.model)

    @property
    def layout(self) -> ParallelLayout:
        """Tensor × pipeline parallel size and executor backend of this cell's engine."""
        return ParallelLayout.from_engine_args(self.engine_args)

    @property
    def base_id(self) -> str:
        """The id without the KV-cache dtype, e.g. ``smollm2-135m-bf16``: model and precision, which
        baselines are filed under (the KV dtype stays in the test's own parameters)."""
        return f"{self.model_name}-{self.precision.name}"

    @property
    def id(self) -> str:
        """Readable test id, e.g. ``smollm2-135m-bf16``, ``smollm2-135m-bf16-kvfp8`` (auto KV adds nothing)."""
        kv = "" if self.kv_cache_dtype == "auto" else f"-kv{self.kv_cache_dtype}"
        return f"{self.model_name}-{self.precision.name}{kv}"


@dataclass(frozen=True)
class SamplingSpec:
    """Greedy decoding of a fixed number of tokens (EOS ignored), so runs are comparable."""

    max_new_tokens: int
    ignore_eos: bool = True
    temperature: float = 0.0


#: one sampling spec for every prompt, or one per prompt
Samplings = SamplingSpec | Sequence[SamplingSpec]


def per_prompt(sampling: Samplings, n: int) -> list[SamplingSpec]:
    """``sampling`` expanded to one spec per prompt (a sequence must have exactly ``n``)."""
    if isinstance(sampling, SamplingSpec):
        return [sampling] * n
    specs = list(sampling)
    if len(specs) != n:
        raise ValueError(f"{len(specs)} sampling specs for {n} prompts")
    return specs


@dataclass(frozen=True)
class StreamTrace:
    """One streamed request, timed on the client's monotonic clock (``time.perf_counter``,
    which on Linux is ``CLOCK_MONOTONIC``, the clock vLLM's engine core stamps its events with).

    ``token_times_s`` has one entry per output token: the moment the client received it
    (tokens delivered together share a time). ``engine`` holds the engine's own view of the
    same request, stamped by the engine and not by the client: ``ttft_s`` (first token − queued,
    engine core), ``tpot_s``, and the raw ``queued_ts``/``scheduled_ts``/``first_token_ts``/
    ``last_token_ts`` and ``num_preemptions`` where the engine reports them.
    """

    submit_s: float
    token_times_s: tuple[float, ...]
    prompt_tokens: int
    engine: Mapping[str, float] = field(default_factory=dict)
    text: str = ""
    token_ids: tuple[int, ...] = ()

    @property
    def output_tokens(self) -> int:
        return len(self.token_times_s)


@dataclass(frozen=True)
class BatchOutput:
    """What one offline batch produced (timing is done by the caller)."""

    requests: int
    prompt_tokens: int
    output_tokens: int
    texts: tuple[str, ...] = ()
    token_ids: tuple[tuple[int, ...], ...] = ()


@runtime_checkable
class Engine(Protocol):
    """A loaded model at one precision, ready to generate.

    Implementations: :class:`pytest_slm.engines.vllm_engine.VLLMEngine`; a deterministic
    fake for the plugin's own tests lives in ``tests/``. Constructed as
    ``Engine(spec, checkpoint, settings, device)`` (``device``: :class:`pytest_slm.devices.DeviceChoice`,
    already applied to the process). An engine class may define ``preload()`` (a classmethod
    that imports its heavy modules: timed apart from the load), ``unsupported_reason(precision,
    device, checkpoint)`` (why this machine cannot run a precision, checked before quantizing) and
    ``machine_probe()`` (the reference kernel timed on its device, around every measured window:
    :mod:`pytest_slm.measure.machine`).
    """

    kind: str
    spec: EngineSpec
    checkpoint: Checkpoint

    def generate(self, prompts: Sequence[str], sampling: Samplings) -> BatchOutput:
        """Offline batch generation of all ``prompts`` at once; returns when all are done."""
        ...

    def stream(self, prompts: Sequence[str], sampling: Samplings) -> list[StreamTrace]:
        """Submit all ``prompts`` at once and stream them, timing every output token."""
        ...

    def memory_metrics(self) -> list[Metric]:
        """Memory figures: peak RSS on CPU; weights, KV cache and peak allocated on CUDA."""
        ...

    def describe(self) -> dict[str, Any]:
        """Facts for the report: device, dtype, kernels, versions."""
        ...

    def close(self) -> None:
        """Free the engine's memory and processes; the next engine starts after this."""
        ...


def tpot_s(first_s: float, last_s: float, tokens: int) -> float | None:
    """Time per output token after the first: (last − first) ÷ (tokens − 1). The one TPOT formula,
    used for the client's and the engine's timestamps alike (as in vLLM's serving benchmark)."""
    return (last_s - first_s) / (tokens - 1) if tokens > 1 else None
