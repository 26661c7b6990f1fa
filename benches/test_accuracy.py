"""Accuracy as tests: lm-eval tasks, perplexity, and retention of quantized precisions vs bf16.

All of it runs on the engine the latency tests already loaded (no second engine). Tasks come
from ``--slm-accuracy-tasks``; a task whose dataset cannot be loaded here is skipped with the reason.
"""

from __future__ import annotations

import pytest

from pytest_slm.accuracy.evaluate import TaskUnavailable
from pytest_slm.accuracy.retention import decide, is_quality


def _run(slm_accuracy, task):
    try:
        return slm_accuracy.run(task)
    except TaskUnavailable as exc:
        pytest.skip(str(exc))


def test_accuracy(slm_accuracy, slm_task, slm):
    """Every lm-eval metric of the task with its stderr, n items, few-shot count and limit;
    per-item scores are kept as the metric's samples."""
    result = _run(slm_accuracy, slm_task)
    slm.extend(result.metrics)
    if slm.settings.log_samples:
        slm.attach(f"samples/{slm.spec.id}/{slm_task}.jsonl", result.raw.get("samples", {}).get(slm_task, []))


def test_perplexity(slm_accuracy, slm):
    """Word, byte and token perplexity and bits per byte over ``--slm-perplexity-corpus``."""
    slm.extend(_run(slm_accuracy, "slm_ppl").metrics)


def test_retention(slm_accuracy, slm_retention_task, slm):
    """Quantized (or pruned) ÷ bf16 of the same model on the same items, direction-aware (for
    perplexity, bf16 ÷ quantized), for quality metrics only, decided against ``--slm-retention-floor``
    (default 0.95) with the uncertainty of both sides: fails when retention is below the floor
    with confidence, passes when above it with confidence, else inconclusive (recorded, with the
    shortfall these items could have detected). A non-default KV-cache dtype is compared with the
    same precision at KV dtype auto."""
    precision = slm.spec.precision
    kv = slm.spec.kv_cache_dtype
    if not precision.quantized and kv == "auto":
        s = slm.settings
        if any(p.quantized for p in s.precisions) or any(k != "auto" for k in s.kv_cache_dtype):
            # the reference later cells are compared with: evaluated now, while this engine is loaded
            _run(slm_accuracy, slm_retention_task)
        pytest.skip(
            f"retention compares a quantized/pruned precision with bf16, or a KV-cache dtype with auto; "
            f"this cell is {precision.name}"
        )
    ref_name = slm_accuracy.reference_name
    label = precision.name if kv == "auto" else f"{precision.name} (kv {kv})"
    reference = slm_accuracy.reference(slm_retention_task)
    if reference is None:
        how = f"--precision bf16 {precision.name}" if kv == "auto" else f"--slm-kv-cache-dtype auto {kv}"
        pytest.skip(
            f"no {ref_name} result for {slm_accuracy.model} on {slm_retention_task} in this session; run with {how}"
        )
    current = _run(slm_accuracy, slm_retention_task)
    floor = slm.settings.floor_for(slm_retention_task)
    failed = []
    for m in current.metrics:
        ref = next((r for r in reference.metrics if r.name == m.name), None)
        if ref is None or ref.value == 0 or m.value == 0 or not is_quality(m):
            continue
        r = decide(ref, m, floor)
        slm.record(
            f"{m.name}.retention",
            r.retention,
            unit="1",
            higher_is_better=True,
            verdict=r.verdict,
            low=r.low,
            high=r.high,
            method=r.method,
            note=r.note,
            detectable_shortfall=r.detectable_shortfall,
            reference=ref.value,
            reference_stderr=ref.stderr,
            current=m.value,
            current_stderr=m.stderr,
            floor=floor,
            reference_precision=ref_name,
        )
        if r.verdict == "fails":
            failed.append(r.message(label, m.value, ref.value, ref_name))
    assert not failed, "retention below the floor with confidence:\n" + "\n".join(failed)
