"""The model × precision × KV-cache dtype matrix that ``slm_engine`` is parametrized over. Pytest-free."""

from __future__ import annotations

from pytest_slm.configs.matrix import engine_args_for, kv_dtypes_for, precisions_for, select, tasks_for
from pytest_slm.configs.schema import ModelsConfig
from pytest_slm.engine_api import EngineSpec
from pytest_slm.parallel import gpus_per_process
from pytest_slm.settings import Settings
from pytest_slm.shard import ShardPlan


def engine_specs(settings: Settings, models_config: ModelsConfig | None = None) -> list[EngineSpec]:
    """Every model × precision × KV-cache dtype, models outermost so one model's engines run back to back.

    A model with a config entry runs its own precisions (narrowed by an explicit ``--precision``)
    and KV-cache dtypes with its engine arguments."""
    specs = [
        EngineSpec(
            model,
            p,
            kv,
            name=entry.name if entry else None,
            engine_args=engine_args_for(settings, entry, p),
            model_config=entry,
        )
        for model, entry in select(settings, models_config)
        for p in precisions_for(settings, entry)
        for kv in kv_dtypes_for(settings, entry)
    ]
    ids = [s.id for s in specs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"two --models entries give the same test id(s) {dupes}; rename a checkpoint directory")
    return specs


def accuracy_tasks(settings: Settings, specs: list[EngineSpec]) -> tuple[str, ...]:
    """Every task any model of the matrix runs, in first-seen order (``slm_task`` is parametrized
    over these; a model's items for tasks it does not run are deselected)."""
    if not specs:
        return settings.accuracy_tasks
    seen: dict[str, None] = {}
    for spec in specs:
        seen.update(dict.fromkeys(tasks_for(settings, spec.model_config)))
    return tuple(seen)


def session_gpus(settings: Settings, models_config: ModelsConfig | None, plan: ShardPlan | None) -> int:
    """GPUs each process of this session takes: the largest tensor × pipeline parallel size among the
    models it runs (its shard's, under ``--slm-shard``), 1 without multi-GPU models."""
    specs = engine_specs(settings, models_config)
    return gpus_per_process(s.engine_args for s in specs if plan is None or s.model_name in plan.models)


#: markers of tests a run has to ask for, and what each marks
ON_REQUEST_MARKERS = {
    "slm_self_check": "the harness checking itself (its overhead against raw vLLM loops, the saturation curve)",
    "slm_serving": "in-process serving levels (--slm-concurrency, --slm-request-rate) and their saturation points",
}


def not_requested(settings: Settings) -> dict[str, str]:
    """The on-request markers this run does not ask for, each with why its tests are left out and what
    runs them. Self-checks run with ``--slm-self-check``; serving levels when ``--slm-concurrency`` or
    ``--slm-request-rate`` is set from any source (the latency tests' single and batch streams answer
    the same question, time to first token and per token, in the quick default); both in the full profile.
    """
    if settings.profile == "full":
        return {}
    out: dict[str, str] = {}
    if not settings.self_check:
        out["slm_self_check"] = (
            "a self-check of the harness, not a figure of the model: --slm-self-check or --slm-profile full runs it"
        )
    if not {"concurrency", "request_rate"} & set(settings.sources):
        out["slm_serving"] = (
            "serving levels on request: the latency tests' single and batch streams measure TTFT and TPOT in the "
            "quick default; --slm-concurrency N.. or --slm-request-rate R.. (or --slm-profile full) runs them"
        )
    return out
