"""The engine API: what benchmarks ask of an engine, and the values that cross it. Pytest-free, import-light.

This module sits at the bottom of the package: ``measure``, ``serving`` and ``accuracy`` talk to an
engine through it alone, never through a backend (``pytest_slm.engines.vllm``, ``.openai``), and it
imports nothing above the checkpoint, device, precision and record values it names.

An engine is built as ``EngineClass(spec, checkpoint, settings, device)`` and then satisfies
:class:`Engine`. What only some engines can do is an optional capability: a ``typing.Protocol``
marked ``runtime_checkable``, asked with ``isinstance`` (never a ``getattr`` probe):

==========================  =================================================  =============================
capability                  members                                            declared in
==========================  =================================================  =============================
:class:`Tokenized`          ``tokenizer`` (Hugging Face)                       here
:class:`Scorable`           ``tokenizer``, ``max_model_len``, ``score``,       here (accuracy runs on a
                            ``complete``                                       :class:`ScoringEngine`)
:class:`LiveFacts`          ``live_facts`` (facts that fill in as it serves)   here
:class:`Preloadable`        class: ``preload()``, ``preload_module``           here
:class:`PrecisionGated`     class: ``unsupported_reason(precision, ...)``      here
:class:`QuantizationAware`  class: ``needs_quantized_checkpoint``              here
``MachineProbed``           ``machine_probe()`` (the reference kernel)         :mod:`pytest_slm.measure.machine`
``ServedLocally``           ``server_processes()`` (CPU time counted as ours)  :mod:`pytest_slm.measure.validity`
``Servable``                ``serve(plans, load)`` (load levels itself)        :mod:`pytest_slm.serving.load`
``ChosenBySettings``        class: ``for_settings(settings)``                  :mod:`pytest_slm.engines.loading`
==========================  =================================================  =============================

The last four name values of the layer that declares them (a probe, a server's processes, a
serving run, the session's settings), so they live there; a backend, which sits above all of
them, imports them from there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pytest_slm.checkpoints.resolve import Checkpoint, slug
from pytest_slm.devices import DeviceChoice
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
    #: the model's config entry (a :class:`pytest_slm.configs.schema.ModelEntry`), carried for the loading
    #: pipeline and the shard planner; no engine reads it, and naming its type would tie this module to
    #: the configs above it
    model_config: Any = field(default=None, hash=False, compare=False, repr=False)

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


def tpot_s(first_s: float, last_s: float, tokens: int) -> float | None:
    """Time per output token after the first: (last − first) ÷ (tokens − 1). The one TPOT formula,
    used for the client's and the engine's timestamps alike (as in vLLM's serving benchmark)."""
    return (last_s - first_s) / (tokens - 1) if tokens > 1 else None


@runtime_checkable
class Engine(Protocol):
    """A loaded model at one precision, ready to generate.

    Implementations: :class:`pytest_slm.engines.vllm.engine.VLLMEngine`,
    :class:`pytest_slm.engines.openai.engine.OpenAIEngine`; a deterministic fake for the plugin's
    own tests lives in ``tests/``. Constructed as ``Engine(spec, checkpoint, settings, device)``
    (``device`` already applied to the process); what only some engines do is a capability (see the
    module docstring).
    """

    kind: str
    spec: EngineSpec
    checkpoint: Checkpoint
    #: the device this process measures on (:mod:`pytest_slm.devices`), chosen before the engine loaded
    device: DeviceChoice

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


# -- capabilities of a loaded engine ------------------------------------------------------------


class TokenizerUnavailable(AttributeError):
    """The engine has a ``tokenizer`` attribute but no tokenizer to give (e.g. a checkpoint without
    tokenizer files). An AttributeError, so the engine reads as one without a tokenizer."""


@runtime_checkable
class Tokenized(Protocol):
    """An engine that exposes the Hugging Face tokenizer of its model (prompt sets of exact token
    lengths, chat templates, lm-eval). Read it through :func:`tokenizer_of`."""

    @property
    def tokenizer(self) -> Any: ...


def tokenizer_of(engine: object) -> Any | None:
    """The engine's tokenizer, or None where it has none: not :class:`Tokenized`, or its tokenizer
    cannot be loaded (:class:`TokenizerUnavailable`)."""
    try:
        return engine.tokenizer if isinstance(engine, Tokenized) else None
    except AttributeError:  # TokenizerUnavailable, raised on a Python whose isinstance reads no property
        return None


@runtime_checkable
class Scorable(Tokenized, Protocol):
    """An engine that answers lm-eval's requests on token prompts: log-likelihoods and completions."""

    @property
    def max_model_len(self) -> int:
        """The longest prompt plus completion the engine takes, in tokens."""
        ...

    def score(self, token_prompts: Sequence[Sequence[int]]) -> list[list[tuple[float, int]]]:
        """For each prompt, (log p(token_i | tokens_<i), argmax token id) for i = 1..n-1."""
        ...

    def complete(
        self, token_prompts: Sequence[Sequence[int]], *, max_tokens: int, stop: Sequence[str], temperature: float = 0.0
    ) -> list[str]:
        """Generate up to ``max_tokens`` after each token prompt, stopping at any of ``stop``."""
        ...


@runtime_checkable
class ScoringEngine(Engine, Scorable, Protocol):
    """An :class:`Engine` that is :class:`Scorable`: what accuracy runs on."""


@runtime_checkable
class LiveFacts(Protocol):
    """An engine whose ``describe()`` holds tallies that keep filling in as it serves (e.g. where
    token counts came from): the keys named here stay live in the report instead of being copied
    at load time."""

    live_facts: tuple[str, ...]


# -- capabilities of an engine class (asked before anything is loaded) ----------------------------


@runtime_checkable
class Preloadable(Protocol):
    """An engine class that imports its heavy library on its own (``preload()``, a classmethod), so
    that import is timed apart from the model's load; ``preload_module`` names the library, whose
    import time is recorded only where this process had not imported it yet."""

    preload_module: str

    def preload(self) -> None: ...


@runtime_checkable
class PrecisionGated(Protocol):
    """An engine class that knows, before anything is quantized, why this machine cannot run a precision."""

    def unsupported_reason(self, precision: Precision, device: DeviceChoice, checkpoint: Path | None) -> str | None:
        """Why ``device`` cannot serve ``precision`` of the checkpoint at ``checkpoint``, or None."""
        ...


@runtime_checkable
class QuantizationAware(Protocol):
    """An engine class that says whether a quantized precision needs a locally quantized checkpoint
    (False: it serves every precision from the source checkpoint, or a server serves its own weights).
    An engine class without this attribute gets the quantized checkpoint."""

    needs_quantized_checkpoint: bool
