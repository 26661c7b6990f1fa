"""pytest-slm's hooks. Logic lives in the pytest-free modules; this file only wires it in.

Nothing heavy is imported here: vLLM, torch and NVML load inside fixtures, so
``pytest --help`` and ``--collect-only`` stay fast and GPU-free.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_slm import options, results, stash
from pytest_slm.accuracy.power import detectability, items_of
from pytest_slm.compare import confirm, identity, policy
from pytest_slm.compare.gate import STRICT_PREFIX, Gate, SaveReport, strict_failures
from pytest_slm.configs.load import load as load_models_config
from pytest_slm.configs.matrix import select, tasks_for
from pytest_slm.configs.schema import ModelConfigError, ModelsConfig
from pytest_slm.engine_api import EngineSpec
from pytest_slm.fixtures import device_for
from pytest_slm.parametrize import ON_REQUEST_MARKERS, accuracy_tasks, engine_specs, not_requested, session_gpus
from pytest_slm.record import USER_PROPERTY_KEY
from pytest_slm.report import timing
from pytest_slm.report.collector import (
    ATTACHMENT_PROPERTY_KEY,
    ENGINE_PROPERTY_KEY,
    SLM_TEST_PROPERTY_KEY,
    UNMEASURED_PROPERTY_KEY,
    ReportCollector,
    strip_xdist_group,
)
from pytest_slm.report.terminal import header_lines, terminal_lines
from pytest_slm.report.verdicts import gate_lines
from pytest_slm.results import environment
from pytest_slm.settings import Settings, SettingsError, resolve
from pytest_slm.shard import ShardPlan, runs_here
from pytest_slm.thresholds import ThresholdError, ThresholdTable, check, marker_limits


def is_xdist_worker(config: pytest.Config) -> bool:
    """True inside a pytest-xdist worker (reports are written by the controller only)."""
    return hasattr(config, "workerinput")


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slm_threshold(**limits): limits on metrics this test records, e.g. "
        "slm_threshold(ttft_p50_s='<=0.25', output_tokens_per_s='>=100'); a breach fails this test only.",
    )
    config.addinivalue_line(
        "markers",
        "slm_tolerance(**taus): per-metric regression tolerance for baseline comparison, e.g. "
        "slm_tolerance(ttft_p50_s=0.10) (a fraction; accuracy metrics in points as a fraction).",
    )
    for name, what in ON_REQUEST_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {what}; run on request only (see --help)")
    config.addinivalue_line(
        "markers",
        "slm(**settings): per-test run sizes (num_warmup, num_runs, batch_size, max_new_tokens, prompt); "
        "highest precedence.",
    )
    environ = dict(os.environ)
    try:
        settings = resolve(lambda spec: options.read_raw(config, spec, environ))
        thresholds = (
            ThresholdTable.load(settings.thresholds_file) if settings.thresholds_file else ThresholdTable.empty()
        )
    except (SettingsError, ThresholdError) as exc:
        raise pytest.UsageError(f"pytest-slm: {exc}") from None
    settings = _anchor_paths(settings, config)
    try:
        models_config, plan = _scale_out(settings)
    except (ModelConfigError, ValueError) as exc:
        raise pytest.UsageError(f"pytest-slm: {exc}") from None
    config.stash[stash.MODELS_CONFIG] = models_config
    config.stash[stash.SHARD] = plan
    config.stash[stash.SETTINGS] = settings
    config.stash[stash.THRESHOLDS] = thresholds
    config.stash[stash.ENGINE_FACTS] = {}
    env = environment.collect(Path(config.rootpath), settings.run_profile())
    if plan is not None:
        env["shard"] = plan.summary()
    gate = Gate(settings, env)
    if settings.confirm is not None:
        try:
            gate.earlier_run = confirm.load(settings.confirm, env.get("git_commit"), env.get("git_diff"))
            env["confirms"] = gate.earlier_run.chain()
        except confirm.ConfirmError as exc:
            raise pytest.UsageError(f"pytest-slm: {exc}") from None
    config.stash[stash.GATE] = gate
    if config.pluginmanager.hasplugin("benchmark"):  # pytest-benchmark is optional
        from pytest_slm.interop.benchmark_hooks import BenchmarkRecords

        config.pluginmanager.register(BenchmarkRecords(), "slm-benchmark")

    if is_xdist_worker(config) and config.workerinput.get(WORKER_LOADGROUP):  # type: ignore[attr-defined]
        config.option.loadgroup = True  # the worker suffixes node ids with their group, as for --dist loadgroup
    if not is_xdist_worker(config):
        schedule_models_on_one_worker(config)
        collector = ReportCollector(settings.output, env)
        config.pluginmanager.register(ReportHooks(collector), "slm-report")
        if settings.wandb:  # optional: wandb is imported only when asked for
            from pytest_slm.interop.wandb_logger import WandbHooks, WandbUnavailable, require_wandb

            try:
                config.pluginmanager.register(WandbHooks(settings.wandb, require_wandb(), collector), "slm-wandb")
            except WandbUnavailable as exc:
                raise pytest.UsageError(f"pytest-slm: {exc}") from None


def _scale_out(settings: Settings) -> tuple[ModelsConfig | None, ShardPlan | None]:
    """The model config (``--slm-models-config``) and this runner's shard (``--slm-shard``)."""
    models_config = load_models_config(settings.models_config) if settings.models_config else None
    if settings.shard is None:
        return models_config, None
    specs = engine_specs(settings, models_config)
    return models_config, ShardPlan.build(*settings.shard, specs)


WORKER_LOADGROUP = "slm_loadgroup"


def schedule_models_on_one_worker(config: pytest.Config) -> None:
    """Under ``-n N``, schedule by ``xdist_group`` (one model per worker) without the user passing
    ``--dist loadgroup``. xdist turns ``-n`` into ``--dist load``; an explicitly chosen other mode
    (loadscope, worksteal, ...) is kept. Workers re-parse the command line, so they learn it
    through ``workerinput`` (:func:`pytest_configure_node`)."""
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", None) == "load":
        config.option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Tell each xdist worker whether tests are scheduled by group (see :func:`schedule_models_on_one_worker`)."""
    node.workerinput[WORKER_LOADGROUP] = node.config.getvalue("dist") == "loadgroup"


def _anchor_paths(settings: Settings, config: pytest.Config) -> Settings:
    """Relative paths from the ini file are relative to it; the output dir to the rootdir."""
    base = config.inipath.parent if config.inipath else config.rootpath
    fixed: dict[str, Any] = {}
    for spec in options.OPTIONS:
        value = getattr(settings, spec.field, None)
        if spec.kind == "path" and isinstance(value, Path) and not value.is_absolute():
            from_ini = settings.sources.get(spec.field, "").startswith("ini option")
            if from_ini or spec.field in ("output", "baseline_dir", "models_config"):
                fixed[spec.field] = (base if from_ini else Path(config.rootpath)) / value
    return dataclasses.replace(settings, **fixed) if fixed else settings


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = config.stash[stash.SETTINGS]
    models_config = config.stash[stash.MODELS_CONFIG]
    models = [e.name if e else m for m, e in select(s, models_config)] if models_config else s.models
    workers = getattr(config.option, "numprocesses", None)
    return header_lines(
        s,
        models,
        config.stash[stash.SHARD],
        config.stash[stash.GATE].earlier_run,
        workers if isinstance(workers, int) else 0,
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    settings = metafunc.config.stash[stash.SETTINGS]
    try:
        specs = engine_specs(settings, metafunc.config.stash[stash.MODELS_CONFIG])
    except ValueError as exc:
        raise pytest.UsageError(f"pytest-slm: {exc}") from None
    if "slm_engine" in metafunc.fixturenames:
        metafunc.parametrize("slm_engine", specs, ids=[s.id for s in specs], indirect=True, scope="session")
    # every task of any model; a model's items for tasks it does not run are deselected
    all_tasks = list(accuracy_tasks(settings, specs))
    if "slm_task" in metafunc.fixturenames:
        metafunc.parametrize("slm_task", all_tasks, ids=all_tasks)
    if "slm_retention_task" in metafunc.fixturenames:
        tasks = list(dict.fromkeys([*all_tasks, "slm_ppl"]))
        metafunc.parametrize("slm_retention_task", tasks, ids=tasks)
    if "slm_load" in metafunc.fixturenames:  # serving: one test per load level (c8, r4, ...)
        from pytest_slm.serving.session import load_levels

        loads = load_levels(settings)
        metafunc.parametrize("slm_load", loads, ids=[load.id for load in loads])
    if "slm_slo" in metafunc.fixturenames:
        from pytest_slm.slo import parse_slo

        slos = [parse_slo(text) for text in settings.slo]
        metafunc.parametrize("slm_slo", slos, ids=[slo.name for slo in slos])


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Under `-n N`, every test of one model (all its precisions: retention needs the bf16
    # reference in the same process) goes to one worker, which loads each engine once.
    for item in items:
        spec = _engine_spec(item)
        if spec is not None:
            item.add_marker(pytest.mark.xdist_group(spec.model_name))
    keep, drop = _outside_matrix(config, items)
    earlier = config.stash[stash.GATE].earlier_run
    # on-request tests are left out unless asked for; a confirmation reruns every test the earlier run left
    # unsettled whether or not this command line asks for its kind (a failed self-check must not go green)
    rerun = earlier.tests if earlier is not None else {}
    left_out = not_requested(config.stash[stash.SETTINGS])
    marked = {
        m: [i for i in keep if i.get_closest_marker(m) and strip_xdist_group(i.nodeid) not in rerun] for m in left_out
    }
    config.stash[stash.LEFT_OUT_ON_REQUEST] = {m: len(found) for m, found in marked.items() if found}
    out = {id(i) for found in marked.values() for i in found}
    drop += [i for i in keep if id(i) in out]
    keep = [i for i in keep if id(i) not in out]
    if earlier is not None:  # --slm-confirm: only what the earlier run left unsettled
        drop += [i for i in keep if strip_xdist_group(i.nodeid) not in earlier.tests]
        keep = [i for i in keep if strip_xdist_group(i.nodeid) in earlier.tests]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """Which tests the run left out because no option asked for them, and why (each on-request marker);
    for each accuracy task collected, the smallest drop the gate can call with its items."""
    settings = config.stash[stash.SETTINGS]
    why = not_requested(settings)
    counts = config.stash.get(stash.LEFT_OUT_ON_REQUEST, {})
    lines = [f"slm: {n} test(s) marked {name} left out: {why[name]}" for name, n in counts.items()]
    tasks = dict.fromkeys(task for item in items if isinstance(task := _param(item, "slm_task"), str))
    alpha = config.stash[stash.GATE].alpha if stash.GATE in config.stash else settings.alpha
    for task in tasks:
        limit = settings.accuracy_task_limits.get(task, settings.accuracy_limit)
        lines.append("slm: accuracy " + detectability(task, items_of(task, limit, settings.local_data), alpha))
    return lines


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """``--slm-confirm`` of a run that left nothing unsettled runs no test, and that is a success."""
    earlier = session.config.stash[stash.GATE].earlier_run if stash.GATE in session.config.stash else None
    if earlier is not None and not earlier.tests and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


def _outside_matrix(config: pytest.Config, items: list[pytest.Item]) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """Split off items of other shards (``--slm-shard``) and of tasks a model's config does not run."""
    settings, plan = config.stash[stash.SETTINGS], config.stash[stash.SHARD]
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        spec = params.get("slm_engine")
        if isinstance(spec, EngineSpec):
            tasks = tasks_for(settings, spec.model_config)
            here = runs_here(plan, spec.model_name, tasks, params.get("slm_task"), params.get("slm_retention_task"))
        else:
            here = runs_here(plan, None)
        (keep if here else drop).append(item)
    return keep, drop


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` on a GPU machine: one worker per visible GPU, or per k GPUs when a model's engine spans
    k (tensor × pipeline parallel); xdist's CPU count elsewhere."""
    from pytest_slm import devices

    try:
        gpus = devices.visible_gpus(devices.nvml_gpus(), os.environ.get("CUDA_VISIBLE_DEVICES"))
    except devices.DeviceError:
        return None
    if not gpus:
        return None
    try:  # xdist asks before pytest_configure: read the options here
        settings = _anchor_paths(resolve(lambda spec: options.read_raw(config, spec, dict(os.environ))), config)
        per_process = session_gpus(settings, *_scale_out(settings))
    except (SettingsError, ModelConfigError, ValueError):
        per_process = 1  # pytest_configure reports the bad option
    return max(1, len(gpus) // per_process)


@pytest.hookimpl(tryfirst=True)  # before the terminal reports the collection (the accuracy lines use it)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Size the gate's family: the gated baseline entries the collected tests can meet."""
    if not session.items or session.config.option.collectonly:
        return
    tests = []
    for item in session.items:
        spec = _engine_spec(item)
        if spec is not None:
            tests.append((spec.model_name, spec.precision.name, baseline_key(item, spec.base_id), spec.layout.label))
    if tests:
        # the device first: the baselines to count are those of the GPU this process measures on
        # (a bad selection errors the tests that need the device, with the reason: see slm_device)
        with contextlib.suppress(pytest.UsageError):
            device_for(session.config, session.config.stash[stash.SETTINGS])
        session.config.stash[stash.GATE].plan(tests, _other_shards(session.config))


def _other_shards(config: pytest.Config) -> list[tuple[str, str, str | None]]:
    """The (model, precision, layout) cells the other shards of ``--slm-shard`` run: the gate's family
    spans the whole split, so N shards keep one false-alarm level together, not N."""
    plan = config.stash[stash.SHARD]
    if plan is None:
        return []
    return plan.other_cells(engine_specs(config.stash[stash.SETTINGS], config.stash[stash.MODELS_CONFIG]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """After the test body: attach its records to the report, then check validity, thresholds
    and the baseline. An invalid measurement fails as invalid; it is never compared."""
    ctx = item.stash.get(stash.CONTEXT, None)
    try:
        result = yield
    except BaseException:
        if ctx is not None:
            _attach(item, ctx, {})
        raise
    if ctx is None:
        return result
    markers = {}
    for mark in reversed(list(item.iter_markers("slm_threshold"))):  # closest marker wins
        try:
            markers.update(marker_limits(mark.kwargs, f"@pytest.mark.slm_threshold on {item.nodeid}"))
        except ThresholdError as exc:
            _attach(item, ctx, {})
            raise pytest.UsageError(str(exc)) from None
    limits = item.config.stash[stash.THRESHOLDS].limits_for(ctx.context.get("engine_id"), markers)
    applied, breaches = check(ctx.metrics, limits)
    gate: Gate = item.config.stash[stash.GATE]
    key = baseline_key(item, ctx.spec.base_id if ctx.spec is not None else ctx.context.get("engine_id"))
    identities = identity.figure_identities(_engine_facts(item, ctx), ctx.metrics)
    judged = gate.compare(ctx.metrics, ctx.context, key, _tolerances(item), identities, ctx.invalid_reasons)
    for reason in judged.invalid:  # the machine moved since the baseline: this window decides nothing
        ctx.invalid(reason)
    _attach(item, ctx, {name: str(limit) for name, limit in applied.items()}, judged.rows, key, identities)
    missing: list[dict[str, Any]] = []
    if ctx.spec is not None and "model" in ctx.context:
        missing = gate.unmeasured(ctx.context["model"], ctx.context["precision"], ctx.context.get("parallel"), key,
                                  (m.name for m in ctx.metrics), "not recorded")  # fmt: skip
        if missing:
            item.user_properties.append((UNMEASURED_PROPERTY_KEY, missing))
    if ctx.invalid_reasons:
        if judged.stood:  # a confirmation's void window: the earlier run's passing verdicts stand
            return result
        pytest.fail(results.INVALID_PREFIX + "; ".join(ctx.invalid_reasons), pytrace=False)
    failures = [b.message() for b in breaches] + judged.problems
    if gate.settings.strict:
        failures += strict_failures(ctx.metrics, judged.rows, missing, compared=not gate.settings.no_compare)
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    return result


#: fixtures whose tests are pytest-slm's: their skips are reported with the reason
SLM_FIXTURES = ("slm", "slm_engine", "slm_runs", "slm_accuracy", "power_meter", "slm_engine_facts")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Mark the reports of tests that use pytest-slm's fixtures (a plain test's skip is not ours to report)."""
    report = yield
    if any(name in SLM_FIXTURES for name in getattr(item, "fixturenames", ())):
        report.user_properties.append((SLM_TEST_PROPERTY_KEY, True))
    spec = _engine_spec(item)
    if report.skipped and report.when in ("setup", "call") and spec is not None and not hasattr(report, "wasxfail"):
        gate: Gate = item.config.stash[stash.GATE]
        missing = gate.unmeasured(spec.model_name, spec.precision.name, spec.layout.label,
                                  baseline_key(item, spec.base_id), (), "skipped")  # fmt: skip
        if missing:
            report.user_properties.append((UNMEASURED_PROPERTY_KEY, missing))
            if gate.settings.strict:  # the baseline measured this test: a skip now is not a pass
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                reason = str(reason).removeprefix("Skipped: ")
                report.outcome = "failed"
                report.longrepr = (
                    f"{STRICT_PREFIX}skipped ({reason}), but the baseline holds {len(missing)} gated figure(s) "
                    f"of this test: {', '.join(u['metric'] for u in missing)} ({missing[0]['file']})"
                )
    return report


def _param(item: pytest.Item, name: str) -> Any:
    """The value ``item`` is parametrized with for ``name``, or None."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get(name) if callspec is not None else None


def _engine_spec(item: pytest.Item) -> EngineSpec | None:
    spec = _param(item, "slm_engine")
    return spec if isinstance(spec, EngineSpec) else None


def _engine_facts(item: pytest.Item, ctx: Any) -> dict[str, Any] | None:
    engine_id = ctx.context.get("engine_id")
    return item.config.stash[stash.ENGINE_FACTS].get(engine_id) if engine_id else None


def _tolerances(item: pytest.Item) -> dict[str, float]:
    out: dict[str, float] = {}
    for mark in reversed(list(item.iter_markers("slm_tolerance"))):
        out.update({k: float(v) for k, v in mark.kwargs.items()})
    return out


def baseline_key(item: pytest.Item, engine_id: str | None) -> str:
    """The test's identity across engines (:func:`pytest_slm.compare.identity.baseline_key`)."""
    callspec = getattr(item, "callspec", None)
    params = callspec.id if callspec is not None else ""
    return identity.baseline_key(item.path.name, getattr(item, "originalname", item.name), params, engine_id)


def _attach(
    item: pytest.Item,
    ctx: Any,
    applied: dict[str, str],
    comparisons: dict[str, Any] | None = None,
    key: str | None = None,
    identities: dict[str, dict[str, Any]] | None = None,
) -> None:
    """The test's rows (:func:`pytest_slm.results.record_rows`), attachments and engine facts travel to
    the report as user properties (xdist replays them on the controller)."""
    rows = results.record_rows(
        ctx.context,
        ctx.metrics,
        is_gated=policy.is_gated,
        workload_id=identity.digest,
        invalid_reasons=ctx.invalid_reasons,
        checked=bool(ctx.checked_windows),
        compared=not item.config.stash[stash.SETTINGS].no_compare,
        thresholds=applied,
        comparisons=comparisons,
        key=key,
        identities=identities,
    )
    item.user_properties.append((USER_PROPERTY_KEY, rows))
    for relpath, data in ctx.attachments.items():
        item.user_properties.append((ATTACHMENT_PROPERTY_KEY, {"path": relpath, "rows": data}))
    facts = _engine_facts(item, ctx)
    if facts is not None:
        item.user_properties.append((ENGINE_PROPERTY_KEY, facts))


class ReportHooks:
    """Controller-only hooks around the :class:`ReportCollector` (registered like junitxml's)."""

    def __init__(self, collector: ReportCollector) -> None:
        self.collector = collector
        self.saved: SaveReport | None = None
        self.gate_lines: list[str] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not session.config.option.collectonly:  # under xdist the workers collect: see below
            ours = any(name in SLM_FIXTURES for item in session.items for name in getattr(item, "fixturenames", ()))
            self.collector.collected([item.nodeid for item in session.items], ours)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist, what a worker collected (after its deselection): every test it will run. The
        controller learns which are pytest-slm's from their reports (results.json follows the first)."""
        self.collector.collected(ids, ours=False)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        reason = None
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        self.collector.add_report(
            report.nodeid, report.when, report.outcome, list(report.user_properties), reason, report.duration
        )

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        gate: Gate = session.config.stash[stash.GATE]
        if gate.settings.save_baseline:
            self.saved = gate.save(self.collector.records, self.collector.environment.get("engines"))
        if self.collector.records or self.collector.skipped or (self.collector.tests and self.collector.ours):
            # the baseline fingerprint, so `pytest-slm diff` finds this run's baseline directory
            self.collector.environment["fingerprint"] = gate.fingerprint
            self.collector.flush()
            plan = session.config.stash[stash.SHARD]
            self.gate_lines = gate_lines(
                self.collector.records,
                gate.settings.alpha,
                self.saved.written if self.saved else None,
                self.saved.not_written if self.saved else (),
                unmeasured=self.collector.unmeasured,
                shards=plan.count if plan is not None else 1,
            )
            if self.saved is not None:
                self.gate_lines += [f"baseline kept aside: {line}" for line in self.saved.set_aside]
            self.collector.publish_step_summary(self.gate_lines)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.collector.markdown:
            return
        terminalreporter.write_sep("=", "pytest-slm results")
        for line in terminal_lines(self.collector.records, self.collector.skipped, self.collector.output):
            terminalreporter.write_line(line)
        cost = timing.terminal_line(self.collector.tests)
        if cost:
            terminalreporter.write_line(cost)
        if self.gate_lines:
            terminalreporter.write_sep("-", "pytest-slm gate")
            for line in self.gate_lines:
                terminalreporter.write_line(line)
