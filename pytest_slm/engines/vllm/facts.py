"""Facts about a loaded vLLM engine: memory figures and the description the report shows. Pytest-free."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from typing import Any

from pytest_slm.record import Metric


def process_tree_peak_rss_bytes(pid: int | None = None) -> dict[str, int]:
    """VmHWM (peak resident set) of this process and each child, from /proc, in bytes."""
    import psutil

    proc = psutil.Process(pid)
    out: dict[str, int] = {}
    for p in [proc, *proc.children(recursive=True)]:
        try:
            with open(f"/proc/{p.pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        out[f"{p.name()}[{p.pid}]"] = int(line.split()[1]) * 1024
        except (OSError, psutil.Error):
            continue  # the process ended meanwhile
    return out


def memory_metrics(worker: Mapping[str, Any], *, on_cuda: bool) -> list[Metric]:
    """Memory figures from the worker's report (``SlmWorkerExtension.slm_memory``).

    CUDA: weights, KV cache, peak allocated with and without the KV pool, peak reserved.
    CPU: KV cache and the peak resident set of the whole process tree (the oneDNN backend
    repacks weights outside ``nn.Parameter``s, so no weights figure is trustworthy there;
    the checkpoint size is reported by the footprint bench instead)."""
    info: dict[str, Any] = {"device": "cuda" if on_cuda else "cpu"}
    kv = int(worker.get("kv_cache_bytes", 0))
    out = [Metric("kv_cache_bytes", kv, "B", False, info=info)]
    if on_cuda:
        if "weights_loaded_bytes" in worker:
            out.append(Metric("weights_bytes", worker["weights_loaded_bytes"], "B", False, info=info))
        peak = int(worker["cuda_peak_allocated_bytes"])
        note = "torch.cuda.max_memory_allocated in the worker"
        out.append(Metric("cuda_peak_allocated_bytes", peak, "B", False, info={**info, "note": note}))
        out.append(
            Metric(
                "cuda_peak_allocated_excl_kv_bytes",
                max(0, peak - kv),
                "B",
                False,
                info={**info, "note": note + ", minus the KV-cache pool vLLM preallocates"},
            )
        )
        out.append(
            Metric(
                "cuda_peak_reserved_bytes",
                int(worker["cuda_peak_reserved_bytes"]),
                "B",
                False,
                info={**info, "note": "torch.cuda.max_memory_reserved: what the caching allocator held"},
            )
        )
    else:
        tree = process_tree_peak_rss_bytes()
        out.append(
            Metric(
                "peak_rss_bytes",
                sum(tree.values()),
                "B",
                False,
                info={
                    **info,
                    "processes": tree,
                    "note": "sum of VmHWM over the pytest process and the engine's processes; includes the KV cache",
                },
            )
        )
    return out


def describe(llm: Any, *, on_cuda: bool, device_name: str | None, engine_args: Mapping[str, Any]) -> dict[str, Any]:
    """Versions, device, dtype, quantization and engine arguments of a loaded engine."""
    import torch
    import vllm

    cfg = llm.llm_engine.model_config
    return {
        "engine": "vllm",
        "vllm": str(vllm.__version__),
        "torch": str(torch.__version__),  # a TorchVersion object does not cross to the xdist controller
        "device": device_name if on_cuda else (platform.processor() or "cpu"),
        "dtype": str(cfg.dtype).replace("torch.", ""),
        "quantization": cfg.quantization,
        "max_model_len": cfg.max_model_len,
        "engine_args": dict(engine_args),
    }


def load_breakdown(started_at: float, ready_at: float, worker: Mapping[str, Any]) -> dict[str, Any]:
    """Where an engine's load went, from the wall-clock times around ``LLM(...)`` in this process and the
    first worker's start-up facts (``SlmWorkerExtension.slm_startup``): ``start_s`` (configuration,
    tokenizer, the engine-core and worker processes started and vLLM imported in them), ``weights_s``
    (as vLLM logged it), ``after_weights_s`` (KV cache sized and allocated, profiling, compilation or
    warm-up, the handshake back) and the compile cache's state. A part that cannot be told is left out."""
    out: dict[str, Any] = {
        "total_s": round(ready_at - started_at, 3),
        "compile_cache": worker.get("compile_cache", "unknown"),
    }
    up = worker.get("worker_started_at")
    if isinstance(up, float) and started_at <= up <= ready_at:
        out["start_s"] = round(up - started_at, 3)
    if isinstance(worker.get("weights_s"), float):
        out["weights_s"] = round(worker["weights_s"], 3)
    done = worker.get("weights_done_at")
    if isinstance(done, float) and started_at <= done <= ready_at:
        out["after_weights_s"] = round(ready_at - done, 3)
    if isinstance(worker.get("compile_s"), float):
        out["compile_s"] = round(worker["compile_s"], 3)
    return out
