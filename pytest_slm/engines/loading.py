"""Loading the engine of one matrix cell: the pipeline behind the ``slm_engine`` fixture. Pytest-free.

:func:`load_engine` runs it in order: the model's own settings (its config entry), the engine class
(``--slm-engine``, then the class's :class:`ChosenBySettings` choice), the source checkpoint, the
precision gate (before anything is quantized: :class:`EngineUnsupported`, which the fixture turns
into a skip), the quantized checkpoint (cached), the engine library's import (timed apart from the
load, once per process), the engine itself (timed), and the facts the report shows about it, ending
with the chat template its prompts are framed with (:class:`~pytest_slm.measure.chat.ChatTemplateError`
for ``--slm-chat-template on`` without one, which the fixture turns into a usage error).

Everything an engine class may or may not do is asked through the capabilities of
:mod:`pytest_slm.engine_api` (and :class:`ChosenBySettings`, which names the settings).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pytest_slm.checkpoints.resolve import Checkpoint, resolve
from pytest_slm.configs.chat_template import chat_template_text
from pytest_slm.configs.checkpoint import check_parameters, hub_token
from pytest_slm.configs.matrix import settings_for
from pytest_slm.devices import DeviceChoice
from pytest_slm.engine_api import (
    Engine,
    EngineSpec,
    LiveFacts,
    PrecisionGated,
    Preloadable,
    QuantizationAware,
    tokenizer_of,
)
from pytest_slm.engines.registry import load_engine_class
from pytest_slm.measure.chat import use_chat_template
from pytest_slm.settings import Settings

#: what an engine class is: called with the cell, its checkpoint, the settings and the device
EngineClass = Callable[[EngineSpec, Checkpoint, Settings, DeviceChoice], Engine]
#: where quantization progress goes (the fixture prints it past pytest's output capture)
Progress = Callable[[str], None]


class EngineUnsupported(Exception):
    """This machine cannot run the cell's precision with this engine; the message says why."""


@runtime_checkable
class ChosenBySettings(Protocol):
    """An engine class that hands over to another class for some settings (the ``openai`` engine:
    its external-endpoint variant when ``--slm-endpoint`` is given)."""

    def for_settings(self, settings: Settings) -> EngineClass: ...


@dataclass
class LoadedEngine:
    """A loaded engine and the facts about it the report shows (plain JSON values, except the
    engine's :class:`~pytest_slm.engine_api.LiveFacts`, which stay the engine's own live objects)."""

    engine: Engine
    facts: dict[str, Any]


def load_engine(
    spec: EngineSpec, settings: Settings, device: DeviceChoice, *, progress: Progress | None = None
) -> LoadedEngine:
    """Load the engine of ``spec`` on ``device`` (already applied to this process); see the module docstring."""
    entry = spec.model_config
    settings = settings_for(settings, entry)  # the model's calibration and accuracy settings
    engine_cls = engine_class(settings)
    checkpoint = resolve(
        spec.model, settings.cache_dir, revision=entry.revision if entry else None, token=hub_token(entry)
    )
    config_facts = {**entry.facts(), "parameter_check": check_parameters(entry, checkpoint.path)} if entry else None
    if isinstance(engine_cls, PrecisionGated) and (
        reason := engine_cls.unsupported_reason(spec.precision, device, checkpoint.path)
    ):
        raise EngineUnsupported(reason)
    checkpoint, checkpoint_meta = quantized(engine_cls, spec, checkpoint, settings, progress)
    import_s = timed_preload(engine_cls)
    t0 = time.perf_counter()
    engine = engine_cls(spec, checkpoint, settings, device)
    load_time_s = time.perf_counter() - t0
    try:
        facts: dict[str, Any] = {
            "id": spec.id,
            "model": spec.model,
            "precision": spec.precision.name,
            "checkpoint": str(checkpoint.path),
            "checkpoint_sha256": checkpoint.sha256,
            "checkpoint_origin": checkpoint.origin,
            "checkpoint_bytes": checkpoint.size_bytes(),
            "load_time_s": load_time_s,
            "import_s": import_s,
            "device_choice": device.describe(),
            "xdist_worker": os.environ.get("PYTEST_XDIST_WORKER"),
            "quantized_checkpoint": checkpoint_meta or None,
            "parallel": spec.layout.to_dict(),
            "model_config": config_facts,
        }
        described = _described(engine, facts)
        facts["chat_template"] = _frame_prompts(engine, spec, settings)
        # facts travel to the xdist controller and into results.json: plain JSON values only
        facts = json.loads(json.dumps(facts, default=str))
        if isinstance(engine, LiveFacts):  # tallies the engine keeps filling in as it serves: kept live
            facts.update({k: described[k] for k in engine.live_facts if k in described})
    except BaseException:
        engine.close()
        raise
    return LoadedEngine(engine, facts)


def engine_class(settings: Settings) -> EngineClass:
    """The engine class ``settings.engine`` names, after its own choice for these settings."""
    engine_cls: EngineClass = load_engine_class(settings.engine)
    if isinstance(engine_cls, ChosenBySettings):  # e.g. openai: its own server or an endpoint
        engine_cls = engine_cls.for_settings(settings)
    return engine_cls


def quantized(
    engine_cls: EngineClass, spec: EngineSpec, source: Checkpoint, settings: Settings, progress: Progress | None
) -> tuple[Checkpoint, dict[str, Any]]:
    """The checkpoint the engine loads, and facts about its quantization: ``source`` itself for an
    unquantized precision or an engine that does not want a local quantized checkpoint
    (:class:`~pytest_slm.engine_api.QuantizationAware`), else the cached quantized one."""
    wanted = engine_cls.needs_quantized_checkpoint if isinstance(engine_cls, QuantizationAware) else True
    if not (spec.precision.quantized and wanted):
        return source, {}
    from pytest_slm.checkpoints.quantize import quantized_checkpoint, read_meta

    source_bytes = source.size_bytes()
    stats: dict[str, Any] = {}
    checkpoint = quantized_checkpoint(
        source, spec.precision, settings, progress=progress, python=settings.quantize_python, stats=stats
    )
    return checkpoint, {**read_meta(checkpoint.path), "source_bytes": source_bytes, **stats}


#: per engine class, seconds its first preload (``import vllm``) took in this process
_PRELOAD_S: dict[str, float | None] = {}


def timed_preload(engine_cls: EngineClass) -> float | None:
    """Import the engine's library apart from loading the model (:class:`~pytest_slm.engine_api.Preloadable`),
    timed once per process: later engines of the process report that first import. None where something
    else imported the library first (an import that took no time is not an import time), or the
    engine class does not preload."""
    if not isinstance(engine_cls, Preloadable):
        return None
    key = f"{engine_cls.__module__}.{engine_cls.__qualname__}"
    if key not in _PRELOAD_S:
        already = engine_cls.preload_module in sys.modules
        t0 = time.perf_counter()
        engine_cls.preload()
        _PRELOAD_S[key] = None if already else time.perf_counter() - t0
    return _PRELOAD_S[key]


def _described(engine: Engine, facts: dict[str, Any]) -> dict[str, Any]:
    """The engine's own ``describe()``, merged into ``facts``; a fact it cannot read never stops the
    measurements (the error is a fact too)."""
    try:
        described = engine.describe()
    except Exception as exc:
        facts["describe_error"] = repr(exc)
        return {}
    facts.update(described)
    return described


def _frame_prompts(engine: Engine, spec: EngineSpec, settings: Settings) -> bool:
    """Give the engine's tokenizer the config entry's chat template (it frames the workloads' and
    lm-eval's prompts too, not only vLLM's ``chat()``), then whether prompts get a chat template
    under ``--slm-chat-template``."""
    template = chat_template_text(spec.engine_args)
    tokenizer = tokenizer_of(engine)
    if template is not None and tokenizer is not None:
        tokenizer.chat_template = template
    return use_chat_template(settings.chat_template, tokenizer, spec.model_name)
