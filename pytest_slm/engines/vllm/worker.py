"""Runs inside vLLM's worker processes (loaded through ``worker_extension_cls``).

Exposes the facts only the worker knows (memory held by weights and KV cache, peak
allocation, which kernels the linear layers use, where its start-up went) as plain dicts over
``collective_rpc``, without enabling vLLM's insecure pickling of callables.

vLLM imports this module in each worker before the worker loads the model, so the time of that
import marks the worker as up, and a handler on vLLM's logger catches the figures vLLM logs while the
worker loads: weight loading and, where it compiles, the graph compilation or its load from the cache.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

#: wall-clock time this module was imported: the worker process is up and has imported vLLM
STARTED_AT = time.time()
#: what vLLM logs while a worker starts, and the key each figure is kept under
STARTUP_LOG_LINES = (
    ("weights_s", re.compile(r"Loading weights took ([\d.]+) seconds")),  # the CPU and default loaders
    ("weights_s", re.compile(r"Model loading took .* and ([\d.]+) seconds")),  # the CUDA model runner
    ("compile_warm_s", re.compile(r"Directly load the compiled graph.* took ([\d.]+) s")),
    ("compile_cold_s", re.compile(r"Compiling a graph for .* takes ([\d.]+) s")),
)


class StartupLog(logging.Handler):
    """Keeps the start-up figures vLLM logs in this process: key -> (seconds summed, time of the last)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, tuple[float, float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot format itself is vLLM's business, never ours
            return
        for key, pattern in STARTUP_LOG_LINES:
            found = pattern.search(message)
            if found:
                seconds, _ = self.seen.get(key, (0.0, 0.0))
                self.seen[key] = (seconds + float(found.group(1)), record.created)


STARTUP_LOG = StartupLog()
logging.getLogger("vllm").addHandler(STARTUP_LOG)


def startup_facts(seen: dict[str, tuple[float, float]], started_at: float, eager: bool) -> dict[str, Any]:
    """The worker's start-up as :meth:`SlmWorkerExtension.slm_startup` reports it: when it was up, how long
    the weights took and when they were done, and the compile cache's state (``off`` in eager mode,
    ``cold`` when a graph was compiled, ``warm`` when all came from the cache, else ``unknown``)."""
    out: dict[str, Any] = {"worker_started_at": started_at}
    if "weights_s" in seen:
        out["weights_s"], out["weights_done_at"] = seen["weights_s"]
    if eager:
        out["compile_cache"] = "off"
    elif "compile_cold_s" in seen:
        out["compile_cache"], out["compile_s"] = "cold", seen["compile_cold_s"][0]
    elif "compile_warm_s" in seen:
        out["compile_cache"], out["compile_s"] = "warm", seen["compile_warm_s"][0]
    else:
        out["compile_cache"] = "unknown"
    return out


def _nbytes(obj: Any) -> int:
    if obj is None:
        return 0
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(o) for o in obj.values())
    numel = getattr(obj, "numel", None)
    size = getattr(obj, "element_size", None)
    return int(numel() * size()) if callable(numel) and callable(size) else 0


class SlmWorkerExtension:
    """Mixed into vLLM's worker class; methods are called by name via ``collective_rpc``."""

    model_runner: Any

    def slm_memory(self) -> dict[str, Any]:
        """Weights, KV cache and peak allocated bytes as this worker sees them."""
        import torch

        runner = self.model_runner
        out: dict[str, Any] = {"kv_cache_bytes": _nbytes(getattr(runner, "kv_caches", None))}
        weights = getattr(runner, "model_memory_usage", None)
        if weights:
            out["weights_loaded_bytes"] = int(weights)
        if torch.cuda.is_available():
            out["cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
            out["cuda_peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
        return out

    def slm_startup(self) -> dict[str, Any]:
        """Where this worker's start-up went (see :func:`startup_facts`)."""
        config: Any = getattr(self, "vllm_config", None)
        mode = getattr(getattr(config, "compilation_config", None), "mode", None)
        eager = bool(getattr(getattr(config, "model_config", None), "enforce_eager", False)) or (
            mode is not None and int(mode) == 0
        )
        return startup_facts(dict(STARTUP_LOG.seen), STARTED_AT, eager)

    def slm_kernels(self) -> dict[str, Any]:
        """Which quantization method / scheme / kernel each kind of linear layer uses."""
        model = getattr(self.model_runner, "model", None)
        kinds: dict[str, int] = {}
        if model is not None:
            for module in model.modules():
                qm = getattr(module, "quant_method", None)
                if qm is None or (not hasattr(module, "weight") and not hasattr(module, "scheme")):
                    continue
                parts = [type(qm).__name__]
                scheme = getattr(module, "scheme", None)
                if scheme is not None:
                    parts.append(type(scheme).__name__)
                    kernel = getattr(scheme, "kernel", None)
                    if kernel is not None:
                        parts.append(type(kernel).__name__)
                kernel = getattr(qm, "kernel", None)
                if kernel is not None and scheme is None:
                    parts.append(type(kernel).__name__)
                key = "/".join(parts)
                kinds[key] = kinds.get(key, 0) + 1
        return {"linear_kernels": kinds}

    def slm_kv_cache(self) -> dict[str, Any]:
        """The KV cache vLLM allocated: dtype, blocks, tokens it holds, bytes per token position
        (all layers), and vLLM's own maximum concurrency at ``max_model_len``."""
        vllm_config: Any = getattr(self, "vllm_config", None)
        config = getattr(self.model_runner, "kv_cache_config", None)
        if vllm_config is None or config is None or not config.kv_cache_groups:
            return {}
        from vllm.v1.core.kv_cache_utils import get_max_concurrency_for_kv_cache_config
        from vllm.v1.kv_cache_interface import UniformTypeKVCacheSpecs

        bytes_per_token = 0.0
        block_size = config.kv_cache_groups[0].kv_cache_spec.block_size
        for group in config.kv_cache_groups:
            for layer in group.layer_names:
                spec = group.kv_cache_spec
                if isinstance(spec, UniformTypeKVCacheSpecs):  # the worker's aggregated form
                    spec = spec.kv_cache_specs[layer]
                bytes_per_token += spec.page_size_bytes / spec.block_size
        return {
            "kv_cache_dtype": str(vllm_config.cache_config.cache_dtype),
            "kv_cache_blocks": int(config.num_blocks),
            "kv_cache_block_size": int(block_size),
            "kv_cache_tokens": int(config.num_blocks * block_size),
            "kv_cache_bytes_per_token": bytes_per_token,
            "kv_cache_max_concurrency": float(get_max_concurrency_for_kv_cache_config(vllm_config, config)),
        }
