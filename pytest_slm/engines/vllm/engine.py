"""The vLLM backend: one in-process ``vllm.LLM`` per model × precision.

This module holds the engine's life cycle and its entry points; the jobs around it live next to
it (see :mod:`pytest_slm.engines.vllm`). Besides :class:`~pytest_slm.engine_api.Engine` it has the
capabilities ``Preloadable``, ``PrecisionGated``, ``Scorable`` (:mod:`pytest_slm.engine_api`),
``Servable`` (:mod:`pytest_slm.serving.load`) and ``MachineProbed`` (:mod:`pytest_slm.measure.machine`).
The device was chosen and applied before this module imports vLLM (:mod:`pytest_slm.devices`).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_slm.checkpoints.resolve import Checkpoint
from pytest_slm.devices import DeviceChoice
from pytest_slm.engine_api import BatchOutput, EngineSpec, Samplings, StreamTrace, per_prompt
from pytest_slm.engines.vllm import args as vllm_args
from pytest_slm.engines.vllm import facts as vllm_facts
from pytest_slm.engines.vllm import scoring as vllm_scoring
from pytest_slm.engines.vllm.gating import CPU_FALLBACK_NOTES, execution_note, padded_layers, unsupported_reason
from pytest_slm.engines.vllm.serve import serve_llm_engine
from pytest_slm.engines.vllm.stream import stream_requests
from pytest_slm.measure.machine import Probe
from pytest_slm.precisions import Precision
from pytest_slm.record import Metric
from pytest_slm.serving.load import LoadSpec, PlannedRequest, ServingRun
from pytest_slm.settings import Settings


def marlin_pads_misfit_layers() -> bool:
    """Whether the installed vLLM zero-pads layers that do not fit Marlin's tiles (newer releases)."""
    try:
        from vllm.model_executor.layers.quantization.utils import marlin_utils
    except Exception:  # no CUDA build, or the module moved: assume the strict rule
        return False
    return hasattr(marlin_utils, "marlin_padded_nk")


class VLLMEngine:
    """A loaded vLLM engine (see module docstring). Construct, use, then :meth:`close`."""

    kind = "vllm"

    #: the module :meth:`preload` imports (its import time is recorded only if this process had not)
    preload_module = "vllm.entrypoints.llm"

    @classmethod
    def preload(cls) -> None:
        """Import vLLM and its ``LLM`` entry point (seconds each on a CPU: ``import vllm`` alone leaves the
        entry point to be imported on first use, which then counted in the engine's load time)."""
        from vllm import LLM  # noqa: F401

    @classmethod
    def unsupported_reason(cls, precision: Precision, device: DeviceChoice, checkpoint: Path | None) -> str | None:
        """Why this device cannot serve ``precision`` (checked before quantizing), or None."""
        if not device.on_cuda or device.gpu is None:
            return unsupported_reason(precision, None)
        shapes = group = None
        if checkpoint is not None and precision.quantized:
            from pytest_slm.checkpoints.recipes import choose_group_size, linear_shapes

            shapes = linear_shapes(checkpoint)
            group = choose_group_size({k for _, k in shapes.values()})
        return unsupported_reason(
            precision,
            device.gpu.capability,
            device.gpu.name,
            linear_shapes=shapes,
            group_size=group,
            marlin_pads=marlin_pads_misfit_layers() if shapes else False,
        )

    def __init__(self, spec: EngineSpec, checkpoint: Checkpoint, settings: Settings, device: DeviceChoice) -> None:
        self.spec = spec
        self.checkpoint = checkpoint
        self.device = device
        self.on_cuda = device.on_cuda
        self.environment = {} if self.on_cuda else vllm_args.prepare_cpu_environment(os.environ)
        from vllm import LLM

        kwargs = vllm_args.engine_kwargs(spec, checkpoint, settings, on_cuda=self.on_cuda)
        self.engine_args = vllm_args.reported_args(kwargs)
        self.llm: Any = None
        started_at = time.time()  # wall clock: compared with the worker processes' own stamps
        self.llm = LLM(**kwargs)
        ready_at = time.time()
        try:
            worker = self.llm.collective_rpc("slm_startup")[0]
        except Exception as exc:  # a fact only: never lose the engine over it
            worker = {"error": repr(exc)}
        #: where the load went (:func:`pytest_slm.engines.vllm.facts.load_breakdown`)
        self.load_breakdown = vllm_facts.load_breakdown(started_at, ready_at, worker)

    # -- generation -----------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], sampling: Samplings) -> BatchOutput:
        """Offline batch through ``LLM.generate`` (no progress bar)."""
        params = [vllm_args.sampling_params(s, streaming=False) for s in per_prompt(sampling, len(prompts))]
        outs = self.llm.generate(list(prompts), params, use_tqdm=False)
        return BatchOutput(
            requests=len(outs),
            prompt_tokens=sum(len(o.prompt_token_ids or ()) for o in outs),
            output_tokens=sum(len(c.token_ids) for o in outs for c in o.outputs),
            texts=tuple(o.outputs[0].text for o in outs),
            token_ids=tuple(tuple(o.outputs[0].token_ids) for o in outs),
        )

    def stream(self, prompts: Sequence[str], sampling: Samplings) -> list[StreamTrace]:
        """Submit every prompt, then step the engine, timestamping each delta as it arrives."""
        params = [vllm_args.sampling_params(s, streaming=True) for s in per_prompt(sampling, len(prompts))]
        return stream_requests(self.llm.llm_engine, prompts, params)

    def serve(self, plans: Sequence[PlannedRequest], load: LoadSpec) -> ServingRun:
        """A load level on the engine's own step loop: requests join the running ``LLMEngine``
        between steps (:mod:`pytest_slm.engines.vllm.serve`)."""
        return serve_llm_engine(self.llm.llm_engine, plans, load)

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
        return vllm_scoring.score(self.llm, token_prompts)

    def complete(
        self, token_prompts: Sequence[Sequence[int]], *, max_tokens: int, stop: Sequence[str], temperature: float = 0.0
    ) -> list[str]:
        """Generate up to ``max_tokens`` after each token prompt, stopping at any of ``stop``."""
        return vllm_scoring.complete(self.llm, token_prompts, max_tokens=max_tokens, stop=stop, temperature=temperature)

    # -- facts --------------------------------------------------------------------------
    def machine_probe(self) -> Probe | None:
        """The reference kernel timed on this engine's device (:mod:`pytest_slm.measure.machine`)."""
        from pytest_slm.measure.machine import probe

        return probe("cuda" if self.device.on_cuda else "cpu")

    def memory_metrics(self) -> list[Metric]:
        return vllm_facts.memory_metrics(self.llm.collective_rpc("slm_memory")[0], on_cuda=self.on_cuda)

    def describe(self) -> dict[str, Any]:
        desc = vllm_facts.describe(
            self.llm,
            on_cuda=self.on_cuda,
            device_name=self.device.gpu.name if self.device.gpu else None,
            engine_args=self.engine_args,
        )
        desc["device_choice"] = self.device.describe()
        desc["environment"] = self.environment
        desc["load_breakdown"] = self.load_breakdown
        if not self.on_cuda and self.spec.precision.name in CPU_FALLBACK_NOTES:
            desc["fallback"] = CPU_FALLBACK_NOTES[self.spec.precision.name]
        if execution_note(self.spec.precision):
            desc["sparse_execution"] = execution_note(self.spec.precision)
        if self.on_cuda and self.spec.precision.quantized:
            from pytest_slm.checkpoints.recipes import linear_shapes

            padded = padded_layers(linear_shapes(self.checkpoint.path))
            if padded and marlin_pads_misfit_layers():
                desc["marlin_padded_layers"] = padded
        try:
            desc.update(self.llm.collective_rpc("slm_kernels")[0])
            desc.update(self.llm.collective_rpc("slm_kv_cache")[0])
        except Exception as exc:  # facts only; never lose a measurement over them
            desc["linear_kernels_error"] = repr(exc)
        return desc

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is None:  # closed already, or ``LLM(...)`` failed in the constructor
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        finally:
            del llm
            gc.collect()
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
