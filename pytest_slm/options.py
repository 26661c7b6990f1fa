"""Command-line options, their ini and environment twins, and how each value is read.

One table, :data:`OPTIONS`, declares every setting once: its ``--flag``, its ini key (``slm_<field>``),
its environment variable (``SLM_<FIELD>``), its help, its parser with its bounds, and its default.
:class:`pytest_slm.settings.Settings` takes its defaults from this table and ``--help`` prints the same
default, so the two cannot disagree. Precedence (resolved once, in settings): marker > command line >
environment > ini > profile default > default.

To add an option, add one :class:`OptionSpec` to :data:`OPTIONS` (the help says what it means, without
its default; a parser from this module carries the bounds; the default is given as a user would give
it), and a field of the same name to ``Settings`` whose default is
``field(default_factory=OPTION["<field>"].default_value)``. ``tests/test_options.py`` checks that every
option has its field with that default, and that README.md or a page in docs/ names it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_slm.precisions import UnknownPrecision, resolve_precisions
from pytest_slm.shard import parse_shard

GROUP = "slm"

DEFAULT_MODEL = "smollm2-135m"

#: Run-size defaults per profile. "full" is the seed methodology; "quick" finishes the
#: default suite in minutes on a 2-core CPU.
PROFILES: dict[str, dict[str, int]] = {
    # offline_requests: distinct prompts per offline batch; on the 2-core CPU VM SmolLM2-135M's
    # offline output rate stops growing (within 10 %) at 32 concurrent requests: see the saturation bench
    "quick": {"num_warmup": 2, "num_runs": 10, "batch_size": 8, "max_new_tokens": 64, "offline_requests": 32},
    "full": {"num_warmup": 10, "num_runs": 500, "batch_size": 8, "max_new_tokens": 256, "offline_requests": 64},
}
DEFAULT_PROFILE = "quick"

DEFAULT_PROMPT = (
    "You are a helpful assistant. Explain, step by step and in plain words, how a refrigerator keeps "
    "food cold: what the compressor, the condenser, the expansion valve and the evaporator each do, "
    "and why the back of the appliance feels warm."
)

#: KV-cache dtypes vLLM's ``kv_cache_dtype`` accepts that pytest-slm offers as a matrix axis.
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16")

#: The minimum quantized ÷ bf16 accuracy of a task without a floor of its own.
RETENTION_FLOOR = 0.95


class BadValue(ValueError):
    """A value an option's parser refuses; :mod:`pytest_slm.settings` adds where it came from."""


#: ``parser(name, raw) -> value``: reads one option's raw value (a string from the command line, the
#: environment or the ini file; a list for list options; any value from a marker) or raises BadValue.
Parser = Callable[[str, Any], Any]


# -- parsers: each one turns a raw value into the Settings value, or names what is wrong with it


def verbatim(name: str, raw: Any) -> Any:
    """The value as given."""
    return raw


def path(name: str, raw: Any) -> Path:
    """A path, ``~`` expanded."""
    return Path(os.path.expanduser(str(raw)))


def flag(name: str, raw: Any) -> bool:
    """A switch: true, or one of 1/true/yes/on as text."""
    return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes", "on")


def _to_int(name: str, raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise BadValue(f"{name} must be an integer, got {raw!r}") from None


def _to_float(name: str, raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise BadValue(f"{name} must be a number, got {raw!r}") from None


def integer(minimum: int) -> Parser:
    """An integer of at least ``minimum``."""

    def parse(name: str, raw: Any) -> int:
        value = _to_int(name, raw)
        if value < minimum:
            raise BadValue(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def number(
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> Parser:
    """A number within the given bounds (``above``/``below`` exclusive, ``at_least``/``at_most`` inclusive)."""
    low = above if above is not None else at_least
    high = below if below is not None else at_most
    if high is not None and low is not None:
        bounds = f"in {'(' if above is not None else '['}{low:g}, {high:g}{')' if below is not None else ']'}"
    elif low is not None:
        bounds = f"{'>' if above is not None else '>='} {low:g}"
    else:
        bounds = ""

    def parse(name: str, raw: Any) -> float:
        value = _to_float(name, raw)
        inside = (
            (above is None or value > above)
            and (at_least is None or value >= at_least)
            and (below is None or value < below)
            and (at_most is None or value <= at_most)
        )
        if not inside:
            raise BadValue(f"{name} must be {bounds}, got {value}")
        return value

    return parse


def distinct(name: str, raw: Any) -> tuple[str, ...]:
    """The entries of a list option as text, duplicates dropped, order kept."""
    return tuple(dict.fromkeys(str(entry) for entry in raw))


def models(name: str, raw: Any) -> tuple[str, ...]:
    """Model names, ids or paths; at least one."""
    names = distinct(name, raw)
    if not names:
        raise BadValue("no model given")
    return names


def precisions(name: str, raw: Any) -> Any:
    """Precision names and aliases, ``all`` expanded (:func:`pytest_slm.precisions.resolve_precisions`)."""
    try:
        return resolve_precisions(raw)
    except UnknownPrecision as exc:
        raise BadValue(str(exc)) from None


def prompt(name: str, raw: Any) -> str:
    """The prompt text, or ``file:PATH`` to read it from a file; not empty."""
    text = str(raw)
    # not "@file": pytest's argument parser already expands @file into arguments
    if text.startswith("file:"):
        source = Path(text.removeprefix("file:"))
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadValue(f"cannot read prompt file {source}: {exc.strerror}") from None
    if not text.strip():
        raise BadValue("the prompt is empty")
    return text


def concurrencies(name: str, raw: Any) -> tuple[int, ...]:
    """Distinct request counts kept in flight, each at least 1."""
    at_least_one = integer(1)
    return tuple(dict.fromkeys(at_least_one(name, c) for c in raw))


def request_rates(name: str, raw: Any) -> tuple[float, ...]:
    """Distinct request rates in requests/s, each above 0 (``inf``: all at once)."""
    rates = tuple(dict.fromkeys(_to_float(name, r) for r in raw))
    if any(not r > 0 for r in rates):
        raise BadValue(f"request rates must be > 0 (or inf), got {list(raw)}")
    return rates


def slos(name: str, raw: Any) -> tuple[str, ...]:
    """SLO presets or ``ttft=S,tpot=S[,e2e=S][,p=P]`` entries, each checked by the serving module."""
    from pytest_slm.slo import SLOError, parse_slo

    for entry in raw:
        try:
            parse_slo(str(entry))
        except SLOError as exc:
            raise BadValue(str(exc)) from None
    return distinct(name, raw)


def kv_cache_dtypes(name: str, raw: Any) -> tuple[str, ...]:
    """KV-cache dtypes from :data:`KV_CACHE_DTYPES`, lower case, duplicates dropped."""
    dtypes = tuple(dict.fromkeys(str(d).strip().lower() for d in raw))
    bad = [d for d in dtypes if d not in KV_CACHE_DTYPES]
    if bad or not dtypes:
        raise BadValue(f"kv cache dtype {bad or raw!r} unknown; valid: {', '.join(KV_CACHE_DTYPES)}")
    return dtypes


def item_limit(name: str, raw: Any) -> int | float:
    """Items per task: a count (an integer from 1), or a fraction below 1."""
    limit = _to_float(name, raw)
    if limit <= 0:
        raise BadValue(f"{name} must be > 0, got {raw!r}")
    return int(limit) if limit >= 1 and limit == int(limit) else limit


def retention_floors(name: str, raw: Any) -> Mapping[str, float]:
    """``F`` (every task) and ``TASK=F`` entries, each in (0, 1.5]; ``*`` keys the default floor."""
    floors: dict[str, float] = {}
    for entry in raw:
        task, _, value = str(entry).rpartition("=")
        floor = _to_float(name, value)
        if not 0 < floor <= 1.5:
            raise BadValue(f"retention floor {floor} is outside (0, 1.5]")
        floors[task or "*"] = floor
    return {"*": RETENTION_FLOOR, **floors}


def shard(name: str, raw: Any) -> tuple[int, int]:
    """``I/N`` (:func:`pytest_slm.shard.parse_shard`)."""
    try:
        return parse_shard(str(raw))
    except ValueError as exc:
        raise BadValue(str(exc)) from None


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/pytest-slm``, with XDG's fallback ``~/.cache``."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-slm"


_PARSER_BY_KIND: dict[str, Parser] = {"str": verbatim, "path": path, "bool": flag}


@dataclass(frozen=True)
class OptionSpec:
    """One setting: where it can come from, how to read it, and what it is when not given."""

    field: str  # the ini and environment names derive from it
    flag: str  # command-line flag
    help: str  # what it means, without its default (``describe`` adds that)
    kind: str = "str"  # how pytest reads it: "str", "int", "float", "list", "path", "bool"
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    #: raw -> value with its bounds; str, path and bool options have one by kind
    parser: Parser | None = None
    #: the default as a user would give the option (parsed like any value); None: not set
    default: Any = None
    #: what the default is, in words, where the value does not say it (a None default, a computed one)
    default_text: str | None = None
    #: why the default is what it is, printed after it
    default_note: str | None = None
    #: computes the default where it depends on the environment (instead of ``default``)
    default_factory: Callable[[], Any] | None = None
    #: the Settings attribute, where it is not ``field``
    setting: str | None = None
    #: a ``@pytest.mark.slm(...)`` marker may set it for one test
    marker: bool = False

    def __post_init__(self) -> None:
        if self.parser is None and self.kind not in _PARSER_BY_KIND:
            raise TypeError(f"option {self.flag}: a {self.kind} option needs a parser with its bounds")

    @property
    def ini(self) -> str:
        return "slm_" + self.field

    @property
    def env(self) -> str:
        return "SLM_" + self.field.upper()

    @property
    def attribute(self) -> str:
        """The :class:`pytest_slm.settings.Settings` attribute that holds the value."""
        return self.setting or self.field

    def parse(self, raw: Any) -> Any:
        """The value for ``raw``, or :class:`BadValue` naming what is wrong with it."""
        if self.choices and raw not in self.choices:
            raise BadValue(f"{self.field} must be one of {', '.join(self.choices)}, got {raw!r}")
        return (self.parser or _PARSER_BY_KIND[self.kind])(self.field, raw)

    def default_value(self) -> Any:
        """The value when no source sets the option."""
        if self.default_factory is not None:
            return self.default_factory()
        return None if self.default is None else self.parse(self.default)

    def describe(self) -> str:
        """The help text with the default."""
        shown = self.default_text if self.default_text is not None else _show(self.default)
        if shown is None or (self.default is False and not self.default_note):
            return self.help  # nothing to show, or a switch that is off unless given
        note = f"; {self.default_note}" if self.default_note else ""
        return f"{self.help} (default: {shown}{note})"


def _show(value: Any) -> str | None:
    """A default as it would be typed: flags read on/off, lists space-separated, numbers short."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple | list):
        return " ".join(str(_show(v)) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _by_profile(knob: str) -> str:
    return ", ".join(f"{sizes[knob]} {profile}" for profile, sizes in PROFILES.items())


def _profile_knob(field: str, flag: str, help: str, minimum: int, note: str | None = None) -> OptionSpec:
    """A run-size option: its default comes from ``--slm-profile``."""
    return OptionSpec(
        field,
        flag,
        help,
        kind="int",
        metavar="N",
        parser=integer(minimum),
        default=PROFILES[DEFAULT_PROFILE][field],
        default_text=_by_profile(field),
        default_note=note,
        marker=True,
    )


_FULL = PROFILES["full"]
_FOREIGN_LOAD = 0.15  # a share of the machine's cores (pytest_slm.measure.validity)

OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "models",
        "--models",
        f"models to benchmark: Hugging Face ids, local checkpoint dirs, or the alias {DEFAULT_MODEL}",
        kind="list",
        metavar="M",
        parser=models,
        default=(DEFAULT_MODEL,),
    ),
    OptionSpec(
        "precision",
        "--precision",
        "precisions to run (bf16, fp16, auto, fp8, int8, w8a16, w8a16-rtn, int4, w4a16-awq, or all; aliases accepted)",
        kind="list",
        metavar="P",
        parser=precisions,
        default=("bf16",),
        setting="precisions",
    ),
    OptionSpec(
        "output",
        "--slm-output",
        "directory for results.json and results.md",
        kind="path",
        metavar="DIR",
        default="slm-results",
    ),
    OptionSpec(
        "profile",
        "--slm-profile",
        f"run-size profile: quick (minutes on a CPU) or full (warmup {_FULL['num_warmup']}, runs {_FULL['num_runs']}, "
        f"batch {_FULL['batch_size']}, {_FULL['max_new_tokens']} tokens)",
        choices=tuple(PROFILES),
        default=DEFAULT_PROFILE,
    ),
    _profile_knob("num_warmup", "--slm-num-warmup", "warm-up repetitions, excluded from figures", 0),
    _profile_knob("num_runs", "--slm-num-runs", "measured repetitions per workload", 1),
    _profile_knob("batch_size", "--slm-batch-size", "prompts per offline batch and concurrent streams", 1),
    _profile_knob("max_new_tokens", "--slm-max-new-tokens", "output tokens per request (fixed: EOS is ignored)", 1),
    _profile_knob(
        "offline_requests",
        "--slm-offline-requests",
        "distinct prompts per offline throughput batch",
        1,
        note="enough to saturate a small model; the saturation bench shows the knee",
    ),
    OptionSpec(
        "target_ci",
        "--slm-target-ci",
        "adaptive repetitions: repeat past --slm-num-runs until the 95 % CI "
        "of the gated statistic is within this fraction, e.g. 0.02",
        kind="float",
        metavar="F",
        parser=number(above=0, below=1),
        default_text="off",
        marker=True,
    ),
    OptionSpec(
        "max_runs",
        "--slm-max-runs",
        "cap for adaptive repetitions",
        kind="int",
        metavar="N",
        parser=integer(1),
        default_text="10 x --slm-num-runs",
        marker=True,
    ),
    OptionSpec(
        "prompt",
        "--slm-prompt",
        "prompt text, or file:PATH to read it from a file",
        metavar="TEXT",
        parser=prompt,
        default=DEFAULT_PROMPT,
        default_text="a fixed ~60-token prompt",
        marker=True,
    ),
    OptionSpec(
        "max_model_len",
        "--slm-max-model-len",
        "engine context length",
        kind="int",
        metavar="N",
        parser=integer(16),
        default_text="engine's choice, capped at 2048 on CPU",
    ),
    OptionSpec(
        "gpu_memory_utilization",
        "--slm-gpu-memory-utilization",
        "fraction of GPU memory vLLM may take",
        kind="float",
        metavar="F",
        parser=number(above=0, at_most=1),
        default=0.9,
    ),
    OptionSpec(
        "gpu_index",
        "--slm-gpu-index",
        "CUDA device index (as CUDA_VISIBLE_DEVICES shows it) to run and meter on",
        kind="int",
        metavar="I",
        parser=integer(0),
        default=0,
    ),
    OptionSpec(
        "chat_template",
        "--slm-chat-template",
        "wrap prompts in the tokenizer's chat template: auto (where the tokenizer has one), on, off",
        choices=("auto", "on", "off"),
        default="auto",
    ),
    OptionSpec(
        "max_foreign_load",
        "--slm-max-foreign-load",
        "share of this machine's CPU cores other processes (not pytest's process tree, not the server under "
        "test) may keep busy during a measurement before it is invalid",
        kind="float",
        metavar="SHARE",
        parser=number(at_least=0),
        default=_FOREIGN_LOAD,
        default_note=f"{_FOREIGN_LOAD:g} of 2 cores is {2 * _FOREIGN_LOAD:g} cores",
    ),
    OptionSpec(
        "no_machine_check",
        "--slm-no-machine-check",
        "do not time the reference kernel around measured windows, so no window is invalid for the machine "
        "changing speed and no comparison for the machine having moved (for a machine shared on purpose, "
        "e.g. -n on a CPU)",
        kind="bool",
        default=False,
    ),
    OptionSpec(
        "prefix_caching",
        "--slm-prefix-caching",
        "let the engine reuse cached prompt prefixes",
        kind="bool",
        default=False,
        default_note="every request pays for its own prefill",
    ),
    OptionSpec(
        "engine",
        "--slm-engine",
        "engine backend: a registered name (vllm) or module:Class",
        metavar="NAME",
        default="vllm",
    ),
    OptionSpec(
        "cache_dir",
        "--slm-cache-dir",
        "cache for converted and quantized checkpoints",
        kind="path",
        metavar="DIR",
        default_factory=lambda: default_cache_dir(os.environ),
        default_text="$XDG_CACHE_HOME/pytest-slm",
    ),
    OptionSpec(
        "quantized_models_dir",
        "--slm-quantized-models-dir",
        "cache of quantized checkpoints",
        kind="path",
        metavar="DIR",
        default_text="<slm cache dir>/quantized",
    ),
    OptionSpec(
        "calibration_dataset",
        "--slm-calibration-dataset",
        "calibration data for quantization: a local JSONL/text file or directory, or a Hugging Face dataset id",
        metavar="DATA",
        default_text="a set pytest-slm generates",
    ),
    OptionSpec(
        "calibration_split",
        "--slm-calibration-split",
        "split of a Hugging Face calibration dataset",
        metavar="SPLIT",
        default="train",
    ),
    OptionSpec(
        "num_calibration_samples",
        "--slm-num-calibration-samples",
        "calibration samples",
        kind="int",
        metavar="N",
        parser=integer(1),
        default=512,
    ),
    OptionSpec(
        "max_sequence_length",
        "--slm-max-sequence-length",
        "calibration sequence length in tokens",
        kind="int",
        metavar="N",
        parser=integer(16),
        default=2048,
    ),
    OptionSpec(
        "quantize_python",
        "--slm-quantize-python",
        "Python interpreter that runs llmcompressor (a separate quantization venv)",
        metavar="PATH",
        default_text="this one",
    ),
    OptionSpec(
        "accuracy_tasks",
        "--slm-accuracy-tasks",
        "lm-eval task or group names, or the local tasks gsm8k_local, slm_mc",
        kind="list",
        metavar="TASK",
        parser=distinct,
        default=("mmlu", "gsm8k", "hellaswag"),
    ),
    OptionSpec(
        "num_fewshot",
        "--slm-num-fewshot",
        "few-shot examples per accuracy item",
        kind="int",
        metavar="N",
        parser=integer(0),
        default=5,
    ),
    OptionSpec(
        "apply_chat_template",
        "--slm-apply-chat-template",
        "lm-eval tasks: format prompts with the tokenizer's chat template, as lm-eval's --apply_chat_template",
        kind="bool",
        default=False,
        default_note="as in lm-eval; the speed workloads follow --slm-chat-template",
    ),
    OptionSpec(
        "fewshot_as_multiturn",
        "--slm-fewshot-as-multiturn",
        "lm-eval tasks: few-shot examples as separate chat turns, as lm-eval's --fewshot_as_multiturn; needs "
        "--slm-apply-chat-template, which turns it on unless it is set false",
        kind="bool",
        default=False,
    ),
    OptionSpec(
        "accuracy_limit",
        "--slm-accuracy-limit",
        "items per task: a count, or a fraction below 1",
        metavar="N",
        parser=item_limit,
        default_text="all",
    ),
    OptionSpec(
        "accuracy_batch_size",
        "--slm-accuracy-batch-size",
        "requests per engine call during evaluation",
        kind="int",
        metavar="N",
        parser=integer(1),
        default=64,
    ),
    OptionSpec(
        "task_path",
        "--slm-task-path",
        "extra lm-eval task YAMLs (like lm-eval's --include_path)",
        kind="path",
        metavar="DIR",
    ),
    OptionSpec(
        "local_data",
        "--slm-local-data",
        "directory with local dataset copies (gsm8k/ enables the gsm8k_local task)",
        kind="path",
        metavar="DIR",
    ),
    OptionSpec(
        "perplexity_corpus",
        "--slm-perplexity-corpus",
        "text corpus for perplexity: .txt (blank-line separated documents) or .jsonl",
        kind="path",
        metavar="FILE",
        default_text="a corpus pytest-slm ships",
    ),
    OptionSpec(
        "retention_floor",
        "--slm-retention-floor",
        "minimum accuracy retention of a quantized precision vs bf16: a number, or TASK=number entries",
        kind="list",
        metavar="F",
        parser=retention_floors,
        default=(RETENTION_FLOOR,),
    ),
    OptionSpec(
        "log_samples",
        "--slm-log-samples",
        "write lm-eval's per-item prompts and answers next to the report",
        kind="bool",
        default=False,
    ),
    OptionSpec(
        "power_meter",
        "--slm-power-meter",
        "energy meter: auto (NVML, then RAPL), nvml, rapl or none",
        choices=("auto", "nvml", "rapl", "none"),
        default="auto",
    ),
    OptionSpec(
        "energy_window_s",
        "--slm-energy-window-s",
        "minimum energy measurement window in seconds",
        kind="float",
        metavar="S",
        parser=number(at_least=0),
        default=5.0,
        default_note="counters update about every 100 ms",
    ),
    OptionSpec(
        "energy_idle_s",
        "--slm-energy-idle-s",
        "idle-power measurement before the workload, seconds",
        kind="float",
        metavar="S",
        parser=number(at_least=0),
        default=2.0,
    ),
    OptionSpec(
        "energy_settle_s",
        "--slm-energy-settle-s",
        "quiet time before the idle measurement, seconds",
        kind="float",
        metavar="S",
        parser=number(at_least=0),
        default=3.0,
        default_note="a GPU draws above idle for a while after work",
    ),
    OptionSpec(
        "energy_sample_runs",
        "--slm-energy-sample-runs",
        "minimum workload repetitions inside the energy window",
        kind="int",
        metavar="N",
        parser=integer(1),
        default=1,
    ),
    OptionSpec(
        "powercap_root",
        "--slm-powercap-root",
        "where the RAPL powercap tree is",
        kind="path",
        metavar="DIR",
        default="/sys/class/powercap",
    ),
    OptionSpec(
        "baseline_dir",
        "--slm-baseline-dir",
        "where baselines live",
        kind="path",
        metavar="DIR",
        default="baselines",
        default_note="relative to the rootdir",
    ),
    OptionSpec(
        "save_baseline",
        "--slm-save-baseline",
        "write/update baselines from this run's passing tests",
        kind="bool",
        default=False,
    ),
    OptionSpec(
        "baseline_accept",
        "--slm-baseline-accept",
        "with --slm-save-baseline, also write figures whose test failed (a regression, a threshold) or whose "
        "workload differs from the stored one, starting a new session history",
        kind="bool",
        default=False,
    ),
    OptionSpec("no_compare", "--slm-no-compare", "do not compare with stored baselines", kind="bool", default=False),
    OptionSpec(
        "alpha",
        "--slm-alpha",
        "family-wise false-alarm level of the session's baseline comparisons",
        kind="float",
        metavar="A",
        parser=number(above=0, below=1),
        default=0.05,
        default_note="each of the m gated comparisons is made at alpha/m",
    ),
    OptionSpec(
        "min_sessions",
        "--slm-min-sessions",
        "saved sessions a baseline needs before a timing change can be called a regression",
        kind="int",
        metavar="K",
        parser=integer(1),
        default=3,
        default_note="below that, machine drift and a real change look alike and the verdict is inconclusive",
    ),
    OptionSpec(
        "confirm",
        "--slm-confirm",
        "an earlier results.json of the same code: run again only its tests that failed or whose figures did "
        "not pass (regressed, improved, inconclusive, invalid) and judge each timing on the geometric mean of "
        "the earlier session(s) and this one, at the earlier run's per-comparison level",
        kind="path",
        metavar="RESULTS",
    ),
    OptionSpec(
        "self_check",
        "--slm-self-check",
        "also run the harness's self-checks (tests marked slm_self_check: its overhead against raw vLLM loops, "
        "the saturation curve); the project's own integration tier runs them",
        kind="bool",
        default=False,
        default_note="on with --slm-profile full",
    ),
    OptionSpec(
        "strict",
        "--slm-strict",
        "fail the figures that pass without evidence of no regression: inconclusive, incomparable, comparison "
        "skipped, no baseline, and a baseline's figure this run did not measure or skipped",
        kind="bool",
        default=False,
    ),
    OptionSpec(
        "fail_on_improvement",
        "--slm-fail-on-improvement",
        "fail tests whose metric improved beyond tolerance (forces a baseline refresh)",
        kind="bool",
        default=False,
    ),
    OptionSpec(
        "tolerance",
        "--slm-tolerance",
        "relative change that counts as a regression for latency, throughput and energy",
        kind="float",
        metavar="TAU",
        parser=number(at_least=0, below=1),
        default=0.05,
    ),
    OptionSpec(
        "accuracy_tolerance",
        "--slm-accuracy-tolerance",
        "accuracy drop that counts as a regression, as a fraction",
        kind="float",
        metavar="TAU",
        parser=number(at_least=0, below=1),
        default=0.01,
        default_note="1 point",
    ),
    OptionSpec(
        "thresholds_file",
        "--slm-thresholds",
        "TOML file with a [thresholds] table of metric limits",
        kind="path",
        metavar="FILE",
    ),
    # -- serving mode (engine openai) and workloads
    OptionSpec(
        "endpoint",
        "--slm-endpoint",
        "with --slm-engine openai: an OpenAI-compatible server to measure",
        metavar="URL",
        default_text="none, pytest-slm starts vLLM's OpenAI server itself for each model × precision",
    ),
    OptionSpec(
        "api_key_env",
        "--slm-api-key-env",
        "environment variable holding the server's API key (sent as a bearer token, never written out)",
        metavar="NAME",
    ),
    OptionSpec(
        "openai_api",
        "--slm-openai-api",
        "OpenAI API to stream from: completions (raw prompt, as in-process) or chat",
        choices=("completions", "chat"),
        default="completions",
    ),
    OptionSpec(
        "request_timeout_s",
        "--slm-request-timeout",
        "seconds one HTTP request may take in all",
        kind="float",
        metavar="S",
        parser=number(above=0),
        default=600.0,
    ),
    OptionSpec(
        "stall_timeout_s",
        "--slm-stall-timeout",
        "seconds a streamed response may go without any byte before it counts as stalled",
        kind="float",
        metavar="S",
        parser=number(above=0),
        default=60.0,
    ),
    OptionSpec(
        "server_startup_timeout_s",
        "--slm-server-startup-timeout",
        "seconds a server started by pytest-slm may take to answer /health and /v1/models",
        kind="float",
        metavar="S",
        parser=number(above=0),
        default=300.0,
    ),
    OptionSpec(
        "prompt_set",
        "--slm-prompt-set",
        "prompts of serving workloads: fixed (--slm-prompt), shipped, "
        "synthetic:in=N,out=M[,dist=fixed|uniform|normal,...] or jsonl:PATH",
        metavar="SPEC",
        default="shipped",
    ),
    OptionSpec(
        "prompt_cycle",
        "--slm-prompt-cycle",
        "allow more requests than the prompt set has prompts (prompts repeat; recorded)",
        kind="bool",
        default=False,
    ),
    OptionSpec(
        "shared_prefix",
        "--slm-shared-prefix",
        "tokens of a prefix shared by every prompt (a prefix-sharing workload)",
        kind="int",
        metavar="N",
        parser=integer(0),
        default=0,
    ),
    OptionSpec(
        "concurrency",
        "--slm-concurrency",
        "serving levels: requests kept in flight, one test per level",
        kind="list",
        metavar="N",
        parser=concurrencies,
        default=(1, 8),
    ),
    OptionSpec(
        "request_rate",
        "--slm-request-rate",
        "serving levels: Poisson request rates in requests/s, inf = all at once",
        kind="list",
        metavar="R",
        parser=request_rates,
        default=(),
    ),
    OptionSpec(
        "serving_requests",
        "--slm-serving-requests",
        "requests per serving level",
        kind="int",
        metavar="N",
        parser=integer(1),
        default=16,
    ),
    OptionSpec(
        "serving_max_s",
        "--slm-serving-max-s",
        "seconds after which a serving level starts no new request",
        kind="float",
        metavar="S",
        parser=number(above=0),
        default=120.0,
    ),
    OptionSpec(
        "slo",
        "--slm-slo",
        "SLOs for goodput and saturation: mlperf-server, mlperf-interactive, or ttft=S,tpot=S[,e2e=S][,p=P]",
        kind="list",
        metavar="SLO",
        parser=slos,
        default=("mlperf-server", "mlperf-interactive"),
    ),
    OptionSpec(
        "client_margin_s",
        "--slm-client-margin",
        "p99 event-loop lag or send-time skew beyond which a serving run is invalid, seconds",
        kind="float",
        metavar="S",
        parser=number(above=0),
        default=0.010,
    ),
    OptionSpec(
        "kv_cache_dtype",
        "--slm-kv-cache-dtype",
        f"KV-cache dtypes to run, a matrix axis ({', '.join(KV_CACHE_DTYPES)}; ids gain -kv<dtype> except for auto)",
        kind="list",
        metavar="DTYPE",
        parser=kv_cache_dtypes,
        default=("auto",),
    ),
    OptionSpec(
        "price_per_hour",
        "--slm-price-per-hour",
        "price of this machine per hour (e.g. USD) for cost per million output tokens and per correct answer",
        kind="float",
        metavar="PRICE",
        parser=number(above=0),
    ),
    OptionSpec(
        "wandb",
        "--slm-wandb",
        "log every record, the environment and the report files to this Weights & Biases project (needs wandb)",
        metavar="PROJECT",
    ),
    OptionSpec(
        "models_config",
        "--slm-models-config",
        "YAML model config (or a directory of them): per model its checkpoint, revision, parameter count, "
        "precisions, engine arguments, calibration and accuracy tasks; --models may name its entries",
        kind="path",
        metavar="FILE",
        default_text="every entry",
    ),
    OptionSpec(
        "shard",
        "--slm-shard",
        "run shard I of N of the model x precision matrix (all precisions of a model in one shard, "
        "balanced by parameters x precisions), e.g. 2/4 for one CI runner of four",
        metavar="I/N",
        parser=shard,
    ),
)

#: each option by its field name
OPTION: Mapping[str, OptionSpec] = {spec.field: spec for spec in OPTIONS}


def register(parser: pytest.Parser) -> None:
    """Add every option to pytest's parser, each with its ini twin."""
    group = parser.getgroup(GROUP, "pytest-slm: benchmarks of small language models")
    for spec in OPTIONS:
        kwargs: dict[str, Any] = {"dest": "slm_" + spec.field, "default": None, "metavar": spec.metavar}
        if spec.kind == "list":
            kwargs["nargs"] = "+"
        if spec.kind == "bool":
            kwargs["action"] = "store_true"
            kwargs.pop("metavar")
        if spec.choices:
            kwargs["choices"] = spec.choices
            kwargs.pop("metavar")
        text = spec.describe()
        # argparse %-formats help strings
        group.addoption(spec.flag, help=f"{text} [env {spec.env}, ini {spec.ini}]".replace("%", "%%"), **kwargs)
        ini_type: Any = {"list": "linelist", "bool": "bool"}.get(spec.kind, "string")
        parser.addini(spec.ini, help=text, type=ini_type, default=None)


def read_raw(config: pytest.Config, spec: OptionSpec, environ: dict[str, str]) -> tuple[Any, str] | None:
    """The first value present for ``spec`` in CLI > env > ini order, with where it came from."""
    cli = config.getoption("slm_" + spec.field)
    if cli is not None and not (spec.kind == "bool" and cli is False):
        return cli, spec.flag
    if spec.env in environ and environ[spec.env] != "":
        raw_env = environ[spec.env]
        return (raw_env.split() if spec.kind == "list" else raw_env), f"environment variable {spec.env}"
    ini = config.getini(spec.ini)
    if ini not in (None, "", []):
        if spec.kind == "list" and isinstance(ini, list):
            ini = [tok for line in ini for tok in str(line).split()]
        return ini, f"ini option {spec.ini}"
    return None
