"""Runs inside vLLM's worker processes (loaded through ``worker_extension_cls``).

Exposes the facts only the worker knows (memory held by weights and KV cache, peak
allocation, which kernels the linear layers use) as plain dicts over ``collective_rpc``,
without enabling vLLM's insecure pickling of callables.
"""

from __future__ import annotations

from typing import Any


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
