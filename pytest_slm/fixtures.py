"""The fixtures pytest-slm provides. Registered through the ``pytest11`` entry point.

Data flow: ``slm_settings`` (options, resolved once) -> ``slm_engine`` (one loaded engine
per model × precision, parametrized by the plugin) -> ``slm_runs`` (measured workloads,
memoized per engine) -> ``slm`` (the per-test recorder; the plugin checks thresholds and
reports what it recorded).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_slm import devices, stash
from pytest_slm.engine_api import Engine, EngineSpec, Scorable, tokenizer_of
from pytest_slm.measure.context import BenchContext, HandOut, RunCache, Window
from pytest_slm.settings import Settings, SettingsError


@pytest.fixture(scope="session")
def slm_settings(pytestconfig: pytest.Config) -> Settings:
    """The session's pytest-slm settings (models, precisions, run sizes, paths), resolved
    once from marker > command line > environment > ini > profile default."""
    return pytestconfig.stash[stash.SETTINGS]


@pytest.fixture(scope="session")
def slm_device(pytestconfig: pytest.Config, slm_settings: Settings) -> devices.DeviceChoice:
    """The device this process measures on, chosen once before any engine loads and read by the
    engine, the power meter and precision gating alike: ``--slm-gpu-index`` in a single process,
    GPU *i* for pytest-xdist worker *i*, the CPU where no GPU is visible."""
    return device_for(pytestconfig, slm_settings)


def device_for(config: pytest.Config, settings: Settings) -> devices.DeviceChoice:
    """Choose (once per process) and apply this process's device; a bad selection is a usage error."""
    choice = config.stash.get(stash.DEVICE, None)
    if choice is None:
        from pytest_slm.parametrize import session_gpus

        visible_env = os.environ.get("CUDA_VISIBLE_DEVICES")
        try:
            gpus = devices.visible_gpus(devices.nvml_gpus(), visible_env)
            choice = devices.choose(
                gpus,
                gpu_index=settings.gpu_index,
                gpu_index_source=settings.sources.get("gpu_index"),
                worker=devices.worker_position(getattr(config, "workerinput", None)),
                cuda_visible_devices=visible_env,
                # a model on tensor x pipeline parallel k takes k GPUs of one process (pytest_slm.parallel)
                per_process=session_gpus(settings, config.stash[stash.MODELS_CONFIG], config.stash[stash.SHARD]),
            )
        except devices.DeviceError as exc:
            raise pytest.UsageError(f"pytest-slm: {exc}") from None
        devices.apply(choice)
        config.stash[stash.DEVICE] = choice
        if choice.gpu is not None:  # baselines are filed under the GPU this process measures on
            config.stash[stash.GATE].device_gpu_name = choice.gpu.name
    return choice


@pytest.fixture(scope="session")
def slm_engine(
    request: pytest.FixtureRequest, slm_settings: Settings, slm_device: devices.DeviceChoice
) -> Iterator[Engine]:
    """A loaded engine for one model × precision (vLLM unless ``--slm-engine`` says otherwise).

    Parametrized by pytest-slm over ``--models`` × ``--precision`` with ids such as
    ``smollm2-135m-bf16``. Loaded once per session per cell and closed before the next
    cell's engine starts; tests using the same cell run together.
    """
    spec = getattr(request, "param", None)  # a FixtureRequest has ``param`` only when parametrized
    if not isinstance(spec, EngineSpec):
        raise pytest.UsageError("slm_engine is parametrized by pytest-slm; do not parametrize it yourself")
    from pytest_slm.engines.loading import EngineUnsupported, load_engine
    from pytest_slm.measure.chat import ChatTemplateError

    try:
        loaded = load_engine(spec, slm_settings, slm_device, progress=_live_printer(request.config))
    except EngineUnsupported as exc:
        pytest.skip(str(exc))
    except ChatTemplateError as exc:
        raise pytest.UsageError(str(exc)) from None
    request.config.stash.setdefault(stash.ENGINE_FACTS, {})[spec.id] = loaded.facts
    try:
        yield loaded.engine
    finally:
        loaded.engine.close()


def _live_printer(config: pytest.Config) -> Callable[[str], None]:
    """Print quantization progress past pytest's output capture (it takes minutes on big models)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")

    def say(line: str) -> None:
        if reporter is None:
            return
        if capman is not None:
            with capman.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    return say


def _to_running_test(config: pytest.Config) -> HandOut:
    """What a session-scoped run cache calls with each run it hands out: the running test's ``slm``
    context (``stash.RUNNING_CONTEXT``) applies the run's validity. The caches need not depend on
    ``slm``; a run handed out while no test holds ``slm`` (a fixture's setup) applies to no test."""

    def hand_out(window: Window) -> None:
        ctx = config.stash.get(stash.RUNNING_CONTEXT, None)
        if ctx is not None:
            ctx.observe(window)

    return hand_out


@pytest.fixture(scope="session")
def slm_runs(request: pytest.FixtureRequest, slm_engine: Engine, slm_settings: Settings) -> RunCache:
    """Measured workloads on the current engine, memoized: the TTFT, TPOT, ITL and E2E
    tests of one workload share one streaming run. Each run is bracketed by the reference kernel
    (``--slm-no-machine-check`` turns it off). A run's validity applies to every test that takes it
    (``slm.validate(run)`` is implied), so figures derived from it are invalid with it;
    ``slm_runs.offline(w, inherit_validity=False)`` takes a run without (e.g. only to warm the engine)."""
    return RunCache(
        slm_engine, machine_check=not slm_settings.no_machine_check, on_handout=_to_running_test(request.config)
    )


@pytest.fixture(scope="session")
def slm_serving(request: pytest.FixtureRequest, slm_engine: Engine, slm_settings: Settings) -> Any:
    """Serving load levels on the current engine, memoized (:class:`pytest_slm.serving.session.ServingSession`):
    ``slm_serving.run(load)`` serves one level of ``--slm-concurrency`` / ``--slm-request-rate`` with
    the ``--slm-prompt-set`` prompts; the level tests and the saturation test share the runs. A level's
    validity (the client's own check, foreign load, the reference kernel) applies to every test that
    takes it, its reasons labelled with the level (``c8: ...``)."""
    from pytest_slm.serving.session import ServingSession

    chat = request.config.stash[stash.ENGINE_FACTS].get(slm_engine.spec.id, {}).get("chat_template")
    return ServingSession(
        slm_engine,
        slm_settings,
        chat_tokenizer=tokenizer_of(slm_engine) if chat else None,
        on_handout=_to_running_test(request.config),
    )


@pytest.fixture(scope="session")
def power_meter(slm_settings: Settings, slm_device: devices.DeviceChoice) -> Iterator[Any]:
    """The energy meter for this machine (``--slm-power-meter``): NVML's energy counter on the GPU
    this process measures on (``slm_device``), or RAPL on CPUs. Tests using it are skipped, with
    the reason, where neither is available; latency and accuracy tests are unaffected."""
    from pytest_slm.energy.meters import MeterUnavailable, open_meter

    try:
        meter = open_meter(
            slm_settings.power_meter,
            gpu_uuid=slm_device.gpu.uuid if slm_device.gpu else None,
            powercap_root=slm_settings.powercap_root,
        )
    except MeterUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield meter
    finally:
        meter.close()


@pytest.fixture(scope="session")
def slm_memory_bandwidth(
    request: pytest.FixtureRequest, slm_settings: Settings, slm_device: devices.DeviceChoice
) -> Any:
    """The achievable memory bandwidth of this process's device (STREAM copy and triad with torch),
    measured once per baseline fingerprint and cached under ``--slm-cache-dir``/bandwidth."""
    from pytest_slm.measure.bandwidth import cached_bandwidth

    gate = request.config.stash[stash.GATE]
    return cached_bandwidth(slm_settings.cache_dir, gate.fingerprint, "cuda" if slm_device.on_cuda else "cpu")


@pytest.fixture(scope="session")
def slm_task_manager(slm_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """lm-eval's ``TaskManager`` with the local tasks (gsm8k_local, slm_mc, slm_ppl) and
    ``--slm-task-path`` on its include path."""
    from pytest_slm.accuracy.evaluate import task_manager
    from pytest_slm.accuracy.tasks import write_local_tasks

    local = write_local_tasks(
        tmp_path_factory.mktemp("slm-tasks"), slm_settings.local_data, slm_settings.perplexity_corpus
    )
    return task_manager([local, *([slm_settings.task_path] if slm_settings.task_path else [])])


@pytest.fixture(scope="session")
def slm_accuracy(
    request: pytest.FixtureRequest, slm_engine: Engine, slm_task_manager: Any, slm_settings: Settings
) -> Any:
    """Accuracy on the current engine through lm-eval (same engine as the latency tests):
    ``slm_accuracy.run(task)`` evaluates once per engine and returns metrics with stderr.
    Prompts follow lm-eval's convention: no chat template unless ``--slm-apply-chat-template``
    (``--slm-chat-template`` is for the speed workloads only)."""
    from pytest_slm.accuracy.runner import AccuracyRunner
    from pytest_slm.configs.matrix import settings_for

    if not isinstance(slm_engine, Scorable):
        raise TypeError(
            f"the {slm_engine.kind!r} engine cannot answer lm-eval's requests: accuracy needs an engine with a "
            "tokenizer, max_model_len, score() and complete() (pytest_slm.engine_api.Scorable)"
        )
    references = request.config.stash.setdefault(stash.ACCURACY_REFERENCES, {})
    settings = settings_for(slm_settings, slm_engine.spec.model_config)  # the model's tasks and limits
    return AccuracyRunner(slm_engine, slm_task_manager, settings, references)


@pytest.fixture(scope="session")
def slm_speed_references(pytestconfig: pytest.Config) -> dict[tuple[str, str], float]:
    """The session's bf16 speed figures by (model, metric), for the speed-up of quantized precisions
    (filled by the bf16 cell's throughput and latency tests, read by ``*_over_bf16`` tests)."""
    return pytestconfig.stash.setdefault(stash.SPEED_REFERENCES, {})


@pytest.fixture
def slm_engine_facts(request: pytest.FixtureRequest, slm_engine: Engine) -> dict[str, Any]:
    """Facts about the current engine: load time (s), checkpoint path, size and hash, device,
    dtype, and the kernels vLLM picked for linear layers."""
    return request.config.stash[stash.ENGINE_FACTS][slm_engine.spec.id]


@pytest.fixture
def slm(request: pytest.FixtureRequest, slm_settings: Settings) -> Iterator[BenchContext]:
    """The per-test recorder: ``slm.record(name, value, unit=..., higher_is_better=...)``.

    Every recorded metric goes to results.json / results.md with its unit and direction,
    and is checked against ``slm_threshold`` markers and the thresholds file after the test
    body; a breach fails this test only. ``slm.settings`` has this test's run sizes (after
    ``@pytest.mark.slm(...)`` overrides) and ``slm.workload("single" | "batch")`` the
    request shape built from them. Every run ``slm_runs`` or ``slm_serving`` hands out during
    the test makes its figures invalid when the run's window was (validity by default);
    ``slm.checked_windows`` counts the windows checked, 0 for figures no window backs.
    """
    settings = slm_settings
    marker = request.node.get_closest_marker("slm")
    if marker is not None:
        try:
            settings = settings.override(marker.kwargs, f"@pytest.mark.slm on {request.node.nodeid}")
        except SettingsError as exc:
            raise pytest.UsageError(str(exc)) from None
    callspec = getattr(request.node, "callspec", None)
    spec = callspec.params.get("slm_engine") if callspec is not None else None
    context: dict[str, Any] = {}
    if isinstance(spec, EngineSpec):
        context = {
            "model": spec.model_name,
            "precision": spec.precision.name,
            "engine_id": spec.id,
            "parallel": spec.layout.label,
            "kv_cache_dtype": spec.kv_cache_dtype,
        }
    chat_tokenizer = None
    if isinstance(spec, EngineSpec) and "slm_engine" in request.fixturenames:
        engine = request.getfixturevalue("slm_engine")  # session-scoped: already loaded for this cell
        if request.config.stash[stash.ENGINE_FACTS].get(spec.id, {}).get("chat_template"):
            chat_tokenizer = tokenizer_of(engine)
    ctx = BenchContext(
        context=context,
        settings=settings,
        spec=spec if isinstance(spec, EngineSpec) else None,
        chat_tokenizer=chat_tokenizer,
    )
    request.node.stash[stash.CONTEXT] = ctx
    request.config.stash[stash.RUNNING_CONTEXT] = ctx
    try:
        yield ctx
    finally:
        if request.config.stash.get(stash.RUNNING_CONTEXT, None) is ctx:
            del request.config.stash[stash.RUNNING_CONTEXT]
