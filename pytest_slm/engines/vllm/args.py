"""What the vLLM engine is built with: engine arguments and sampling parameters. Pytest-free.

Kept apart from the engine so the arguments are testable without vLLM, and so the report can
state exactly what the engine was given (they are part of a baseline's workload identity).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from pytest_slm.checkpoints.resolve import Checkpoint
from pytest_slm.engine_api import EngineSpec, SamplingSpec
from pytest_slm.settings import Settings

CPU_DEFAULT_MAX_MODEL_LEN = 2048
CPU_DEFAULT_KVCACHE_GIB = "2"
WORKER_EXTENSION = "pytest_slm.engines.vllm.worker.SlmWorkerExtension"


def prepare_cpu_environment(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Environment vLLM's CPU backend reads at start; returns what the run used (for the report)."""
    # vLLM's CPU backend sizes its KV cache from this variable (GiB), not from a memory fraction.
    environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_DEFAULT_KVCACHE_GIB)
    environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
    return {k: environ[k] for k in ("VLLM_CPU_KVCACHE_SPACE",)}


def engine_kwargs(spec: EngineSpec, checkpoint: Checkpoint, settings: Settings, *, on_cuda: bool) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM``: the checkpoint, the precision's dtype, the run's engine settings,
    then the engine arguments of the model's config entry (``spec.engine_args``), which win."""
    kwargs: dict[str, Any] = {
        "model": str(checkpoint.path),
        "tokenizer": str(checkpoint.path),
        "dtype": spec.precision.dtype,
        "seed": 0,
        # Every request pays for its own prefill, so TTFT means the same thing for every prompt;
        # recorded in the workload so a baseline taken with caching on is never compared with this.
        "enable_prefix_caching": settings.prefix_caching,
        "disable_log_stats": False,  # per-request engine timestamps for the cross-checks
        "worker_extension_cls": WORKER_EXTENSION,
    }
    if spec.kv_cache_dtype != "auto":  # vLLM's default; left out so the engine arguments stay as before
        kwargs["kv_cache_dtype"] = spec.kv_cache_dtype
    if on_cuda:
        kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
        if settings.max_model_len:
            kwargs["max_model_len"] = settings.max_model_len
    else:
        kwargs["enforce_eager"] = True  # compilation costs 60-80 s per start on CPU
        kwargs["max_model_len"] = settings.max_model_len or CPU_DEFAULT_MAX_MODEL_LEN
    # the model's config entry (parallel layout, dtype, trust_remote_code, ...): see pytest_slm.configs.matrix
    kwargs.update(spec.engine_args)
    return kwargs


def reported_args(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The engine arguments as the report and the baseline workload show them (no paths)."""
    return {k: v for k, v in kwargs.items() if k not in ("model", "tokenizer", "worker_extension_cls")}


def sampling_params(sampling: SamplingSpec, *, streaming: bool) -> Any:
    """vLLM ``SamplingParams`` for ``sampling`` (DELTA outputs when streaming)."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        max_tokens=sampling.max_new_tokens,
        min_tokens=sampling.max_new_tokens if sampling.ignore_eos else 0,
        ignore_eos=sampling.ignore_eos,
        temperature=sampling.temperature,
        output_kind=RequestOutputKind.DELTA if streaming else RequestOutputKind.FINAL_ONLY,
    )
