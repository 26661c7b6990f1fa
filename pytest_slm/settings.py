"""One frozen :class:`Settings` object, resolved once per session from the options.

Pytest-free: :func:`resolve` takes a lookup callable that returns the raw value of an
option and where it came from (``--slm-num-runs``, ``environment variable SLM_NUM_RUNS``,
``ini option slm_num_runs``). Errors name the bad value and its source.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pytest_slm.options import OPTIONS, OptionSpec
from pytest_slm.precisions import Precision, UnknownPrecision, resolve_precisions
from pytest_slm.shard import parse_shard

DEFAULT_MODEL = "smollm2-135m"

#: Run-size defaults per profile. "full" is the seed methodology; "quick" finishes the
#: default suite in minutes on a 2-core CPU.
PROFILES: dict[str, dict[str, int]] = {
    # offline_requests: distinct prompts per offline batch; on the 2-core CPU VM SmolLM2-135M's
    # offline output rate stops growing (within 10 %) at 32 concurrent requests: see the saturation bench
    "quick": {"num_warmup": 2, "num_runs": 10, "batch_size": 8, "max_new_tokens": 64, "offline_requests": 32},
    "full": {"num_warmup": 10, "num_runs": 500, "batch_size": 8, "max_new_tokens": 256, "offline_requests": 64},
}

DEFAULT_PROMPT = (
    "You are a helpful assistant. Explain, step by step and in plain words, how a refrigerator keeps "
    "food cold: what the compressor, the condenser, the expansion valve and the evaporator each do, "
    "and why the back of the appliance feels warm."
)

#: KV-cache dtypes vLLM's ``kv_cache_dtype`` accepts that pytest-slm offers as a matrix axis.
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16")

#: Fields a ``@pytest.mark.slm(...)`` marker may override for one test.
MARKER_FIELDS = (
    "num_warmup",
    "num_runs",
    "batch_size",
    "max_new_tokens",
    "offline_requests",
    "prompt",
    "target_ci",
    "max_runs",
)


class SettingsError(ValueError):
    """A bad option value; the message names the value and where it came from."""


def _default_cache_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-slm"


@dataclass(frozen=True)
class Settings:
    """Everything a session needs to know about what to run and how, after precedence."""

    models: tuple[str, ...] = (DEFAULT_MODEL,)
    precisions: tuple[Precision, ...] = field(default_factory=lambda: resolve_precisions(["bf16"]))
    output: Path = Path("slm-results")
    profile: str = "quick"
    num_warmup: int = PROFILES["quick"]["num_warmup"]
    num_runs: int = PROFILES["quick"]["num_runs"]
    batch_size: int = PROFILES["quick"]["batch_size"]
    max_new_tokens: int = PROFILES["quick"]["max_new_tokens"]
    offline_requests: int = PROFILES["quick"]["offline_requests"]
    prompt: str = DEFAULT_PROMPT
    max_model_len: int | None = None
    target_ci: float | None = None
    max_runs: int | None = None
    gpu_memory_utilization: float = 0.9
    gpu_index: int = 0
    prefix_caching: bool = False
    chat_template: str = "auto"
    max_foreign_load: float = 0.15  # a share of the machine's cores (pytest_slm.measure.validity)
    #: time the reference kernel around measured windows (pytest_slm.measure.machine)
    no_machine_check: bool = False
    engine: str = "vllm"
    cache_dir: Path = field(default_factory=lambda: _default_cache_dir(os.environ))
    thresholds_file: Path | None = None
    quantized_models_dir: Path | None = None  # None: <cache_dir>/quantized
    calibration_dataset: str | None = None  # None: the generated calibration set
    calibration_split: str = "train"
    num_calibration_samples: int = 512
    max_sequence_length: int = 2048
    quantize_python: str | None = None  # None: this interpreter
    accuracy_tasks: tuple[str, ...] = ("mmlu", "gsm8k", "hellaswag")
    num_fewshot: int = 5
    #: lm-eval's --apply_chat_template / --fewshot_as_multiturn, for accuracy only (off, as in lm-eval)
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    accuracy_limit: int | float | None = None
    accuracy_batch_size: int = 64
    task_path: Path | None = None
    local_data: Path | None = None
    perplexity_corpus: Path | None = None
    retention_floor: Mapping[str, float] = field(default_factory=lambda: {"*": 0.95})
    log_samples: bool = False
    power_meter: str = "auto"
    energy_window_s: float = 5.0
    energy_idle_s: float = 2.0
    energy_settle_s: float = 3.0
    energy_sample_runs: int = 1
    powercap_root: Path = Path("/sys/class/powercap")
    baseline_dir: Path = Path("baselines")
    save_baseline: bool = False
    baseline_accept: bool = False
    no_compare: bool = False
    alpha: float = 0.05
    min_sessions: int = 3
    confirm: Path | None = None  # --slm-confirm: an earlier results.json of this code
    fail_on_improvement: bool = False
    #: --slm-strict: a gated figure that passed without evidence (inconclusive, no baseline, ...) fails
    strict: bool = False
    tolerance: float = 0.05
    accuracy_tolerance: float = 0.01
    endpoint: str | None = None  # engine openai: None = start vLLM's server per cell
    api_key_env: str | None = None
    openai_api: str = "completions"
    request_timeout_s: float = 600.0
    stall_timeout_s: float = 60.0
    server_startup_timeout_s: float = 300.0
    prompt_set: str = "shipped"
    prompt_cycle: bool = False
    shared_prefix: int = 0
    concurrency: tuple[int, ...] = (1, 8)
    request_rate: tuple[float, ...] = ()
    serving_requests: int = 16
    serving_max_s: float = 120.0
    slo: tuple[str, ...] = ("mlperf-server", "mlperf-interactive")
    client_margin_s: float = 0.010
    kv_cache_dtype: tuple[str, ...] = ("auto",)
    price_per_hour: float | None = None
    wandb: str | None = None  # Weights & Biases project
    models_config: Path | None = None
    shard: tuple[int, int] | None = None  # (index, count), 1-based
    #: per-task item limits from a model's config entry (not an option; see pytest_slm.modelconfig)
    accuracy_task_limits: Mapping[str, int | float] = field(default_factory=dict)
    #: field name -> where its value came from (for error messages and the report)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def quantized_dir(self) -> Path:
        return self.quantized_models_dir or self.cache_dir / "quantized"

    def floor_for(self, task: str) -> float:
        """The retention floor for ``task`` (a per-task entry, else the default)."""
        return self.retention_floor.get(task, self.retention_floor.get("*", 0.95))

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
        parsed = {k: _validate(k, v, source) for k, v in values.items()}
        return replace(self, **parsed, sources={**self.sources, **dict.fromkeys(parsed, source)})


def _to_int(name: str, raw: Any, source: str, minimum: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{source}: {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{source}: {name} must be >= {minimum}, got {value}")
    return value


_MINIMUMS = {
    "num_warmup": 0,
    "num_runs": 1,
    "batch_size": 1,
    "max_new_tokens": 1,
    "offline_requests": 1,
    "max_model_len": 16,
    "gpu_index": 0,
    "num_calibration_samples": 1,
    "max_sequence_length": 16,
    "num_fewshot": 0,
    "accuracy_batch_size": 1,
    "energy_sample_runs": 1,
    "max_runs": 1,
    "min_sessions": 1,
    "shared_prefix": 0,
    "serving_requests": 1,
}


def _to_float(name: str, raw: Any, source: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{source}: {name} must be a number, got {raw!r}") from None


def _validate(name: str, raw: Any, source: str) -> Any:
    if name in _MINIMUMS:
        return _to_int(name, raw, source, _MINIMUMS[name])
    if name == "target_ci":
        target = _to_float(name, raw, source)
        if not 0 < target < 1:
            raise SettingsError(f"{source}: target_ci must be in (0, 1), got {target}")
        return target
    if name == "alpha":
        alpha = _to_float(name, raw, source)
        if not 0 < alpha < 1:
            raise SettingsError(f"{source}: alpha must be in (0, 1), got {alpha}")
        return alpha
    if name in ("tolerance", "accuracy_tolerance"):
        tau = _to_float(name, raw, source)
        if not 0 <= tau < 1:
            raise SettingsError(f"{source}: {name} must be in [0, 1), got {tau}")
        return tau
    if name in ("request_timeout_s", "stall_timeout_s", "server_startup_timeout_s", "serving_max_s", "client_margin_s"):
        seconds = _to_float(name, raw, source)
        if seconds <= 0:
            raise SettingsError(f"{source}: {name} must be > 0, got {seconds}")
        return seconds
    if name in ("energy_window_s", "energy_idle_s", "energy_settle_s", "max_foreign_load"):
        seconds = _to_float(name, raw, source)
        if seconds < 0:
            raise SettingsError(f"{source}: {name} must be >= 0, got {seconds}")
        return seconds
    if name == "gpu_memory_utilization":
        try:
            f = float(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{source}: gpu_memory_utilization must be a number, got {raw!r}") from None
        if not 0.0 < f <= 1.0:
            raise SettingsError(f"{source}: gpu_memory_utilization must be in (0, 1], got {f}")
        return f
    if name == "prompt":
        text = str(raw)
        # not "@file": pytest's argument parser already expands @file into arguments
        if text.startswith("file:"):
            path = Path(text.removeprefix("file:"))
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise SettingsError(f"{source}: cannot read prompt file {path}: {exc.strerror}") from None
        if not text.strip():
            raise SettingsError(f"{source}: the prompt is empty")
        return text
    return raw


def _parse(spec: OptionSpec, raw: Any, source: str) -> Any:
    if spec.field == "precision":
        try:
            return resolve_precisions(raw)
        except UnknownPrecision as exc:
            raise SettingsError(f"{source}: {exc}") from None
    if spec.field == "models":
        models = tuple(dict.fromkeys(str(m) for m in raw))
        if not models:
            raise SettingsError(f"{source}: no model given")
        return models
    if spec.field == "concurrency":
        return tuple(dict.fromkeys(_to_int("concurrency", c, source, 1) for c in raw))
    if spec.field == "request_rate":
        rates = tuple(dict.fromkeys(_to_float("request_rate", r, source) for r in raw))
        if any(not r > 0 for r in rates):
            raise SettingsError(f"{source}: request rates must be > 0 (or inf), got {list(raw)}")
        return rates
    if spec.field == "slo":
        from pytest_slm.serving.slo import SLOError, parse_slo

        for entry in raw:
            try:
                parse_slo(str(entry))
            except SLOError as exc:
                raise SettingsError(f"{source}: {exc}") from None
        return tuple(dict.fromkeys(str(e) for e in raw))
    if spec.field == "kv_cache_dtype":
        dtypes = tuple(dict.fromkeys(str(d).strip().lower() for d in raw))
        bad = [d for d in dtypes if d not in KV_CACHE_DTYPES]
        if bad or not dtypes:
            raise SettingsError(f"{source}: kv cache dtype {bad or raw!r} unknown; valid: {', '.join(KV_CACHE_DTYPES)}")
        return dtypes
    if spec.field == "price_per_hour":
        price = _to_float("price_per_hour", raw, source)
        if price <= 0:
            raise SettingsError(f"{source}: price_per_hour must be > 0, got {price}")
        return price
    if spec.field == "accuracy_tasks":
        return tuple(dict.fromkeys(str(t) for t in raw))
    if spec.field == "accuracy_limit":
        limit = _to_float("accuracy_limit", raw, source)
        if limit <= 0:
            raise SettingsError(f"{source}: accuracy_limit must be > 0, got {raw!r}")
        return int(limit) if limit >= 1 and limit == int(limit) else limit
    if spec.field == "retention_floor":
        floors: dict[str, float] = {}
        for entry in raw:
            task, _, value = str(entry).rpartition("=")
            floor = _to_float("retention_floor", value, source)
            if not 0 < floor <= 1.5:
                raise SettingsError(f"{source}: retention floor {floor} is outside (0, 1.5]")
            floors[task or "*"] = floor
        return {"*": 0.95, **floors}
    if spec.field == "shard":
        try:
            return parse_shard(str(raw))
        except ValueError as exc:
            raise SettingsError(f"{source}: {exc}") from None
    if spec.kind == "bool":
        return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes", "on")
    if spec.choices and raw not in spec.choices:
        raise SettingsError(f"{source}: {spec.field} must be one of {', '.join(spec.choices)}, got {raw!r}")
    if spec.kind == "path":
        return Path(os.path.expanduser(str(raw)))
    return _validate(spec.field, raw, source)


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
        key = "precisions" if spec.field == "precision" else spec.field
        values[key] = _parse(spec, raw, source)
        sources[key] = source
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
    profile = values.get("profile", "quick")
    for knob, default in PROFILES[profile].items():
        values.setdefault(knob, default)
    known = {f.name for f in fields(Settings)}
    assert set(values) <= known, set(values) - known
    return Settings(**values, sources=sources)
