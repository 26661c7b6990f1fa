"""Model configs: schema validation, parameter-count check, what an entry changes, and (on the fake
engine) that per-model settings reach the engine, the records and the report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_slm.checkpoints.params import (
    ParameterCountError,
    checkpoint_parameters,
    config_parameters,
    format_parameter_count,
    parameters_from_name,
    parse_parameter_count,
    safetensors_parameters,
)
from pytest_slm.configs.chat_template import apply_chat_template
from pytest_slm.configs.checkpoint import check_parameters, hub_token
from pytest_slm.configs.load import load
from pytest_slm.configs.matrix import engine_args_for, precisions_for, select, settings_for, tasks_for
from pytest_slm.configs.schema import ModelConfigError
from pytest_slm.precisions import get_precision, resolve_precisions
from pytest_slm.settings import Settings
from tests.conftest import FAKE_ENGINE
from tests.fake_checkpoints import write_checkpoint

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "models.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error(path: Path) -> str:
    with pytest.raises(ModelConfigError) as info:
        load(path)
    return str(info.value)


# -- the shipped examples ------------------------------------------------------------------------


def test_shipped_examples_load() -> None:
    config = load(REPO / "models")
    names = [e.name for e in config.entries]
    assert len(names) == 10 == len(set(names))
    by_name = {e.name: e for e in config.entries}
    assert by_name["smollm2-135m"].model == "smollm2-135m"  # the embedded alias
    tp2 = by_name["llama-3.1-8b-tp2"]
    assert tp2.layout.devices == 2 and tp2.engine_args["distributed_executor_backend"] == "mp"
    ray = by_name["qwen2.5-14b-ray"]
    assert (ray.layout.tensor_parallel_size, ray.layout.pipeline_parallel_size) == (2, 2)
    assert ray.engine_args["distributed_executor_backend"] == "ray"
    assert all(e.parameters for e in config.entries)
    gated = [e.name for e in config.entries if e.model.startswith("meta-llama/")]
    assert gated and all(by_name[n].token_env == "HF_TOKEN" for n in gated)


# -- schema errors name the file, the entry and the field ---------------------------------------


def test_bad_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: a\n   model: [unclosed\n")
    msg = error(path)
    assert str(path) in msg and "not valid YAML" in msg


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("models:\n  - {name: a, model: org/a, colour: red}\n", "'colour'"),
        ("models:\n  - {name: a, model: org/a, engine_args: {tensor_parallel: 2}}\n", "'engine_args.tensor_parallel'"),
        ("models:\n  - {name: a, model: org/a, calibration: {samples: 2}}\n", "'calibration.samples'"),
        (
            "models:\n  - {name: a, model: org/a, accuracy: {tasks: {gsm8k: {limt: 3}}}}\n",
            "'accuracy.tasks.gsm8k.limt'",
        ),
        ("models:\n  - {name: a, model: org/a}\nmodel_defaults: {}\n", "'model_defaults'"),
    ],
)
def test_unknown_key_is_an_error(tmp_path: Path, text: str, field: str) -> None:
    msg = error(write(tmp_path, text))
    assert "unknown key" in msg and field in msg and "models.yaml" in msg
    if "model_defaults" not in text:
        assert "model 'a'" in msg


@pytest.mark.parametrize(
    ("entry", "field", "says"),
    [
        (
            "{name: a, model: org/a, engine_args: {tensor_parallel_size: two}}",
            "engine_args.tensor_parallel_size",
            "integer",
        ),
        (
            "{name: a, model: org/a, engine_args: {gpu_memory_utilization: 1.5}}",
            "engine_args.gpu_memory_utilization",
            "(0, 1]",
        ),
        (
            "{name: a, model: org/a, engine_args: {distributed_executor_backend: slurm}}",
            "engine_args.distributed_executor_backend",
            "mp, ray",
        ),
        (
            "{name: a, model: org/a, engine_args: {trust_remote_code: 'yes'}}",
            "engine_args.trust_remote_code",
            "true or false",
        ),
        ("{name: a, model: org/a, precisions: [bf16, int3]}", "precisions", "unknown precision 'int3'"),
        ("{name: a, model: org/a, parameters: lots}", "parameters", "135M or 1.7B"),
        ("{name: A B, model: org/a}", "name", "lower-case"),
        ("{name: a}", "model", "is required"),
        ("{name: a, model: org/a, accuracy: {limit: 0}}", "accuracy.limit", "count >= 1"),
        ("{name: a, model: org/a, calibration: {num_samples: 0}}", "calibration.num_samples", ">= 1"),
        (
            "{name: a, model: org/a, precisions: [bf16], engine_args: {dtype: float16}}",
            "engine_args.dtype",
            "contradicts precision bf16",
        ),
        (
            "{name: a, model: org/a, engine_args: {chat_template: missing.jinja}}",
            "engine_args.chat_template",
            "no such chat template",
        ),
    ],
)
def test_bad_field_names_entry_and_field(tmp_path: Path, entry: str, field: str, says: str) -> None:
    msg = error(write(tmp_path, f"models:\n  - {entry}\n"))
    assert f"field '{field}'" in msg and says in msg and "models.yaml: model " in msg, msg


def test_missing_local_path(tmp_path: Path) -> None:
    msg = error(write(tmp_path, "models:\n  - {name: mine, model: ./checkpoints/nope}\n"))
    assert "model 'mine', field 'model'" in msg
    assert f"no such checkpoint directory {tmp_path / 'checkpoints' / 'nope'}" in msg


def test_local_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "ckpts" / "mine", 1000)
    (tmp_path / "conf").mkdir()
    config = load(write(tmp_path / "conf", "models:\n  - {name: mine, model: ../ckpts/mine}\n"))
    assert config.entries[0].model == str((tmp_path / "ckpts" / "mine").resolve())


def test_revision_is_for_hub_ids_only(tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "mine", 1000)
    msg = error(write(tmp_path, "models:\n  - {name: mine, model: ./mine, revision: abc123}\n"))
    assert "field 'revision'" in msg and "Hugging Face ids only" in msg
    ok = load(write(tmp_path, "models:\n  - {name: q, model: Qwen/Qwen2.5-0.5B, revision: 7ae557604}\n", "b.yaml"))
    assert ok.entries[0].revision == "7ae557604"


def test_names_are_unique_across_files(tmp_path: Path) -> None:
    write(tmp_path, "models:\n  - {name: a, model: org/a}\n", "one.yaml")
    write(tmp_path, "models:\n  - {name: a, model: org/b}\n", "two.yaml")
    msg = error(tmp_path)
    assert "two.yaml: model 'a', field 'name'" in msg and "one.yaml" in msg


def test_empty_directory_and_missing_file(tmp_path: Path) -> None:
    assert "no *.yaml model configs" in error(tmp_path)
    assert "no such model config file" in error(tmp_path / "nope.yaml")


def test_models_must_be_a_list(tmp_path: Path) -> None:
    assert "field 'models': must be a non-empty list" in error(write(tmp_path, "models: {a: 1}\n"))
    assert "field 'models': is required" in error(write(tmp_path, "token_env: X\n"))


# -- parameter counts ----------------------------------------------------------------------------


def test_safetensors_header_count_matches_the_library(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": np.zeros((3, 5), np.float16), "b": np.zeros((7,), np.float32)}, str(path))
    assert safetensors_parameters(path) == 22
    path.write_bytes(b"\0" * 16)  # not a safetensors file
    assert safetensors_parameters(path) is None


def test_config_estimate_for_a_llama_layout() -> None:
    # SmolLM2-135M's published config; the checkpoint stores 134,515,008 parameters
    cfg = {
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "intermediate_size": 1536,
        "vocab_size": 49152,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "tie_word_embeddings": True,
    }
    assert config_parameters(cfg) == 134_515_008
    assert config_parameters({"hidden_size": 8}) is None


@pytest.mark.parametrize(
    ("raw", "n"),
    [
        ("135M", 135_000_000),
        ("1.7B", 1_700_000_000),
        (3.8e9, 3_800_000_000),
        ("3.8e9", 3_800_000_000),
        (494032768, 494032768),
    ],
)
def test_parse_parameter_count(raw: object, n: int) -> None:
    assert parse_parameter_count(raw) == n


@pytest.mark.parametrize("raw", ["lots", "", "-5M", True, 0])
def test_parse_parameter_count_rejects(raw: object) -> None:
    with pytest.raises(ParameterCountError):
        parse_parameter_count(raw)


def test_format_and_name_sizes() -> None:
    assert format_parameter_count(134_515_008) == "134.5M" and format_parameter_count(1_711_376_384) == "1.711B"
    assert parameters_from_name("HuggingFaceTB/SmolLM2-360M-Instruct") == 360_000_000
    assert parameters_from_name("Qwen/Qwen2.5-1.5B-Instruct") == 1_500_000_000
    assert parameters_from_name("meta-llama/Llama-3.2-1B") == 1_000_000_000
    assert parameters_from_name("smollm2-135m") == 135_000_000
    assert parameters_from_name("microsoft/Phi-3.5-mini-instruct") is None


def test_wrong_size_names_both(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "small", 134_515_008)
    config = load(write(tmp_path, f"models:\n  - {{name: big, model: {ckpt}, parameters: 1.7B}}\n"))
    with pytest.raises(ModelConfigError) as info:
        check_parameters(config.entries[0], ckpt)
    msg = str(info.value)
    assert "model 'big', field 'parameters'" in msg
    assert "says 1.7B parameters" in msg and "has 134.5M" in msg and str(ckpt) in msg and "±15%" in msg


def test_size_within_tolerance_passes_and_is_reported(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "q", 494_032_768)
    config = load(write(tmp_path, f"models:\n  - {{name: q, model: {ckpt}, parameters: 0.5B}}\n"))
    facts = check_parameters(config.entries[0], ckpt)
    assert facts["counted"] == 494_032_768 and facts["counted_from"].startswith("safetensors")
    assert facts["ratio"] == pytest.approx(500 / 494.032768) and facts["check"] == "within ±15%"


def test_bin_only_checkpoint_is_counted_from_its_config(tmp_path: Path) -> None:
    ckpt = tmp_path / "bin"
    ckpt.mkdir()
    cfg = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "vocab_size": 100,
        "num_attention_heads": 4,
    }
    (ckpt / "config.json").write_text(json.dumps(cfg))
    (ckpt / "pytorch_model.bin").write_bytes(b"\0" * 8)
    counted, how = checkpoint_parameters(ckpt) or (0, "")
    assert counted == config_parameters(cfg) and how == "config.json (estimate)"


# -- what an entry changes -----------------------------------------------------------------------


@pytest.fixture
def two_models(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load(
        write(
            tmp_path,
            """
models:
  - name: a
    model: org/a-135m
    precisions: [bf16, int4]
    engine_args: {max_model_len: 1024, tensor_parallel_size: 2, dtype: bfloat16}
    calibration: {num_samples: 16, max_sequence_length: 64}
    accuracy: {tasks: {slm_mc: {limit: 4}, arith: {}}, limit: 7, num_fewshot: 0}
  - name: b
    model: org/b
""",
        )
    )


def test_models_select_by_name_and_default_to_all(two_models) -> None:  # type: ignore[no-untyped-def]
    assert [n for n, _ in select(Settings(), two_models)] == ["org/a-135m", "org/b"]
    chosen = Settings(models=("b", "other/model"), sources={"models": "--models"})
    assert [(m, e.name if e else None) for m, e in select(chosen, two_models)] == [
        ("org/b", "b"),
        ("other/model", None),
    ]
    by_model = Settings(models=("org/a-135m",), sources={"models": "--models"})
    assert select(by_model, two_models)[0][1] is two_models.entries[0]


def test_precisions_narrowed_by_explicit_option_only(two_models) -> None:  # type: ignore[no-untyped-def]
    a, b = two_models.entries
    assert [p.name for p in precisions_for(Settings(), a)] == ["bf16", "int4"]
    assert [p.name for p in precisions_for(Settings(), b)] == ["bf16"]
    cli = Settings(precisions=resolve_precisions(["int4", "int8"]), sources={"precisions": "--precision"})
    assert [p.name for p in precisions_for(cli, a)] == ["int4"]
    ini = replace(cli, sources={"precisions": "ini option slm_precision"})
    assert [p.name for p in precisions_for(ini, a)] == ["bf16", "int4"]


def test_engine_args_and_command_line_precedence(two_models) -> None:  # type: ignore[no-untyped-def]
    a, _ = two_models.entries
    assert engine_args_for(Settings(), a, get_precision("int4")) == {
        "max_model_len": 1024,
        "tensor_parallel_size": 2,
        "dtype": "bfloat16",
    }
    # a bf16 cell's dtype is the precision's; --slm-max-model-len beats the entry
    cli = Settings(max_model_len=4096, sources={"max_model_len": "--slm-max-model-len"})
    assert engine_args_for(cli, a, get_precision("bf16")) == {"tensor_parallel_size": 2}


def test_settings_for_applies_calibration_and_accuracy(two_models) -> None:  # type: ignore[no-untyped-def]
    a, b = two_models.entries
    s = settings_for(Settings(), a)
    assert (s.num_calibration_samples, s.max_sequence_length) == (16, 64)
    assert s.accuracy_tasks == ("slm_mc", "arith") and s.accuracy_task_limits == {"slm_mc": 4}
    assert (s.accuracy_limit, s.num_fewshot) == (7, 0) and s.sources["num_fewshot"] == a.where
    assert settings_for(Settings(), b).accuracy_tasks == Settings().accuracy_tasks
    cli = Settings(
        accuracy_limit=2,
        num_calibration_samples=8,
        accuracy_tasks=("arith", "mmlu"),
        sources={
            "accuracy_limit": "--slm-accuracy-limit",
            "num_calibration_samples": "environment variable SLM_NUM_CALIBRATION_SAMPLES",
            "accuracy_tasks": "--slm-accuracy-tasks",
        },
    )
    s = settings_for(cli, a)
    assert (s.accuracy_limit, s.num_calibration_samples, s.accuracy_task_limits) == (2, 8, {})
    assert s.accuracy_tasks == ("arith",) == tasks_for(cli, a)


def test_token_comes_from_the_named_variable(tmp_path: Path) -> None:
    config = load(write(tmp_path, "token_env: MY_HUB_TOKEN\nmodels:\n  - {name: a, model: org/a}\n"))
    assert hub_token(config.entries[0], {"MY_HUB_TOKEN": "tok-SECRET-1", "HF_TOKEN": "tok-SECRET-2"}) == "tok-SECRET-1"
    assert hub_token(None, {"HF_TOKEN": "tok-SECRET-2"}) == "tok-SECRET-2" and hub_token(None, {}) is None
    assert "tok-SECRET-1" not in json.dumps(config.entries[0].facts())


def test_resolver_gets_revision_and_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from pytest_slm.checkpoints import resolve as r

    calls = []
    snapshot = write_checkpoint(tmp_path / "snap", 1000)

    def fake_snapshot_download(repo_id: str, **kwargs: object) -> str:
        calls.append(kwargs)
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not cached")
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    ckpt = r.resolve("meta-llama/Llama-3.2-1B", tmp_path / "cache", revision="abc", token="secret-token")
    assert ckpt.path == snapshot
    assert calls[0]["revision"] == "abc" and "token" not in calls[0]
    assert calls[1]["revision"] == "abc" and calls[1]["token"] == "secret-token"


# -- on the fake engine --------------------------------------------------------------------------

ENGINE_TESTS = """
def test_a(slm_engine, slm):
    slm.record("mine.x_s", 1.0, unit="s", higher_is_better=False)

def test_b(slm_engine, slm_engine_facts, slm):
    slm.record("mine.y_s", 2.0, unit="s", higher_is_better=False)
"""


@pytest.fixture
def cfg_two(tmp_path: Path) -> Path:
    write_checkpoint(tmp_path / "ckpts" / "small", 135_000_000)
    write_checkpoint(tmp_path / "ckpts" / "big", 360_000_000)
    return write(
        tmp_path,
        """
models:
  - name: small-one
    model: ckpts/small
    parameters: 135M
    precisions: [bf16, int4]
    engine_args: {tensor_parallel_size: 2, distributed_executor_backend: mp, max_model_len: 1024}
  - name: big-one
    model: ckpts/big
    parameters: 360M
""",
        "cfg.yaml",
    )


def test_config_drives_ids_precisions_and_engine_args(slm_pytester, cfg_two: Path) -> None:
    slm_pytester.pytester.makepyfile(ENGINE_TESTS)
    # (the harness passes --models itself; naming both entries here stands for "every entry")
    result = slm_pytester.run(
        "--slm-models-config", str(cfg_two), "--models", "small-one", "big-one", "--precision", "bf16", "int4", "fp16"
    )
    # small-one: its own [bf16, int4] narrowed by --precision; big-one: no list, so the session's three
    result.assert_outcomes(passed=10)
    doc = slm_pytester.results()
    engines = doc["environment"]["engines"]
    assert set(engines) == {"small-one-bf16", "small-one-int4", "big-one-bf16", "big-one-int4", "big-one-fp16"}
    small = engines["small-one-int4"]
    assert small["engine_args"] == {
        "tensor_parallel_size": 2,
        "distributed_executor_backend": "mp",
        "max_model_len": 1024,
    }
    assert small["parallel"]["devices"] == 2 and small["parallel"]["label"] == "tp2-pp1-mp"
    assert small["model_config"]["parameter_check"]["counted"] == 135_000_000
    assert engines["big-one-bf16"]["engine_args"] == {} and engines["big-one-bf16"]["parallel"]["label"] == "tp1-pp1"
    layouts = {(r["model"], r["parallel"]) for r in doc["records"]}
    assert layouts == {("small-one", "tp2-pp1-mp"), ("big-one", "tp1-pp1")}


def test_models_option_takes_a_config_name(slm_pytester, cfg_two: Path, fake_checkpoint: Path) -> None:
    slm_pytester.pytester.makepyfile(ENGINE_TESTS)
    result = slm_pytester.run(
        "--slm-models-config", str(cfg_two), "--models", "big-one", str(fake_checkpoint), "--collect-only", "-q"
    )
    assert result.ret == 0
    ids = sorted(line.split("[")[1].rstrip("]") for line in result.outlines if "::test_a[" in line)
    assert ids == ["big-one-bf16", "tiny-model-bf16"]


def test_wrong_size_fails_that_models_tests_naming_both(slm_pytester, tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "ckpts" / "small", 134_515_008)
    cfg = write(tmp_path, "models:\n  - {name: claims-big, model: ckpts/small, parameters: 1.7B}\n", "cfg.yaml")
    slm_pytester.pytester.makepyfile(ENGINE_TESTS)
    result = slm_pytester.run("--slm-models-config", str(cfg), "--models", "claims-big")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*cfg.yaml: model 'claims-big', field 'parameters': says 1.7B parameters but the checkpoint * has 134.5M*"]
    )


def test_bad_config_is_a_usage_error(slm_pytester, tmp_path: Path) -> None:
    cfg = write(tmp_path, "models:\n  - {name: a, model: org/a, engine_args: {tp: 2}}\n", "cfg.yaml")
    slm_pytester.pytester.makepyfile(ENGINE_TESTS)
    result = slm_pytester.run("--slm-models-config", str(cfg))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-slm: *cfg.yaml: model 'a', field 'engine_args.tp': unknown key*"])


def test_env_and_ini_twins(slm_pytester, cfg_two: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slm_pytester.pytester.makepyfile(ENGINE_TESTS)
    monkeypatch.setenv("SLM_MODELS_CONFIG", str(cfg_two))
    result = slm_pytester.run("--collect-only", "-q", "--models", "big-one")
    result.stdout.fnmatch_lines(["*test_a[[]big-one-bf16[]]"])
    monkeypatch.delenv("SLM_MODELS_CONFIG")
    # ini: a relative path is relative to the ini file
    (slm_pytester.pytester.path / "conf").mkdir()
    absolute = cfg_two.read_text().replace("ckpts/", f"{cfg_two.parent}/ckpts/")
    (slm_pytester.pytester.path / "conf" / "m.yaml").write_text(absolute)
    slm_pytester.pytester.makeini(
        "[pytest]\nfilterwarnings = error\naddopts = --strict-markers\nslm_models_config = conf/m.yaml\n"
    )
    # (without the harness's path arguments, so that the rootdir, and with it the ini file, is this directory)
    result = slm_pytester.pytester.runpytest(
        "-p", "no:cacheprovider", "--slm-engine", FAKE_ENGINE, "--models", "small-one", "--collect-only", "-q"
    )
    result.stdout.fnmatch_lines(["*test_a[[]small-one-int4[]]"])


def test_token_never_reaches_the_reports(
    slm_pytester, cfg_two: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "hf_NEVER_IN_REPORTS_4711"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("SLM_GATED_TOKEN", secret)
    gated = cfg_two.read_text().replace("models:", "token_env: SLM_GATED_TOKEN\nmodels:")
    cfg_two.write_text(gated)
    baselines = tmp_path / "baselines"
    slm_pytester.pytester.makepyfile(ENGINE_TESTS)
    result = slm_pytester.run(
        "--slm-models-config",
        str(cfg_two),
        "--models",
        "small-one",
        "big-one",
        "--slm-save-baseline",
        "--slm-baseline-dir",
        str(baselines),
    )
    result.assert_outcomes(passed=6)
    out = slm_pytester.output
    assert (out / "results.json").read_text().count("SLM_GATED_TOKEN") >= 1  # the variable's name, for the record
    for path in [out / "results.json", out / "results.md", *out.rglob("*.json")]:
        assert secret not in path.read_text(), path
    saved = list(baselines.rglob("*.json"))
    assert len(saved) == 3
    for path in saved:
        assert secret not in path.read_text(), path
    assert secret not in result.stdout.str()


ACCURACY_BENCH = (REPO / "benches" / "test_accuracy.py").read_text()


def test_per_model_tasks_and_limits_reach_the_accuracy_tests(slm_pytester, tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "ckpts" / "one", 1000)
    write_checkpoint(tmp_path / "ckpts" / "two", 1000)
    cfg = write(
        tmp_path,
        """
models:
  - name: one
    model: ckpts/one
    accuracy: {tasks: {slm_mc: {limit: 4}}, num_fewshot: 0}
  - name: two
    model: ckpts/two
    accuracy: {tasks: [slm_mc, slm_ppl], limit: 6, num_fewshot: 0}
""",
        "cfg.yaml",
    )
    slm_pytester.pytester.makepyfile(ACCURACY_BENCH)
    result = slm_pytester.run(
        "--slm-models-config", str(cfg), "--models", "one", "two", "-k", "test_accuracy", subprocess=True
    )
    # model one does not run slm_ppl: that item is deselected, not skipped
    # -k drops the 2 perplexity and 4 retention items
    result.assert_outcomes(passed=3, deselected=7)
    recs = {(r["model"], r["metric"]): r for r in slm_pytester.results()["records"]}
    assert recs[("one", "slm_mc.acc")]["n"] == 4 and recs[("two", "slm_mc.acc")]["n"] == 6
    assert recs[("one", "slm_mc.acc")]["info"]["num_fewshot"] == 0
    assert ("one", "slm_ppl.word_perplexity") not in recs and ("two", "slm_ppl.word_perplexity") in recs


def test_chat_template_reaches_the_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "t.jinja").write_text("{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}")
    cfg = write(tmp_path, "models:\n  - {name: a, model: org/a, engine_args: {chat_template: t.jinja}}\n")
    (entry,) = load(cfg).entries
    assert entry.engine_args["chat_template"] == str((tmp_path / "t.jinja").resolve())

    class Engine:
        tokenizer = type("Tok", (), {"chat_template": None})()

    engine = Engine()
    apply_chat_template(engine, entry.engine_args)
    assert engine.tokenizer.chat_template == "{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}"
    apply_chat_template(engine, {"chat_template": "{{ messages }}"})
    assert engine.tokenizer.chat_template == "{{ messages }}"


def test_calibration_reaches_quantization_and_its_cache_key(tmp_path: Path) -> None:
    from pytest_slm.checkpoints.quantize import cache_key
    from pytest_slm.checkpoints.resolve import Checkpoint

    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2}
    ckpt = write_checkpoint(tmp_path / "m", 1000, {"model_type": "llama", "vocab_size": 100, **sizes})
    cfg = write(
        tmp_path, "models:\n  - {name: m, model: ./m, calibration: {num_samples: 16, max_sequence_length: 64}}\n"
    )
    (entry,) = load(cfg).entries
    source = Checkpoint("m", ckpt, str(ckpt), "0" * 64)
    key, doc = cache_key(source, get_precision("int4"), settings_for(Settings(), entry))
    plain_key, plain = cache_key(source, get_precision("int4"), Settings())
    assert (doc["calibration"]["num_samples"], doc["calibration"]["max_sequence_length"]) == (16, 64)
    assert plain["calibration"]["num_samples"] == 512 and key != plain_key


def test_every_entry_runs_without_models(slm_pytester, cfg_two: Path) -> None:
    slm_pytester.pytester.makepyfile(ENGINE_TESTS)
    result = slm_pytester.pytester.runpytest(
        "-p", "no:cacheprovider", "--slm-engine", FAKE_ENGINE, "--slm-models-config", str(cfg_two), "--co", "-q"
    )
    ids = sorted(line.split("[")[1].rstrip("]") for line in result.outlines if "::test_a[" in line)
    assert ids == ["big-one-bf16", "small-one-bf16", "small-one-int4"]


def test_kv_cache_dtype_is_the_models_axis(tmp_path: Path) -> None:
    from pytest_slm.parametrize import engine_specs

    cfg = write(tmp_path, "models:\n  - {name: a, model: org/a, engine_args: {kv_cache_dtype: [auto, fp8]}}\n")
    (entry,) = load(cfg).entries
    assert [s.id for s in engine_specs(Settings(), load(cfg))] == ["a-bf16", "a-bf16-kvfp8"]
    assert "kv_cache_dtype" not in engine_args_for(Settings(), entry, get_precision("bf16"))  # the axis carries it
    cli = Settings(kv_cache_dtype=("fp8_e5m2",), sources={"kv_cache_dtype": "--slm-kv-cache-dtype"})
    assert [s.id for s in engine_specs(cli, load(cfg))] == ["a-bf16-kvfp8_e5m2"]
    bad = write(tmp_path, "models:\n  - {name: a, model: org/a, engine_args: {kv_cache_dtype: fp4}}\n", "bad.yaml")
    assert "field 'engine_args.kv_cache_dtype': must be one of auto, fp8" in error(bad)
