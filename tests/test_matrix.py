"""The model × precision matrix: ids, one engine load per cell, teardown before the next."""

from __future__ import annotations

from pathlib import Path

import pytest

TWO_TESTS = """
def test_a(slm_engine, slm):
    slm.record("x_s", 1.0, unit="s", higher_is_better=False)

def test_b(slm_engine, slm):
    slm.record("y_s", 2.0, unit="s", higher_is_better=False)

def test_no_engine(slm):
    slm.record("z", 3.0, unit="1", higher_is_better=True)
"""


def test_ids_are_model_and_precision(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(TWO_TESTS)
    result = slm_pytester.run("--collect-only", "-q", "--precision", "bf16", "FP16")
    result.stdout.fnmatch_lines_random(
        [
            "*test_a[[]tiny-model-bf16[]]",
            "*test_a[[]tiny-model-fp16[]]",
            "*test_b[[]tiny-model-bf16[]]",
            "*test_b[[]tiny-model-fp16[]]",
            "*test_no_engine",
        ]
    )
    assert slm_pytester.engine_log() == [], "collection must not load engines"


def test_one_load_per_cell_closed_before_the_next(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(TWO_TESTS)
    result = slm_pytester.run("--precision", "bf16", "fp16", "-v")
    result.assert_outcomes(passed=5)
    log = [line.split(" pid=")[0] for line in slm_pytester.engine_log()]
    assert log == ["load tiny-model-bf16", "close tiny-model-bf16", "load tiny-model-fp16", "close tiny-model-fp16"]
    # tests sharing an engine ran together
    order = [line.split("::")[1].split(" ")[0] for line in result.outlines if "PASSED" in line]
    assert order.index("test_b[tiny-model-bf16]") < order.index("test_a[tiny-model-fp16]")


def test_two_models_two_ids(slm_pytester, fake_checkpoint: Path, tmp_path: Path) -> None:
    other = tmp_path / "Other-Model"
    other.mkdir()
    for f in fake_checkpoint.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    slm_pytester.pytester.makepyfile(TWO_TESTS)
    result = slm_pytester.run("--models", str(fake_checkpoint), str(other), "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_a[[]tiny-model-bf16[]]", "*test_a[[]other-model-bf16[]]"])


def test_missing_model_path_errors_that_cells_tests_only(slm_pytester, tmp_path: Path) -> None:
    slm_pytester.pytester.makepyfile(TWO_TESTS)
    result = slm_pytester.run("--models", str(tmp_path / "nope"))
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*ModelResolutionError: model '*nope': no such directory*"])


def test_directory_without_checkpoint_is_a_clear_error(slm_pytester, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    slm_pytester.pytester.makepyfile(TWO_TESTS)
    result = slm_pytester.run("--models", str(empty))
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*is not a Hugging Face checkpoint directory (needs config.json and*"])


def test_uncached_hub_id_offline_says_how_to_pass_a_path(
    slm_pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    slm_pytester.pytester.makepyfile(TWO_TESTS)
    result = slm_pytester.run("--models", "SomeOrg/not-cached-model", subprocess=True)
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*model 'SomeOrg/not-cached-model' is not in the local Hugging Face cache and the hub is unreachable*"
            "--models /path/to/checkpoint*",
        ]
    )


def test_unknown_engine_lists_registered_names(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(TWO_TESTS)
    result = slm_pytester.run("--slm-engine", "tensorrt")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*unknown engine 'tensorrt'; valid: openai, vllm or module:Class*"])


def test_xdist_group_keeps_an_engine_on_one_worker(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(TWO_TESTS)
    result = slm_pytester.run("--precision", "bf16", "fp16", "-n", "2", subprocess=True)
    result.assert_outcomes(passed=5)
    loads = [line for line in slm_pytester.engine_log() if line.startswith("load")]
    assert sorted(line.split(" pid=")[0] for line in loads) == ["load tiny-model-bf16", "load tiny-model-fp16"]


KV_TESTS = """
import pytest
from pytest_slm.measure.latency import latency_metrics

@pytest.mark.parametrize("streams", ["single"])
def test_tpot(slm_runs, slm, streams):
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload(streams)), "tpot"))

def test_size(slm_engine, slm):
    slm.record("checkpoint_bytes", 10, unit="B", higher_is_better=False)
"""


def test_kv_cache_dtype_is_an_axis_with_auto_left_out_of_ids_and_workloads(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(KV_TESTS)
    result = slm_pytester.run("--slm-kv-cache-dtype", "auto", "FP8", "-v")
    result.assert_outcomes(passed=4)
    log = [line.split(" pid=")[0] for line in slm_pytester.engine_log()]
    assert log == [
        "load tiny-model-bf16",
        "close tiny-model-bf16",
        "load tiny-model-bf16-kvfp8",
        "close tiny-model-bf16-kvfp8",
    ]
    records = slm_pytester.results()["records"]
    tpot = {r["engine_id"]: r for r in records if r["metric"] == "tpot_p50_s"}
    assert set(tpot) == {"tiny-model-bf16", "tiny-model-bf16-kvfp8"}
    assert "kv_cache_dtype" not in tpot["tiny-model-bf16"]["info"]["workload"]
    assert tpot["tiny-model-bf16-kvfp8"]["info"]["workload"]["kv_cache_dtype"] == "fp8"
    size = {r["engine_id"]: r for r in records if r["metric"] == "checkpoint_bytes"}
    assert size["tiny-model-bf16-kvfp8"]["info"]["workload"] == {"kv_cache_dtype": "fp8"}
    assert {r["kv_cache_dtype"] for r in records} == {"auto", "fp8"}
    # same precision, two KV dtypes: two baseline identities, never compared with each other
    keys = {r["engine_id"]: r["baseline_key"].split("::", 1)[1] for r in records if r["metric"] == "tpot_p50_s"}
    assert keys == {
        "tiny-model-bf16": "test_tpot[single]::tpot_p50_s",
        "tiny-model-bf16-kvfp8": "test_tpot[kvfp8-single]::tpot_p50_s",
    }


def test_unknown_kv_cache_dtype_is_a_usage_error(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(KV_TESTS)
    result = slm_pytester.run("--slm-kv-cache-dtype", "int3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--slm-kv-cache-dtype: kv cache dtype [[]'int3'[]] unknown; valid: auto, fp8*"])
