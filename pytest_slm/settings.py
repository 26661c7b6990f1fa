"""One frozen :class:`Settings` object, resolved once per session from the options.

Pytest-free. :func:`resolve` takes a lookup callable that returns the raw value of an
option and where it came from (``--slm-num-runs``, ``environment variable SLM_NUM_RUNS``,
``ini option slm_num_runs``). Each value is read by its option's parser
(:data:`pytest_slm.options.OPTIONS`), and each default is its option's. Errors name the bad
value and its source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pytest_slm.options import OPTION, OPTIONS, PROFILES, RETENTION_FLOOR, BadValue, OptionSpec
from pytest_slm.precisions import Precision

#: Fields a ``@pytest.mark.slm(...)`` marker may override for one test.
MARKER_FIELDS = tuple(spec.attribute for spec in OPTIONS if spec.marker)


class SettingsError(ValueError):
    """A bad option value; the message names the value and where it came from."""


@dataclass(frozen=True)
class Settings:
    """Everything a session needs to know about what to run and how, after precedence.

    Each field but the last two is an option of :data:`pytest_slm.options.OPTIONS`, with its default.
    """

    models: tuple[str, ...] = field(default_factory=OPTION["models"].default_value)
    precisions: tuple[Precision, ...] = field(default_factory=OPTION["precision"].default_value)
    output: Path = field(default_factory=OPTION["output"].default_value)
    profile: str = field(default_factory=OPTION["profile"].default_value)
    num_warmup: int = field(default_factory=OPTION["num_warmup"].default_value)
    num_runs: int = field(default_factory=OPTION["num_runs"].default_value)
    batch_size: int = field(default_factory=OPTION["batch_size"].default_value)
    max_new_tokens: int = field(default_factory=OPTION["max_new_tokens"].default_value)
    offline_requests: int = field(default_factory=OPTION["offline_requests"].default_value)
    prompt: str = field(default_factory=OPTION["prompt"].default_value)
    max_model_len: int | None = field(default_factory=OPTION["max_model_len"].default_value)
    target_ci: float | None = field(default_factory=OPTION["target_ci"].default_value)
    max_runs: int | None = field(default_factory=OPTION["max_runs"].default_value)
    gpu_memory_utilization: float = field(default_factory=OPTION["gpu_memory_utilization"].default_value)
    gpu_index: int = field(default_factory=OPTION["gpu_index"].default_value)
    prefix_caching: bool = field(default_factory=OPTION["prefix_caching"].default_value)
    chat_template: str = field(default_factory=OPTION["chat_template"].default_value)
    max_foreign_load: float = field(
        default_factory=OPTION["max_foreign_load"].default_value
    )  # a share of the machine's cores
    #: time the reference kernel around measured windows (pytest_slm.measure.machine)
    no_machine_check: bool = field(default_factory=OPTION["no_machine_check"].default_value)
    engine: str = field(default_factory=OPTION["engine"].default_value)
    cache_dir: Path = field(default_factory=OPTION["cache_dir"].default_value)
    thresholds_file: Path | None = field(default_factory=OPTION["thresholds_file"].default_value)
    quantized_models_dir: Path | None = field(
        default_factory=OPTION["quantized_models_dir"].default_value
    )  # None: <cache_dir>/quantized
    calibration_dataset: str | None = field(
        default_factory=OPTION["calibration_dataset"].default_value
    )  # None: the generated calibration set
    calibration_split: str = field(default_factory=OPTION["calibration_split"].default_value)
    num_calibration_samples: int = field(default_factory=OPTION["num_calibration_samples"].default_value)
    max_sequence_length: int = field(default_factory=OPTION["max_sequence_length"].default_value)
    quantize_python: str | None = field(
        default_factory=OPTION["quantize_python"].default_value
    )  # None: this interpreter
    accuracy_tasks: tuple[str, ...] = field(default_factory=OPTION["accuracy_tasks"].default_value)
    num_fewshot: int = field(default_factory=OPTION["num_fewshot"].default_value)
    #: lm-eval's --apply_chat_template / --fewshot_as_multiturn, for accuracy only (off, as in lm-eval)
    apply_chat_template: bool = field(default_factory=OPTION["apply_chat_template"].default_value)
    fewshot_as_multiturn: bool = field(default_factory=OPTION["fewshot_as_multiturn"].default_value)
    accuracy_limit: int | float | None = field(default_factory=OPTION["accuracy_limit"].default_value)
    accuracy_batch_size: int = field(default_factory=OPTION["accuracy_batch_size"].default_value)
    task_path: Path | None = field(default_factory=OPTION["task_path"].default_value)
    local_data: Path | None = field(default_factory=OPTION["local_data"].default_value)
    perplexity_corpus: Path | None = field(default_factory=OPTION["perplexity_corpus"].default_value)
    retention_floor: Mapping[str, float] = field(default_factory=OPTION["retention_floor"].default_value)
    log_samples: bool = field(default_factory=OPTION["log_samples"].default_value)
    power_meter: str = field(default_factory=OPTION["power_meter"].default_value)
    energy_window_s: float = field(default_factory=OPTION["energy_window_s"].default_value)
    energy_idle_s: float = field(default_factory=OPTION["energy_idle_s"].default_value)
    energy_settle_s: float = field(default_factory=OPTION["energy_settle_s"].default_value)
    energy_sample_runs: int = field(default_factory=OPTION["energy_sample_runs"].default_value)
    powercap_root: Path = field(default_factory=OPTION["powercap_root"].default_value)
    baseline_dir: Path = field(default_factory=OPTION["baseline_dir"].default_value)
    save_baseline: bool = field(default_factory=OPTION["save_baseline"].default_value)
    baseline_accept: bool = field(default_factory=OPTION["baseline_accept"].default_value)
    no_compare: bool = field(default_factory=OPTION["no_compare"].default_value)
    alpha: float = field(default_factory=OPTION["alpha"].default_value)
    min_sessions: int = field(default_factory=OPTION["min_sessions"].default_value)
    confirm: Path | None = field(
        default_factory=OPTION["confirm"].default_value
    )  # --slm-confirm: an earlier results.json of this code
    fail_on_improvement: bool = field(default_factory=OPTION["fail_on_improvement"].default_value)
    #: --slm-self-check: run the tests marked slm_self_check (the harness checking itself)
    self_check: bool = field(default_factory=OPTION["self_check"].default_value)
    #: --slm-strict: a gated figure that passed without evidence (inconclusive, no baseline, ...) fails
    strict: bool = field(default_factory=OPTION["strict"].default_value)
    tolerance: float = field(default_factory=OPTION["tolerance"].default_value)
    accuracy_tolerance: float = field(default_factory=OPTION["accuracy_tolerance"].default_value)
    endpoint: str | None = field(
        default_factory=OPTION["endpoint"].default_value
    )  # engine openai: None = start vLLM's server per cell
    api_key_env: str | None = field(default_factory=OPTION["api_key_env"].default_value)
    openai_api: str = field(default_factory=OPTION["openai_api"].default_value)
    request_timeout_s: float = field(default_factory=OPTION["request_timeout_s"].default_value)
    stall_timeout_s: float = field(default_factory=OPTION["stall_timeout_s"].default_value)
    server_startup_timeout_s: float = field(default_factory=OPTION["server_startup_timeout_s"].default_value)
    prompt_set: str = field(default_factory=OPTION["prompt_set"].default_value)
    prompt_cycle: bool = field(default_factory=OPTION["prompt_cycle"].default_value)
    shared_prefix: int = field(default_factory=OPTION["shared_prefix"].default_value)
    concurrency: tuple[int, ...] = field(default_factory=OPTION["concurrency"].default_value)
    request_rate: tuple[float, ...] = field(default_factory=OPTION["request_rate"].default_value)
    serving_requests: int = field(default_factory=OPTION["serving_requests"].default_value)
    serving_max_s: float = field(default_factory=OPTION["serving_max_s"].default_value)
    slo: tuple[str, ...] = field(default_factory=OPTION["slo"].default_value)
    client_margin_s: float = field(default_factory=OPTION["client_margin_s"].default_value)
    kv_cache_dtype: tuple[str, ...] = field(default_factory=OPTION["kv_cache_dtype"].default_value)
    price_per_hour: float | None = field(default_factory=OPTION["price_per_hour"].default_value)
    wandb: str | None = field(default_factory=OPTION["wandb"].default_value)  # Weights & Biases project
    models_config: Path | None = field(default_factory=OPTION["models_config"].default_value)
    shard: tuple[int, int] | None = field(default_factory=OPTION["shard"].default_value)  # (index, count), 1-based
    #: per-task item limits from a model's config entry (not an option; see pytest_slm.configs.matrix)
    accuracy_task_limits: Mapping[str, int | float] = field(default_factory=dict)
    #: field name -> where its value came from (for error messages and the report)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def quantized_dir(self) -> Path:
        return self.quantized_models_dir or self.cache_dir / "quantized"

    def floor_for(self, task: str) -> float:
        """The retention floor for ``task`` (a per-task entry, else the default)."""
        return self.retention_floor.get(task, self.retention_floor.get("*", RETENTION_FLOOR))

    def run_profile(self) -> dict[str, Any]:
        """The run-size knobs as the report shows them."""
        return {
            "profile": self.profile,
            "num_warmup": self.num_warmup,
            "num_runs": self.num_runs,
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "offline_requests": self.offline_requests,
            "prompt_chars": len(self.prompt),
            "customized": sorted(k for k in PROFILES[self.profile] if k in self.sources),
        }

    def override(self, values: Mapping[str, Any], source: str) -> Settings:
        """Settings with a marker's run-size overrides applied (highest precedence)."""
        unknown = sorted(set(values) - set(MARKER_FIELDS))
        if unknown:
            raise SettingsError(f"{source}: unknown setting(s) {unknown}; a marker may set {list(MARKER_FIELDS)}")
        parsed = {k: _parse(OPTION[k], v, source) for k, v in values.items()}
        return replace(self, **parsed, sources={**self.sources, **dict.fromkeys(parsed, source)})


def _parse(spec: OptionSpec, raw: Any, source: str) -> Any:
    """``raw`` read by the option's parser; a refusal names where the value came from."""
    try:
        return spec.parse(raw)
    except BadValue as exc:
        raise SettingsError(f"{source}: {exc}") from None


Lookup = Callable[[OptionSpec], "tuple[Any, str] | None"]


def resolve(lookup: Lookup) -> Settings:
    """Build the session's settings from ``lookup`` (CLI > env > ini, done by the caller)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in OPTIONS:
        found = lookup(spec)
        if found is None:
            continue
        raw, source = found
        values[spec.attribute] = _parse(spec, raw, source)
        sources[spec.attribute] = source
    if values.get("confirm") is not None and values.get("save_baseline"):
        # the tests a confirmation reruns were chosen because their figures did not pass: saved as a
        # session, they would make the baseline's spread and centre follow the runs that went wrong
        raise SettingsError(
            f"{sources['confirm']} with {sources['save_baseline']}: a confirmation measures only the tests "
            "whose figures did not pass, a biased sample; save a baseline from a full session instead"
        )
    if values.get("apply_chat_template") and "fewshot_as_multiturn" not in values:
        # lm-eval's own rule: the chat template brings multi-turn few-shot unless that is set false
        values["fewshot_as_multiturn"] = True
        sources["fewshot_as_multiturn"] = sources["apply_chat_template"]
    elif values.get("fewshot_as_multiturn") and not values.get("apply_chat_template"):
        raise SettingsError(
            f"{sources['fewshot_as_multiturn']}: few-shot turns need the chat template (--slm-apply-chat-template), "
            "as in lm-eval"
        )
    profile = values.get("profile", OPTION["profile"].default_value())
    for knob, default in PROFILES[profile].items():
        values.setdefault(knob, default)
    known = {f.name for f in fields(Settings)}
    assert set(values) <= known, set(values) - known
    return Settings(**values, sources=sources)
