"""Command-line options and their ini twins.

One table, :data:`OPTIONS`, is the single source: it registers each ``--flag`` with its
ini key, names its environment variable, and tells :mod:`pytest_slm.settings` how to
parse it. Precedence (resolved once, in settings): marker > command line > environment >
ini > profile default > default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

GROUP = "slm"


@dataclass(frozen=True)
class OptionSpec:
    """One setting: where it can come from and how to read it."""

    field: str  # Settings attribute
    flag: str  # command-line flag
    help: str
    kind: str = "str"  # "str", "int", "float", "list", "path", "bool"
    metavar: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def ini(self) -> str:
        return "slm_" + self.field

    @property
    def env(self) -> str:
        return "SLM_" + self.field.upper()


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "models",
        "--models",
        "models to benchmark: Hugging Face ids, local checkpoint dirs, or the "
        "alias smollm2-135m (default: smollm2-135m)",
        kind="list",
        metavar="M",
    ),
    OptionSpec(
        "precision",
        "--precision",
        "precisions to run (bf16, fp16, auto, fp8, int8, w8a16, w8a16-rtn, "
        "int4, w4a16-awq, or all; aliases accepted) (default: bf16)",
        kind="list",
        metavar="P",
    ),
    OptionSpec(
        "output",
        "--slm-output",
        "directory for results.json and results.md (default: slm-results)",
        kind="path",
        metavar="DIR",
    ),
    OptionSpec(
        "profile",
        "--slm-profile",
        "run-size profile: quick (minutes on a CPU) or full (warmup 10, "
        "runs 500, batch 8, 256 tokens) (default: quick)",
        choices=("quick", "full"),
    ),
    OptionSpec("num_warmup", "--slm-num-warmup", "warm-up repetitions, excluded from figures", kind="int", metavar="N"),
    OptionSpec("num_runs", "--slm-num-runs", "measured repetitions per workload", kind="int", metavar="N"),
    OptionSpec(
        "batch_size", "--slm-batch-size", "prompts per offline batch and concurrent streams", kind="int", metavar="N"
    ),
    OptionSpec(
        "max_new_tokens",
        "--slm-max-new-tokens",
        "output tokens per request (fixed: EOS is ignored)",
        kind="int",
        metavar="N",
    ),
    OptionSpec(
        "offline_requests",
        "--slm-offline-requests",
        "distinct prompts per offline throughput batch (default: 32 quick, 64 full: enough to saturate a small "
        "model; the saturation bench shows the knee)",
        kind="int",
        metavar="N",
    ),
    OptionSpec(
        "target_ci",
        "--slm-target-ci",
        "adaptive repetitions: repeat past --slm-num-runs until the 95 % CI "
        "of the gated statistic is within this fraction, e.g. 0.02 (default: off)",
        kind="float",
        metavar="F",
    ),
    OptionSpec(
        "max_runs",
        "--slm-max-runs",
        "cap for adaptive repetitions (default: 10 x --slm-num-runs)",
        kind="int",
        metavar="N",
    ),
    OptionSpec("prompt", "--slm-prompt", "prompt text, or file:PATH to read it from a file", metavar="TEXT"),
    OptionSpec(
        "max_model_len",
        "--slm-max-model-len",
        "engine context length (default: engine's choice, capped at 2048 on CPU)",
        kind="int",
        metavar="N",
    ),
    OptionSpec(
        "gpu_memory_utilization",
        "--slm-gpu-memory-utilization",
        "fraction of GPU memory vLLM may take (default: 0.9)",
        kind="float",
        metavar="F",
    ),
    OptionSpec(
        "gpu_index",
        "--slm-gpu-index",
        "CUDA device index (as CUDA_VISIBLE_DEVICES shows it) to run and meter on (default: 0)",
        kind="int",
        metavar="I",
    ),
    OptionSpec(
        "chat_template",
        "--slm-chat-template",
        "wrap prompts in the tokenizer's chat template: auto (where the tokenizer has one), on, off (default: auto)",
        choices=("auto", "on", "off"),
    ),
    OptionSpec(
        "max_foreign_load",
        "--slm-max-foreign-load",
        "share of this machine's CPU cores other processes (not pytest's process tree, not the server under "
        "test) may keep busy during a measurement before it is invalid: 0.15 of 2 cores is 0.3 cores "
        "(default: 0.15)",
        kind="float",
        metavar="SHARE",
    ),
    OptionSpec(
        "no_machine_check",
        "--slm-no-machine-check",
        "do not time the reference kernel around measured windows, so no window is invalid for the machine "
        "changing speed and no comparison for the machine having moved (for a machine shared on purpose, "
        "e.g. -n on a CPU)",
        kind="bool",
    ),
    OptionSpec(
        "prefix_caching",
        "--slm-prefix-caching",
        "let the engine reuse cached prompt prefixes (default: off, so every request pays for its own prefill)",
        kind="bool",
    ),
    OptionSpec(
        "engine",
        "--slm-engine",
        "engine backend: a registered name (vllm) or module:Class (default: vllm)",
        metavar="NAME",
    ),
    OptionSpec(
        "cache_dir",
        "--slm-cache-dir",
        "cache for converted and quantized checkpoints (default: $XDG_CACHE_HOME/pytest-slm)",
        kind="path",
        metavar="DIR",
    ),
    OptionSpec(
        "quantized_models_dir",
        "--slm-quantized-models-dir",
        "cache of quantized checkpoints (default: <slm cache dir>/quantized)",
        kind="path",
        metavar="DIR",
    ),
    OptionSpec(
        "calibration_dataset",
        "--slm-calibration-dataset",
        "calibration data for quantization: a local "
        "JSONL/text file or directory, or a Hugging Face dataset id (default: a set pytest-slm generates)",
        metavar="DATA",
    ),
    OptionSpec(
        "calibration_split",
        "--slm-calibration-split",
        "split of a Hugging Face calibration dataset (default: train)",
        metavar="SPLIT",
    ),
    OptionSpec(
        "num_calibration_samples",
        "--slm-num-calibration-samples",
        "calibration samples (default: 512)",
        kind="int",
        metavar="N",
    ),
    OptionSpec(
        "max_sequence_length",
        "--slm-max-sequence-length",
        "calibration sequence length in tokens (default: 2048)",
        kind="int",
        metavar="N",
    ),
    OptionSpec(
        "quantize_python",
        "--slm-quantize-python",
        "Python interpreter that runs llmcompressor (a separate quantization venv; default: this one)",
        metavar="PATH",
    ),
    OptionSpec(
        "accuracy_tasks",
        "--slm-accuracy-tasks",
        "lm-eval task or group names, or the local tasks gsm8k_local, slm_mc (default: mmlu gsm8k hellaswag)",
        kind="list",
        metavar="TASK",
    ),
    OptionSpec(
        "num_fewshot", "--slm-num-fewshot", "few-shot examples per accuracy item (default: 5)", kind="int", metavar="N"
    ),
    OptionSpec(
        "apply_chat_template",
        "--slm-apply-chat-template",
        "lm-eval tasks: format prompts with the tokenizer's chat template, as lm-eval's --apply_chat_template "
        "(default: off, as in lm-eval; the speed workloads follow --slm-chat-template)",
        kind="bool",
    ),
    OptionSpec(
        "fewshot_as_multiturn",
        "--slm-fewshot-as-multiturn",
        "lm-eval tasks: few-shot examples as separate chat turns, as lm-eval's --fewshot_as_multiturn; needs "
        "--slm-apply-chat-template, which turns it on unless it is set false (default: off)",
        kind="bool",
    ),
    OptionSpec(
        "accuracy_limit",
        "--slm-accuracy-limit",
        "items per task: a count, or a fraction below 1 (default: all)",
        metavar="N",
    ),
    OptionSpec(
        "accuracy_batch_size",
        "--slm-accuracy-batch-size",
        "requests per engine call during evaluation (default: 64)",
        kind="int",
        metavar="N",
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
        "text corpus for perplexity: .txt (blank-line "
        "separated documents) or .jsonl (default: a corpus pytest-slm ships)",
        kind="path",
        metavar="FILE",
    ),
    OptionSpec(
        "retention_floor",
        "--slm-retention-floor",
        "minimum accuracy retention of a quantized precision vs bf16: a number, or TASK=number entries (default: 0.95)",
        kind="list",
        metavar="F",
    ),
    OptionSpec(
        "log_samples",
        "--slm-log-samples",
        "write lm-eval's per-item prompts and answers next to the report",
        kind="bool",
    ),
    OptionSpec(
        "power_meter",
        "--slm-power-meter",
        "energy meter: auto (NVML, then RAPL), nvml, rapl or none (default: auto)",
        choices=("auto", "nvml", "rapl", "none"),
    ),
    OptionSpec(
        "energy_window_s",
        "--slm-energy-window-s",
        "minimum energy measurement window in seconds (default: 5; counters update about every 100 ms)",
        kind="float",
        metavar="S",
    ),
    OptionSpec(
        "energy_idle_s",
        "--slm-energy-idle-s",
        "idle-power measurement before the workload, seconds (default: 2)",
        kind="float",
        metavar="S",
    ),
    OptionSpec(
        "energy_settle_s",
        "--slm-energy-settle-s",
        "quiet time before the idle measurement, seconds (default: 3; a GPU draws above idle for a while after work)",
        kind="float",
        metavar="S",
    ),
    OptionSpec(
        "energy_sample_runs",
        "--slm-energy-sample-runs",
        "minimum workload repetitions inside the energy window (default: 1)",
        kind="int",
        metavar="N",
    ),
    OptionSpec(
        "powercap_root",
        "--slm-powercap-root",
        "where the RAPL powercap tree is (default: /sys/class/powercap)",
        kind="path",
        metavar="DIR",
    ),
    OptionSpec(
        "baseline_dir",
        "--slm-baseline-dir",
        "where baselines live (default: baselines/ under the rootdir)",
        kind="path",
        metavar="DIR",
    ),
    OptionSpec(
        "save_baseline", "--slm-save-baseline", "write/update baselines from this run's passing tests", kind="bool"
    ),
    OptionSpec(
        "baseline_accept",
        "--slm-baseline-accept",
        "with --slm-save-baseline, also write figures whose test failed (a regression, a threshold) or whose "
        "workload differs from the stored one, starting a new session history",
        kind="bool",
    ),
    OptionSpec("no_compare", "--slm-no-compare", "do not compare with stored baselines", kind="bool"),
    OptionSpec(
        "alpha",
        "--slm-alpha",
        "family-wise false-alarm level of the session's baseline comparisons (default: 0.05; each of the m "
        "gated comparisons is made at alpha/m)",
        kind="float",
        metavar="A",
    ),
    OptionSpec(
        "min_sessions",
        "--slm-min-sessions",
        "saved sessions a baseline needs before a timing change can be called a regression (default: 3; below "
        "that, machine drift and a real change look alike and the verdict is inconclusive)",
        kind="int",
        metavar="K",
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
        "strict",
        "--slm-strict",
        "fail the figures that pass without evidence of no regression: inconclusive, incomparable, comparison "
        "skipped, no baseline, and a baseline's figure this run did not measure or skipped",
        kind="bool",
    ),
    OptionSpec(
        "fail_on_improvement",
        "--slm-fail-on-improvement",
        "fail tests whose metric improved beyond tolerance (forces a baseline refresh)",
        kind="bool",
    ),
    OptionSpec(
        "tolerance",
        "--slm-tolerance",
        "relative change that counts as a regression for latency, throughput and energy (default: 0.05)",
        kind="float",
        metavar="TAU",
    ),
    OptionSpec(
        "accuracy_tolerance",
        "--slm-accuracy-tolerance",
        "accuracy drop that counts as a regression, as a fraction (default: 0.01 = 1 point)",
        kind="float",
        metavar="TAU",
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
        "with --slm-engine openai: an OpenAI-compatible server to measure (default: none, pytest-slm "
        "starts vLLM's OpenAI server itself for each model × precision)",
        metavar="URL",
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
        "OpenAI API to stream from: completions (raw prompt, as in-process) or chat (default: completions)",
        choices=("completions", "chat"),
    ),
    OptionSpec(
        "request_timeout_s",
        "--slm-request-timeout",
        "seconds one HTTP request may take in all (default: 600)",
        kind="float",
        metavar="S",
    ),
    OptionSpec(
        "stall_timeout_s",
        "--slm-stall-timeout",
        "seconds a streamed response may go without any byte before it counts as stalled (default: 60)",
        kind="float",
        metavar="S",
    ),
    OptionSpec(
        "server_startup_timeout_s",
        "--slm-server-startup-timeout",
        "seconds a server started by pytest-slm may take to answer /health and /v1/models (default: 300)",
        kind="float",
        metavar="S",
    ),
    OptionSpec(
        "prompt_set",
        "--slm-prompt-set",
        "prompts of serving workloads: fixed (--slm-prompt), shipped, "
        "synthetic:in=N,out=M[,dist=fixed|uniform|normal,...] or jsonl:PATH (default: shipped)",
        metavar="SPEC",
    ),
    OptionSpec(
        "prompt_cycle",
        "--slm-prompt-cycle",
        "allow more requests than the prompt set has prompts (prompts repeat; recorded)",
        kind="bool",
    ),
    OptionSpec(
        "shared_prefix",
        "--slm-shared-prefix",
        "tokens of a prefix shared by every prompt (a prefix-sharing workload; default: 0)",
        kind="int",
        metavar="N",
    ),
    OptionSpec(
        "concurrency",
        "--slm-concurrency",
        "serving levels: requests kept in flight, one test per level (default: 1 8)",
        kind="list",
        metavar="N",
    ),
    OptionSpec(
        "request_rate",
        "--slm-request-rate",
        "serving levels: Poisson request rates in requests/s, inf = all at once (default: none)",
        kind="list",
        metavar="R",
    ),
    OptionSpec(
        "serving_requests",
        "--slm-serving-requests",
        "requests per serving level (default: 16)",
        kind="int",
        metavar="N",
    ),
    OptionSpec(
        "serving_max_s",
        "--slm-serving-max-s",
        "seconds after which a serving level starts no new request (default: 120)",
        kind="float",
        metavar="S",
    ),
    OptionSpec(
        "slo",
        "--slm-slo",
        "SLOs for goodput and saturation: mlperf-server, mlperf-interactive, or ttft=S,tpot=S[,e2e=S][,p=P] "
        "(default: mlperf-server mlperf-interactive)",
        kind="list",
        metavar="SLO",
    ),
    OptionSpec(
        "client_margin_s",
        "--slm-client-margin",
        "p99 event-loop lag or send-time skew beyond which a serving run is invalid (default: 0.010 s)",
        kind="float",
        metavar="S",
    ),
    OptionSpec(
        "kv_cache_dtype",
        "--slm-kv-cache-dtype",
        "KV-cache dtypes to run, a matrix axis (auto, fp8, fp8_e4m3, fp8_e5m2, bfloat16, float16; "
        "ids gain -kv<dtype> except for auto) (default: auto)",
        kind="list",
        metavar="DTYPE",
    ),
    OptionSpec(
        "price_per_hour",
        "--slm-price-per-hour",
        "price of this machine per hour (e.g. USD) for cost per million output tokens and per correct answer",
        kind="float",
        metavar="PRICE",
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
        "precisions, engine arguments, calibration and accuracy tasks; --models may name its entries "
        "(default: every entry)",
        kind="path",
        metavar="FILE",
    ),
    OptionSpec(
        "shard",
        "--slm-shard",
        "run shard I of N of the model x precision matrix (all precisions of a model in one shard, "
        "balanced by parameters x precisions), e.g. 2/4 for one CI runner of four",
        metavar="I/N",
    ),
)


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
        # argparse %-formats help strings
        group.addoption(spec.flag, help=f"{spec.help} [env {spec.env}, ini {spec.ini}]".replace("%", "%%"), **kwargs)
        ini_type: Any = {"list": "linelist", "bool": "bool"}.get(spec.kind, "string")
        parser.addini(spec.ini, help=spec.help, type=ini_type, default=None)


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
