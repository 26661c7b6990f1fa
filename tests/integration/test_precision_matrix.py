"""Integration tier: really quantize SmolLM2 to int4 (GPTQ W4A16) and int8 (SmoothQuant + GPTQ
W8A8) and prune it (SparseGPT 2:4, Wanda 50 %) with llmcompressor, serve all with vLLM next to bf16,
and measure accuracy (the GSM8K subset pytest-slm ships, through lm-eval's own gsm8k config; the shipped
multiple-choice set; perplexity), retention, sparsity on the saved tensors, the decode roofline and
seconds per correct answer on the same engines. A small calibration keeps CI inside its budget.
Not marked ``timed``: scripts/test.sh runs it beside the other untimed modules."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_slm.measure.validity import machine_made
from tests.integration.voided import assert_the_machine_voided_at_most_its_share

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
#: the precisions the matrix measures: bf16, the two quantized kinds and the two pruned kinds
PRECISIONS = ("bf16", "int4", "int8", "sparse-2of4", "wanda-50")
#: measured runs per timed test (after one warm-up)
RUNS = 2
#: calibration of the quantized checkpoints: 8 samples of 64 tokens, since the tier checks what quantization
#: makes and what vLLM serves, not what a full calibration is worth (the product's default is 512)
CALIBRATION_SAMPLES = 8
#: GSM8K's generation path on bf16 and int4 only: each other engine would add half a minute for the same path
GSM8K_PRECISIONS = ("bf16", "int4")


@pytest.fixture(scope="module")
def matrix_run(
    tmp_path_factory: pytest.TempPathFactory, run_benches
) -> tuple[subprocess.CompletedProcess[str], dict, Path]:  # type: ignore[no-untyped-def, type-arg]
    quantized = tmp_path_factory.mktemp("quantized")  # empty: CI quantizes for real every time
    proc, doc = run_benches(
        tmp_path_factory.mktemp("matrix"),
        "--precision",
        *PRECISIONS,
        "--slm-quantized-models-dir",
        str(quantized),
        "--slm-num-calibration-samples",
        str(CALIBRATION_SAMPLES),
        "--slm-max-sequence-length",
        "64",
        "--slm-num-warmup",
        "1",
        "--slm-num-runs",
        str(RUNS),
        "--slm-batch-size",
        "4",
        "--slm-max-new-tokens",
        "16",
        "--slm-accuracy-tasks",
        "gsm8k_local",
        "slm_mc",
        "--slm-accuracy-limit",
        "10",
        # untimed: scripts/test.sh runs this module beside others, so the figures that are timings (offline
        # throughput, speed-up, MBU) are checked for their shape here, and on a quiet machine in test_vllm_cpu
        "--slm-max-foreign-load",
        "2",
        "--slm-no-machine-check",
        "-k",
        "(checkpoint or offline_throughput or speedup or accuracy or perplexity or retention or roofline "
        "or memory_bandwidth or seconds_per_correct) and not (gsm8k_local and (int8 or sparse or wanda))",
    )
    return proc, doc, quantized


def rec(doc: dict, precision: str, metric: str) -> dict:  # type: ignore[type-arg]
    return next(r for r in doc["records"] if r.get("precision") == precision and r["metric"] == metric)


def test_matrix_runs_and_only_the_retention_rule_may_fail(matrix_run) -> None:  # type: ignore[no-untyped-def]
    """Everything passes except, possibly, a retention test whose rule found the quantized model worse
    than the default floor (0.95) with confidence: with 32 calibration samples that is a real finding
    about the model, and the failure must say so with both figures. Machine-made invalid figures
    (other processes, the hypervisor, the reference kernel changing speed around a window: seen on
    this VM as 13 to 19 % within one window) are not the plugin's failures either, as long as they
    void at most three quarters of the checked tests (``tests/integration/voided.py``)."""
    proc, doc, _ = matrix_run
    engines = doc["environment"]["engines"]
    for r in doc["records"]:
        if r["outcome"] == "passed":
            continue
        if r["outcome"] == "invalid" and machine_made(r["invalid_reasons"]):
            continue
        assert "test_retention" in r["test"] and r["outcome"] == "failed", (r["test"], proc.stdout[-4000:])
    assert_the_machine_voided_at_most_its_share(doc)  # some windows, never most
    failed_retention = {
        r["test"] for r in doc["records"] if r["metric"].endswith(".retention") and r["info"]["verdict"] == "fails"
    }
    failed_tests = {r["test"] for r in doc["records"] if r["outcome"] == "failed"}
    assert failed_tests == failed_retention
    for test in failed_tests:
        assert "below the floor with confidence" in proc.stdout and "fails the floor 0.95" in proc.stdout, test
    assert set(engines) == {f"smollm2-135m-{p}" for p in ("bf16", "int4", "int8", "sparse-2of4", "wanda-50")}


@pytest.mark.parametrize(("precision", "kernel", "bits"), [("int4", "WNA16", [4]), ("int8", "Int8", [8])])
def test_quantized_checkpoint_is_what_vllm_serves(matrix_run, precision: str, kernel: str, bits: list[int]) -> None:  # type: ignore[no-untyped-def]
    _, doc, _ = matrix_run
    ratio = rec(doc, precision, "compression_ratio")
    assert ratio["value"] > 1.3, "a quantized checkpoint must be smaller than bf16"
    assert ratio["info"]["quantization_config"]["weight_bits"] == bits
    assert ratio["info"]["quantization_config"]["ignore"] == ["lm_head"]
    assert any(kernel in k for k in ratio["info"]["linear_kernels"]), ratio["info"]["linear_kernels"]
    quant = rec(doc, precision, "quantize_s")  # measured in this run: the cache dir starts empty
    assert quant["value"] > 0 and quant["info"]["samples_used"] == CALIBRATION_SAMPLES
    assert rec(doc, precision, "quantize_cache_hit")["value"] == 0
    assert not [r for r in doc["records"] if r.get("precision") == precision and r["metric"] == "quantize_recorded_s"]
    # a re-quantization of the embedded bf16 checkpoint, itself dequantized from the Q4_1 GGUF
    origin = doc["environment"]["engines"][f"smollm2-135m-{precision}"]["checkpoint_origin"]
    assert (
        origin["precision"] == precision
        and origin["quantized_from"] == doc["environment"]["engines"]["smollm2-135m-bf16"]["checkpoint"]
    )
    assert origin["source_origin"]["gguf_file_type"] == "Q4_1"
    if precision == "int4":
        assert quant["info"]["group_size"] == 64  # SmolLM2's 576 rules out 128
    assert rec(doc, precision, "output_tokens_per_s")["value"] > 0


def test_second_request_hits_the_cache(matrix_run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from pytest_slm.checkpoints import quantize as q
    from pytest_slm.checkpoints.resolve import resolve
    from pytest_slm.precisions import get_precision
    from pytest_slm.settings import Settings

    _, _, quantized = matrix_run
    settings = replace(
        Settings(),
        quantized_models_dir=quantized,
        num_calibration_samples=CALIBRATION_SAMPLES,
        max_sequence_length=64,
    )
    monkeypatch.setattr(q, "_run_worker", lambda *a: pytest.fail("a cache hit must not quantize"))
    source = resolve("smollm2-135m", settings.cache_dir)
    for name in ("int4", "int8"):
        t0 = time.perf_counter()
        stats: dict = {}  # type: ignore[type-arg]
        ck = q.quantized_checkpoint(source, get_precision(name), settings, stats=stats)
        assert stats["cache_hit"] is True
        assert time.perf_counter() - t0 < 5 and ck.path.parent == quantized


def test_accuracy_on_real_items(matrix_run) -> None:  # type: ignore[no-untyped-def]
    _, doc, _ = matrix_run
    for precision in GSM8K_PRECISIONS:
        em = rec(doc, precision, "gsm8k_local.exact_match.strict_match")
        assert em["n"] == 10 and len(em["samples"]) == 10 and em["info"]["num_fewshot"] == 5
    for precision in ("bf16", "int4", "int8"):
        acc = rec(doc, precision, "slm_mc.acc")
        assert acc["n"] == 10 and acc["stderr"] is not None
        # a working 135M model answers the shipped easy questions far above chance (0.25)
        assert acc["value"] >= 0.5, acc
        assert rec(doc, precision, "slm_ppl.word_perplexity")["value"] > 1
    for precision in ("int4", "int8"):
        ret = rec(doc, precision, "slm_mc.acc.retention")
        assert ret["value"] == pytest.approx(
            rec(doc, precision, "slm_mc.acc")["value"] / rec(doc, "bf16", "slm_mc.acc")["value"]
        )
        assert ret["info"]["floor"] == 0.95 and ret["info"]["method"].startswith("paired items")
        # 10 items cannot show a 5 % shortfall with confidence either way unless the answers differ a lot
        assert ret["info"]["verdict"] in ("passes", "fails", "inconclusive")
        ppl = rec(doc, precision, "slm_ppl.word_perplexity.retention")
        assert ppl["info"]["method"].startswith("paired bootstrap over") and ppl["value"] > 0.3
        assert not any(r["metric"] == "slm_mc.items_per_s.retention" for r in doc["records"])
        speedup = rec(doc, precision, "output_tokens_per_s_over_bf16")
        assert speedup["value"] > 0 and speedup["info"]["bf16_tokens_per_s"] > 0 and not speedup["gated"]


@pytest.mark.parametrize("precision", ["sparse-2of4", "wanda-50"])
def test_pruned_checkpoints_measured_on_saved_tensors_and_served_dense(matrix_run, precision: str) -> None:  # type: ignore[no-untyped-def]
    _, doc, _ = matrix_run
    sparsity = rec(doc, precision, "weight_sparsity")
    assert sparsity["outcome"] == "passed" and sparsity["value"] == pytest.approx(0.5, abs=0.005)
    assert rec(doc, precision, "weight_sparsity_min_layer")["value"] >= 0.495
    assert sparsity["info"]["layers_measured"] == 210  # 30 layers x 7 linear kinds; embeddings, lm_head not pruned
    two_of_four = rec(doc, precision, "two_of_four_group_fraction")["value"]
    if precision == "sparse-2of4":
        assert sparsity["info"]["two_of_four"] is True and two_of_four == 1.0
    else:  # unstructured: some 4-groups keep 3 or 4 weights
        assert sparsity["info"]["two_of_four"] is False and two_of_four < 1.0
    engine = doc["environment"]["engines"][f"smollm2-135m-{precision}"]
    assert "no sparse kernel" in engine["sparse_execution"]
    assert set(engine["linear_kernels"]) == set(doc["environment"]["engines"]["smollm2-135m-bf16"]["linear_kernels"])
    # dense on disk too: no smaller than bf16
    assert rec(doc, precision, "compression_ratio")["value"] == pytest.approx(1.0, abs=0.01)
    # accuracy is measured and compared with bf16 on the same items (pruning SmolLM2 may fail the 0.95 floor)
    ret = rec(doc, precision, "slm_mc.acc.retention")
    assert ret["value"] == pytest.approx(
        rec(doc, precision, "slm_mc.acc")["value"] / rec(doc, "bf16", "slm_mc.acc")["value"]
    )
    ppl = rec(doc, precision, "slm_ppl.word_perplexity")["value"]
    assert ppl > rec(doc, "bf16", "slm_ppl.word_perplexity")["value"], "pruning half the weights costs perplexity"


def test_bandwidth_and_mbu_on_this_cpu(matrix_run) -> None:  # type: ignore[no-untyped-def]
    _, doc, _ = matrix_run
    bw = next(r for r in doc["records"] if r["metric"] == "memory_bandwidth_bytes_per_s")
    assert 1e9 < bw["value"] < 1e12 and "copy and triad" in bw["info"]["method"]
    for precision in ("bf16", "int4", "int8", "sparse-2of4", "wanda-50"):
        mbu = rec(doc, precision, "mbu")
        # MBU shares the single-stream latency run's verdict: the machine may void it (never MBU above 1)
        assert mbu["outcome"] == "passed" or machine_made(mbu["invalid_reasons"]), mbu
        assert 0 < mbu["value"] <= 1, mbu
        assert len(mbu["samples"]) == RUNS
        b = rec(doc, precision, "decode_bytes_per_token")
        assert rec(doc, precision, "roofline_tpot_s")["value"] == pytest.approx(b["value"] / bw["value"])
        assert b["info"]["tied_embeddings"] is True
    # weights at their stored precision: int4 moves fewer bytes per token than int8, int8 fewer than bf16
    bytes_ = {p: rec(doc, p, "decode_bytes_per_token")["value"] for p in ("bf16", "int4", "int8", "sparse-2of4")}
    assert bytes_["int4"] < bytes_["int8"] < bytes_["bf16"] == pytest.approx(bytes_["sparse-2of4"], rel=0.01)


def test_seconds_per_correct_answer(matrix_run) -> None:  # type: ignore[no-untyped-def]
    _, doc, _ = matrix_run
    for precision in ("bf16", "int4"):
        s = [r for r in doc["records"] if r.get("precision") == precision and r["metric"] == "s_per_correct_answer"]
        mc = next(r for r in s if "slm_mc" in r["test"])
        assert mc["info"]["items"] == 10 and mc["info"]["correctness_metric"] == "slm_mc.acc"
        assert mc["value"] == pytest.approx(mc["info"]["wall_s"] / mc["info"]["correct"])
