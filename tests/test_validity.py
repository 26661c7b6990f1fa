"""What makes a measurement invalid: warm-up trends, client queueing, preemptions, a busy machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_slm.measure import validity
from pytest_slm.measure.validity import CpuUsage, CpuWindow


def test_warmup_trend_needs_a_significant_trend_and_a_large_change() -> None:
    falling = [1.5, 1.4, 1.3, 1.2, 1.1, 1.05, 1.0, 1.0, 0.99, 0.98]
    reason = validity.warmup_trend(falling, "the median TPOT")
    assert reason is not None and "warm-up not reached" in reason and "raise --slm-num-warmup" in reason
    steady = [1.0, 1.02, 0.99, 1.01, 0.98, 1.0, 1.01, 0.99, 1.0, 1.02]
    assert validity.warmup_trend(steady, "x") is None
    assert validity.warmup_trend([2.0, 1.0, 0.5], "x") is None  # too few to tell
    drifting_slightly = [1.05, 1.04, 1.03, 1.02, 1.01, 1.0, 0.99, 0.98, 0.97, 0.96]  # significant, but < 10 %
    assert validity.warmup_trend(drifting_slightly, "x") is None


def test_client_queueing_margin() -> None:
    assert validity.client_queueing([0.001, 0.002], [0.08, 0.09]) is None
    reason = validity.client_queueing([0.030, 0.031], [0.08, 0.09])
    assert reason is not None and "30.5 ms (p50)" in reason and "8.5 ms margin" in reason
    assert validity.client_queueing([], [0.1]) is None


def test_preemptions() -> None:
    assert validity.preemptions(0, 8) is None
    assert "preempted requests 3 time(s) over 8 request(s)" in (validity.preemptions(3, 8) or "")


def test_busy_machine_and_steal() -> None:
    quiet = CpuUsage(wall_s=5.0, cores=2, own_cores=1.9, busy_cores=2.0, steal_fraction=0.01)
    assert quiet.foreign_cores == pytest.approx(0.1) and quiet.problem() is None
    busy = CpuUsage(wall_s=5.0, cores=2, own_cores=1.0, busy_cores=1.8, steal_fraction=0.0)
    assert "other processes used 0.80 of 2 cores" in (busy.problem() or "")
    assert busy.problem(max_foreign_load=0.5) is None  # 0.8 of 2 cores: 40 % of the machine
    stolen = CpuUsage(wall_s=5.0, cores=2, own_cores=1.0, busy_cores=1.0, steal_fraction=0.2)
    assert "hypervisor took 20 %" in (stolen.problem() or "")
    short = CpuUsage(wall_s=0.2, cores=2, own_cores=0.0, busy_cores=2.0, steal_fraction=0.5)
    assert short.problem() is None  # /proc/stat counts 10 ms ticks: too short to say


def test_cpu_window_reads_proc_stat_and_the_process_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    own = iter([(10.0, frozenset({1})), (10.5, frozenset({1}))])
    monkeypatch.setattr(validity, "_own_cpu_s", lambda roots=(): next(own))
    times = iter([0.0, 1.0])
    monkeypatch.setattr(validity.time, "perf_counter", lambda: next(times))
    with CpuWindow(tmp_path, cgroup_root=tmp_path / "cgroup") as window:  # no PSI files: /proc/stat alone
        stat.write_text("cpu  300 0 200 1000 0 0 0 10 0 0\n")
    usage = window.usage
    assert usage is not None and usage.wall_s == 1.0
    ticks = validity.os.sysconf("SC_CLK_TCK")
    assert usage.busy_cores == pytest.approx(300 / ticks)  # 200 user + 100 system jiffies
    assert usage.own_cores == pytest.approx(0.5)
    assert usage.steal_fraction == pytest.approx(10 / 510)
    assert usage.pressure_source == "/proc/stat" and usage.stall_share is None


def test_machine_made_names_the_machine_reasons_only() -> None:
    """The reasons the machine causes (other processes, the hypervisor, the kernel changing speed in a
    window or since the baseline) against those the measurement causes (warm-up, queueing, preemption)."""
    from pytest_slm.compare.shift import Shift
    from pytest_slm.measure.machine import Probe, window_change, window_problems

    busy = CpuUsage(wall_s=5.0, cores=2, own_cores=1.0, busy_cores=1.8, steal_fraction=0.0).problem()
    stolen = CpuUsage(wall_s=5.0, cores=2, own_cores=1.0, busy_cores=1.0, steal_fraction=0.2).problem()
    changed = window_change(Probe(0.005, 0.01, 45, "cpu"), Probe(0.006, 0.01, 45, "cpu"))
    shifted = Shift(ratio=1.08, allowed=0.03, sessions=3).reason()
    throttled = window_problems(Probe(0.005, 0.01, 45, "cuda"), Probe(0.005, 0.01, 45, "cuda", throttled=("x",)))[0]
    machine = [busy, stolen, changed, shifted, throttled]
    assert all(isinstance(r, str) for r in machine)
    assert all(validity.machine_made([r]) for r in machine if r) and validity.machine_made([r for r in machine if r])
    warmup = validity.warmup_trend([1.5, 1.4, 1.3, 1.2, 1.1, 1.05, 1.0, 1.0, 0.99, 0.98], "the median TPOT")
    queued = validity.client_queueing([0.030, 0.031], [0.08, 0.09])
    for own in (warmup, queued, validity.preemptions(3, 8)):
        assert own is not None and not validity.machine_made([own]) and not validity.machine_made([busy or "", own])
    assert not validity.machine_made([])
    # a saturation curve labels each level's reason; the label does not change whose reason it is
    assert validity.machine_made([f"c1: {changed}"]) and not validity.machine_made([f"c4: {warmup}"])
