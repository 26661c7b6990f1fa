"""Serving-mode building blocks without a server: load levels, arrivals, the driver, SLOs and goodput,
the saturation point, Prometheus deltas, the loop-lag monitor, and the managed server process."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_slm.engine_api import SamplingSpec, StreamTrace
from pytest_slm.engines.openai import prom
from pytest_slm.engines.openai.server import ServerError, ServerProcess, cli_args, free_port, vllm_server_argv
from pytest_slm.serving.goodput import attainment, saturation_point
from pytest_slm.serving.load import LoadSpec, PlannedRequest, ServedRequest, ServingRun, arrival_offsets, drive, levels
from pytest_slm.serving.loopmon import LoopLagMonitor
from pytest_slm.serving.metrics import client_check, per_request_columns
from pytest_slm.slo import PRESETS, SLOError, parse_slo, request_meets


# -- levels and arrivals ----------------------------------------------------------------------------
def test_level_ids_and_validation() -> None:
    lv = levels([1, 8], [0.5, 4, math.inf], requests=10, max_s=30)
    assert [x.id for x in lv] == ["c1", "c8", "r0.5", "r4", "rinf"]
    assert lv[4].describe()["load_value"] == "inf" and lv[1].describe()["load_value"] == 8
    for bad in (("concurrency", 0), ("concurrency", 1.5), ("rate", 0), ("bogus", 1)):
        with pytest.raises(ValueError):
            LoadSpec(bad[0], bad[1], 10)


def test_poisson_arrivals_have_the_asked_rate_and_are_seeded() -> None:
    offsets = arrival_offsets(5.0, 4000, seed=1)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert offsets[0] == 0 and all(g >= 0 for g in gaps)
    assert statistics.fmean(gaps) == pytest.approx(0.2, rel=0.05)
    assert statistics.stdev(gaps) == pytest.approx(0.2, rel=0.08)  # exponential: sd = mean
    assert arrival_offsets(5.0, 10, seed=1) == offsets[:10] != arrival_offsets(5.0, 10, seed=2)
    assert arrival_offsets(math.inf, 3) == [0.0, 0.0, 0.0]


def test_drive_keeps_exactly_c_requests_in_flight() -> None:
    in_flight = peak = 0

    async def send(i: int, intended: float) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005 * (1 + i % 3))
        in_flight -= 1
        return i

    out = asyncio.run(drive(LoadSpec("concurrency", 3, 20), 20, send))
    assert [i for i, _, _ in out] == list(range(20)) and peak == 3


def test_drive_sends_at_the_poisson_times() -> None:
    sent: list[float] = []

    async def send(i: int, intended: float) -> float:
        sent.append(time.perf_counter() - intended)
        return intended

    out = asyncio.run(drive(LoadSpec("rate", 50, 30, seed=3), 30, send))
    t0 = out[0][1]
    assert [round(t - t0, 6) for _, t, _ in out] == [round(x, 6) for x in arrival_offsets(50, 30, 3)]
    assert statistics.median(sent) < 0.01  # the driver sends on time when nothing else loads the loop


def test_drive_stops_starting_requests_at_the_time_budget() -> None:
    async def send(i: int, intended: float) -> int:
        await asyncio.sleep(0.05)
        return i

    t0 = time.perf_counter()
    out = asyncio.run(drive(LoadSpec("concurrency", 1, 100, max_s=0.12), 100, send))
    assert 2 <= len(out) <= 4 and time.perf_counter() - t0 < 0.5


def test_loop_lag_monitor_sees_a_blocked_loop() -> None:
    async def main() -> dict[str, float]:
        async with LoopLagMonitor(interval_s=0.002) as mon:
            await asyncio.sleep(0.05)
            time.sleep(0.08)  # the loop is blocked: the ticker wakes ~80 ms late
            await asyncio.sleep(0.02)
        return mon.summary()

    s = asyncio.run(main())
    assert s["ticks"] > 5 and s["max_s"] > 0.06 and s["p50_s"] < 0.03


def _run(lag_p99: float | None, skews: list[float], skew_is_client: bool = True) -> ServingRun:
    reqs = tuple(
        ServedRequest(i, 10.0, StreamTrace(10.0 + s, (10.1 + s, 10.2 + s), 5), "") for i, s in enumerate(skews)
    )
    lag = {"p99_s": lag_p99, "max_s": lag_p99, "ticks": 100} if lag_p99 is not None else {}
    return ServingRun(LoadSpec("rate", 2, len(skews)), reqs, 1.0, "test", len(skews), lag, skew_is_client)


def test_client_check_flags_a_late_client_and_only_a_client() -> None:
    metrics, reasons = client_check(_run(0.001, [0.0, 0.001]), 0.01)
    assert {m.name for m in metrics} == {"client_loop_lag_p99_s", "send_skew_p99_s"} and reasons == []
    _, reasons = client_check(_run(0.05, [0.0]), 0.01)
    assert reasons and "p99 lag 50.0 ms > margin 10.0 ms" in reasons[0]
    _, reasons = client_check(_run(None, [0.0, 0.2]), 0.01)
    assert reasons and "send-time skew" in reasons[0]
    # an in-process step loop's admission delay is the engine's, not a saturated client
    assert client_check(_run(None, [0.0, 0.2], skew_is_client=False), 0.01)[1] == []


def test_client_check_flags_a_machine_that_changed_speed_during_the_run() -> None:
    from pytest_slm.measure.machine import Probe

    def kernel(seconds: float) -> Probe:
        return Probe(seconds=seconds, rel_iqr=0.01, calls=40, device="cpu")

    steady = dataclasses.replace(_run(None, [0.0]), machine=(kernel(0.0064), kernel(0.0065)))
    assert client_check(steady, 0.01)[1] == []
    changed = dataclasses.replace(_run(None, [0.0]), machine=(kernel(0.0064), kernel(0.0076)))
    (reason,) = client_check(changed, 0.01)[1]
    assert "the machine changed speed during the measurement" in reason and "19 % slower" in reason


def test_per_request_columns_are_compact_and_complete() -> None:
    cols = per_request_columns(_run(None, [0.0, 0.001]))
    assert cols["prompt_tokens"] == [5, 5] and cols["output_tokens"] == [2, 2]
    assert cols["ttft_s"] == [0.1, 0.1] and cols["tpot_s"] == [0.1, 0.1] and cols["index"] == [0, 1]


# -- SLOs ---------------------------------------------------------------------------------------------
def test_slo_presets_are_mlperfs_llama31_8b_limits() -> None:
    assert (PRESETS["mlperf-server"].ttft_s, PRESETS["mlperf-server"].tpot_s) == (2.0, 0.1)
    assert (PRESETS["mlperf-interactive"].ttft_s, PRESETS["mlperf-interactive"].tpot_s) == (0.5, 0.03)
    assert all(p.percentile == 99 for p in PRESETS.values())


def test_custom_slo_parsing() -> None:
    slo = parse_slo("ttft=0.5,tpot=0.03,e2e=10")
    assert (slo.ttft_s, slo.tpot_s, slo.e2e_s, slo.percentile, slo.key) == (0.5, 0.03, 10, 99, "ttft0.5_tpot0.03_e2e10")
    assert parse_slo("e2e=3,p=90").percentile == 90
    for bad, msg in (
        ("fast", "bad entry 'fast'"),
        ("ttft=x", "must be a number"),
        ("p=90", "no limit"),
        ("ttft=-1", "> 0"),
    ):
        with pytest.raises(SLOError, match=msg):
            parse_slo(bad)


def test_goodput_counts_requests_within_every_bound() -> None:
    slo = parse_slo("ttft=1,tpot=0.1")
    reqs = [
        {"ttft": 0.5, "tpot": 0.05},
        {"ttft": 1.5, "tpot": 0.05},
        {"ttft": 0.5, "tpot": 0.2},
        {"ttft": 0.2, "tpot": None},
    ]
    assert [request_meets(slo, r) for r in reqs] == [True, False, False, True]
    a = attainment(slo, reqs, failed=0, wall_s=2.0)
    assert (a.good, a.total, a.goodput_rps, a.met) == (2, 4, 1.0, False)
    ok = attainment(slo, [reqs[0]] * 100, failed=0, wall_s=10)
    assert ok.met and ok.goodput_rps == 10
    assert not attainment(slo, [reqs[0]] * 100, failed=1, wall_s=10).met  # a failed request fails the level


def test_saturation_point_is_the_last_level_before_the_first_miss() -> None:
    assert saturation_point([(1, True), (4, True), (8, False), (16, True)]) == 4
    assert saturation_point([(8, True), (1, True)]) == 8
    assert saturation_point([(1, False), (2, True)]) is None


# -- Prometheus -----------------------------------------------------------------------------------------
EXPOSITION = """# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{engine="0",le="0.1",model_name="m"}} {n}
vllm:time_to_first_token_seconds_bucket{{engine="0",le="+Inf",model_name="m"}} {n}
vllm:time_to_first_token_seconds_count{{engine="0",model_name="m"}} {n}
vllm:time_to_first_token_seconds_sum{{engine="0",model_name="m"}} {s}
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{{engine="0",model_name="m"}} {g}
vllm:generation_tokens_total{{engine="1",model_name="m"}} 5
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{{engine="0",model_name="m"}} {p}
"""


def test_prometheus_deltas() -> None:
    pytest.importorskip("prometheus_client")
    before = prom.parse(EXPOSITION.format(n=2, s=0.2, g=100, p=40))
    after = prom.parse(EXPOSITION.format(n=6, s=1.0, g=164, p=100))
    assert before["generation_tokens"] == 105  # summed over engines
    d = prom.delta(before, after)
    assert d["ttft_mean_s"] == pytest.approx(0.2) and d["ttft_count"] == 4
    assert d["generation_tokens"] == 64 and d["prompt_tokens"] == 60


# -- the managed server -----------------------------------------------------------------------------------
def test_engine_kwargs_become_server_flags() -> None:
    kwargs = {
        "model": "/ckpt",
        "tokenizer": "/ckpt",
        "dtype": "bfloat16",
        "seed": 0,
        "enable_prefix_caching": False,
        "disable_log_stats": False,
        "enforce_eager": True,
        "max_model_len": 2048,
        "worker_extension_cls": "x.Y",
    }
    args = cli_args(kwargs)
    assert args[:2] == ["--model", "/ckpt"]
    assert "--no-enable-prefix-caching" in args and "--enforce-eager" in args
    assert args[args.index("--max-model-len") + 1] == "2048" and "--worker-extension-cls" not in args
    assert not any("disable-log-stats" in a for a in args)  # store_true only in vLLM: omitted when False
    argv = vllm_server_argv(kwargs, host="127.0.0.1", port=8123, served_model_name="m")
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"] and "--enable-per-request-metrics" in argv


TOY_SERVER = textwrap.dedent(
    """
    import http.server, os, subprocess, sys, time
    mode = sys.argv[2]
    if mode == "crash":
        print("loading the model ...", flush=True)
        print("RuntimeError: out of memory while allocating the KV cache", flush=True)
        sys.exit(3)
    # a child that outlives a polite SIGTERM of its parent (like an engine core process)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", stubborn])
    print(f"child {child.pid}", flush=True)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path in ("/health", "/v1/models") else 404)
            self.end_headers()
            self.wfile.write(b"{}")
        def log_message(self, *a):
            pass
    time.sleep(0.3)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


def _children(log: Path) -> list[int]:
    return [int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("child ")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_server_process_starts_waits_and_leaves_no_orphans(tmp_path: Path) -> None:
    script = tmp_path / "toy.py"
    script.write_text(TOY_SERVER)
    port = free_port()
    log = tmp_path / "server.log"
    srv = ServerProcess([sys.executable, str(script), str(port), "serve"], log_path=log, host="127.0.0.1", port=port)
    srv.start()
    assert srv.wait_ready(20) > 0.2
    srv.check()
    (child,) = _children(log)
    assert _alive(child)
    srv.stop(grace_s=1)
    assert not srv.alive()
    deadline = time.time() + 5
    while _alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the child that ignored SIGTERM must be killed with the group"


def test_a_server_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    script = tmp_path / "toy.py"
    script.write_text(TOY_SERVER)
    port = free_port()
    srv = ServerProcess(
        [sys.executable, str(script), str(port), "crash"], log_path=tmp_path / "s.log", host="127.0.0.1", port=port
    )
    srv.start()
    with pytest.raises(ServerError, match=r"(?s)exited with status 3; last lines of .*s\.log:\n.*out of memory"):
        srv.wait_ready(20)


def test_a_server_that_never_gets_ready_times_out_and_is_stopped(tmp_path: Path) -> None:
    port = free_port()
    srv = ServerProcess(
        [sys.executable, "-c", "import time; print('still loading', flush=True); time.sleep(60)"],
        log_path=tmp_path / "s.log",
        host="127.0.0.1",
        port=port,
    )
    srv.start()
    with pytest.raises(ServerError, match=r"(?s)not ready within 1 s \(/health\).*still loading"):
        srv.wait_ready(1.0, poll_s=0.1)
    assert not srv.alive()


def test_no_python_processes_of_ours_are_left(tmp_path: Path) -> None:
    out = subprocess.run(["ps", "-o", "pid,args", "--ppid", str(os.getpid())], capture_output=True, text=True).stdout
    assert "toy.py" not in out


# -- the in-process step loop ------------------------------------------------------------------------------
class StepEngine:
    """A stand-in for vLLM's ``LLMEngine``: every step takes ``step_s`` and gives each running request
    one token; it records how many requests ran at once and when each was added."""

    def __init__(self, step_s: float = 0.004) -> None:
        self.step_s = step_s
        self.running: dict[str, int] = {}
        self.added: dict[str, float] = {}
        self.peak = 0

    def add_request(self, rid: str, prompt: str, params: SamplingSpec) -> None:
        self.running[rid] = params.max_new_tokens
        self.added[rid] = time.perf_counter()
        self.peak = max(self.peak, len(self.running))

    def has_unfinished_requests(self) -> bool:
        return bool(self.running)

    def step(self) -> list[object]:
        from types import SimpleNamespace

        time.sleep(self.step_s)
        outs = []
        for rid in list(self.running):
            self.running[rid] -= 1
            done = self.running[rid] == 0
            if done:
                del self.running[rid]
            chunk = SimpleNamespace(token_ids=[7], text="x")
            outs.append(
                SimpleNamespace(
                    request_id=rid, outputs=[chunk], prompt_token_ids=[1, 2, 3], finished=done, metrics=None
                )
            )
        return outs


def _plans(n: int, tokens: int = 3) -> list[PlannedRequest]:
    return [PlannedRequest(i, f"prompt {i}", SamplingSpec(tokens)) for i in range(n)]


def test_in_process_concurrency_keeps_c_requests_running() -> None:
    from pytest_slm.engines.vllm.serve import serve_llm_engine

    engine = StepEngine()
    run = serve_llm_engine(engine, _plans(9), LoadSpec("concurrency", 3, 9), make_params=lambda s: s)
    assert engine.peak == 3 and len(run.completed) == 9
    assert all(r.trace is not None and r.trace.output_tokens == 3 and r.trace.prompt_tokens == 3 for r in run.requests)
    assert not run.skew_is_client and run.wall_s > 0


def test_in_process_rate_times_requests_from_their_arrival() -> None:
    from pytest_slm.engines.vllm.serve import serve_llm_engine

    engine = StepEngine(step_s=0.02)
    load = LoadSpec("rate", 40, 12, seed=5)
    run = serve_llm_engine(engine, _plans(12), load, make_params=lambda s: s)
    t0 = min(r.intended_s for r in run.requests)
    offsets = arrival_offsets(40, 12, 5)
    for r in run.requests:
        assert r.trace is not None
        assert r.intended_s - t0 == pytest.approx(offsets[r.index], abs=1e-9)
        assert r.trace.submit_s == r.intended_s  # timing starts at the arrival, not at admission
        skew = r.send_skew_s
        assert skew is not None and -1e-6 <= skew <= 0.02 + 0.05  # joins at the next step boundary
        assert r.trace.token_times_s[0] - r.trace.submit_s >= 0.02 - 1e-6
