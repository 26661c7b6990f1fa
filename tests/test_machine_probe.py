"""The reference kernel: a machine that shifts speed makes timings invalid, never a regression.

Unit rules of :mod:`pytest_slm.measure.machine`, the real kernel on this CPU, and pytester runs
of the fake engine whose kernel time is set by ``SLM_FAKE_MACHINE_S``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_slm.compare.baseline import merge_entry
from pytest_slm.compare.judge import baseline_entry, machine_check
from pytest_slm.compare.shift import SHIFT_TOLERANCE, machine_shift
from pytest_slm.measure import machine
from pytest_slm.measure.machine import Probe, summarize, window_change
from pytest_slm.record import Metric
from tests.test_baselines import LATENCY, baseline_files, run, verdicts


def _probe(seconds: float, kernel: str = machine.KERNEL, device: str = "cpu") -> Probe:
    return Probe(seconds=seconds, rel_iqr=0.01, calls=40, device=device, kernel=kernel)


def test_summarize_is_the_median_of_the_rounds_medians() -> None:
    # the second round was disturbed throughout: the probe keeps the undisturbed rounds' time
    p = summarize([[0.005, 0.005, 0.0051], [0.009, 0.0095, 0.009], [0.0049, 0.005, 0.005]], "cpu")
    assert p.seconds == 0.005 and p.calls == 9 and p.kernel == machine.KERNEL and p.rel_iqr > 0.5
    assert summarize([[0.004]], "cpu").seconds == 0.004
    with pytest.raises(ValueError, match="at least one"):
        summarize([[], []], "cpu")


def test_window_change_both_directions_and_the_tolerance() -> None:
    assert window_change(_probe(0.005), _probe(0.0052)) is None  # 4 %
    slower = window_change(_probe(0.005), _probe(0.006))
    assert slower is not None and "20 % slower after the window" in slower and "allowed 10 %" in slower
    faster = window_change(_probe(0.006), _probe(0.005))
    assert faster is not None and "17 % faster" in faster
    assert window_change(None, _probe(0.006)) is None and window_change(_probe(0.005), None) is None


def _saved(*seconds: float) -> list[dict]:  # type: ignore[type-arg]
    return [{"probe_s": x, "kernel": machine.KERNEL, "device": "cpu"} for x in seconds]


def test_a_change_after_the_window_must_persist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "CONFIRM_AFTER_S", 0.0)
    before = _probe(0.005)
    hiccup = iter([_probe(0.007), _probe(0.00505)])  # the first timing after the window was disturbed
    after = machine.probe_after(lambda: next(hiccup), before)
    assert after is not None and after.seconds == 0.00505 and window_change(before, after) is None
    slower = iter([_probe(0.007), _probe(0.0068)])  # the machine really is slower now
    after = machine.probe_after(lambda: next(slower), before)
    assert after is not None and after.seconds == 0.0068 and window_change(before, after) is not None
    calls = iter([_probe(0.0051)])  # within tolerance: timed once
    assert machine.probe_after(lambda: next(calls), before).seconds == 0.0051  # type: ignore[union-attr]


def test_a_before_probe_far_from_the_sessions_usual_time_is_retimed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow before-probe (a hiccup: the A/A recordings' voided windows) is timed again; the timing
    closer to the session's usual time is kept, so a hiccup no longer voids the window, while a
    machine that really changed speed shows in both timings and still does."""
    monkeypatch.setattr(machine, "CONFIRM_AFTER_S", 0.0)
    timings = iter([_probe(0.0062), _probe(0.0063), _probe(0.0064)])
    prober = machine.SessionProber(lambda: next(timings))
    for _ in range(3):
        prober()
    assert prober.typical() == 0.0063
    timings = iter([_probe(0.0076), _probe(0.0063)])  # hiccup, then the usual time
    before = machine.probe_before(prober)
    assert before is not None and before.seconds == 0.0063
    assert window_change(before, _probe(0.0064)) is None  # the same window judged on the raw hiccup: voided
    assert window_change(_probe(0.0076), _probe(0.0064)) is not None
    timings = iter([_probe(0.0076), _probe(0.0077)])  # the machine really is slower now: kept slow
    before = machine.probe_before(prober)
    assert before is not None and before.seconds == 0.0076
    timings = iter([_probe(0.0065)])  # within tolerance: timed once (next() would raise on a second call)
    assert machine.probe_before(prober).seconds == 0.0065  # type: ignore[union-attr]


def test_before_probes_are_not_retimed_without_a_session_history(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "CONFIRM_AFTER_S", 0.0)
    timings = iter([_probe(0.0062), _probe(0.0090)])
    prober = machine.SessionProber(lambda: next(timings))
    prober()
    assert prober.typical() is None  # one probe is no usual time
    assert machine.probe_before(prober).seconds == 0.0090  # type: ignore[union-attr]
    plain = iter([_probe(0.0090)])
    assert machine.probe_before(lambda: next(plain)).seconds == 0.0090  # type: ignore[union-attr]


def test_bracket_uses_the_session_history(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "CONFIRM_AFTER_S", 0.0)
    timings = iter([_probe(x) for x in (0.0062, 0.0063, 0.0064, 0.0077, 0.0063, 0.0064)])
    prober = machine.SessionProber(lambda: next(timings))
    for _ in range(3):
        prober()
    with machine.Bracket(prober) as kernel:
        pass
    assert [p.seconds for p in kernel.probes if p] == [0.0063, 0.0064]
    assert window_change(*kernel.probes) is None


def test_machine_shift_needs_three_sessions_then_uses_their_spread_or_the_tolerance() -> None:
    cur = machine.describe(_probe(0.0054), _probe(0.0054))
    assert cur is not None and cur["probe_s"] == pytest.approx(0.0054)
    # one or two saved sessions: the kernel's own spread is unknown, nothing is called a shift
    for saved in (_saved(0.005), _saved(0.005, 0.005)):
        shift = machine_shift(cur, saved)
        assert shift is not None and shift.ratio == pytest.approx(1.08) and not shift.exceeded
    # three steady sessions: the 3 % tolerance applies
    tight = machine_shift(cur, _saved(0.005, 0.005, 0.005))
    assert tight is not None and tight.allowed == SHIFT_TOLERANCE and tight.exceeded
    assert (
        "8.0 % slower than when the baseline was saved" in tight.reason() and "--slm-baseline-accept" in tight.reason()
    )
    assert not machine_shift({**cur, "probe_s": 0.00512}, _saved(0.005, 0.005, 0.005)).exceeded  # type: ignore[union-attr]
    faster = machine_shift({**cur, "probe_s": 0.0045}, _saved(0.005, 0.005, 0.005))
    assert faster is not None and faster.exceeded and "10.0 % faster" in faster.reason()
    # saved kernel times that spread widely allow more: the 99 % prediction interval (t, 2 df: wide)
    wide = machine_shift(cur, _saved(0.0049, 0.005, 0.0051))
    assert wide is not None and wide.allowed > 0.2 and not wide.exceeded
    # more sessions, the same spread: a narrower interval
    nine = machine_shift(cur, _saved(*([0.0049, 0.005, 0.0051] * 3)))
    assert nine is not None and 0.03 < nine.allowed < wide.allowed


def test_no_comparison_across_kernels_devices_or_missing_probes() -> None:
    cur = {"probe_s": 0.006, "kernel": machine.KERNEL, "device": "cuda:0"}
    assert machine_shift(cur, [{"probe_s": 0.005, "kernel": "matmul-stream/0", "device": "cuda:0"}] * 3) is None
    assert machine_shift(cur, _saved(0.005, 0.005, 0.005)) is None  # CPU kernel times against a GPU's
    assert machine_shift(cur, [{"probe_s": 0.005, "kernel": machine.KERNEL, "device": "cuda"}] * 3) is not None
    assert machine_shift(None, [cur]) is None and machine_shift(cur, [None, {}]) is None


def test_baseline_sessions_keep_the_probe_and_the_gate_reads_it() -> None:
    info = {"machine": machine.describe(_probe(0.005), _probe(0.005))}
    m = Metric("tpot_p50_s", 0.02, "s", False, samples=(0.02, 0.021), info=info)
    entry: dict = {}  # type: ignore[type-arg]
    for _ in range(3):
        entry = merge_entry(entry or None, baseline_entry(m, {}, "t", None, {}), reset=False)
    assert [s["machine"]["probe_s"] for s in entry["sessions"]] == pytest.approx([0.005] * 3)
    assert machine_check(m, entry) is None
    slow = Metric("tpot_p50_s", 0.02, "s", False, info={"machine": {**info["machine"], "probe_s": 0.0055}})
    shift = machine_check(slow, entry)
    assert shift is not None and shift.ratio == pytest.approx(1.1)
    bare = Metric("tpot_p50_s", 0.02, "s", False)  # no probe: nothing to check (e.g. a memory figure)
    assert machine_check(bare, entry) is None
    old = {"value": 0.02, "sessions": [{"value": 0.02}]}  # a baseline saved before the probe existed
    assert machine_check(slow, old) is None


def test_the_real_kernel_runs_on_this_cpu() -> None:
    pytest.importorskip("torch")
    p = machine.probe("cpu", calls=8, budget_s=0.2)
    assert p is not None and p.seconds > 0 and p.calls == 6 and p.device == "cpu"  # 3 rounds of 8 // 3 calls
    assert machine.probe("no-such-device") is None  # torch refuses the device: no probe, no crash


# ---------------------------------------------------------------- end to end on the fake engine


@pytest.fixture
def saved(slm_pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    slm_pytester.pytester.makepyfile(LATENCY)
    root = tmp_path / "baselines"
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", "0.005")
    for _ in range(3):
        run(slm_pytester, root, "--slm-save-baseline").assert_outcomes(passed=4)
    return root


def test_saved_sessions_carry_the_kernel_time(saved: Path) -> None:
    (path,) = baseline_files(saved)
    entries = json.loads(path.read_text())["metrics"]
    tpot = next(e for k, e in entries.items() if k.endswith("::tpot_p50_s"))
    assert [s["machine"]["probe_s"] for s in tpot["sessions"]] == pytest.approx([0.005] * 3)
    assert tpot["sessions"][0]["machine"]["kernel"] == machine.KERNEL


def test_a_slower_machine_is_invalid_not_regressed(slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the code is unchanged, the machine 12 % slower: the engine's figures would move with it
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", "0.0056")
    result = run(slm_pytester, saved, "--slm-save-baseline")
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        ["*invalid measurement: the machine is 12.0 % slower than when the baseline was saved*"]
    )
    recs = [r for r in slm_pytester.results()["records"] if r["gated"]]
    assert {r["outcome"] for r in recs} == {"invalid"} and verdicts(slm_pytester) == {"invalid"}
    assert all(r["baseline"]["machine_ratio"] == pytest.approx(1.12) for r in recs)
    (path,) = baseline_files(saved)
    entries = json.loads(path.read_text())["metrics"]
    assert all(len(e["sessions"]) == 3 for e in entries.values()), "an invalid session is never saved"


def test_a_machine_that_changed_for_good_is_re_saved_only_on_accept(
    slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", "0.0056")
    result = run(slm_pytester, saved, "--slm-save-baseline")
    result.stdout.fnmatch_lines(["*baseline not saved: * the machine moved since the baseline; --slm-baseline-accept*"])
    result = run(slm_pytester, saved, "--slm-save-baseline", "--slm-baseline-accept")
    result.assert_outcomes(failed=4)  # this session's verdict stays invalid; its figures start a new history
    (path,) = baseline_files(saved)
    entries = json.loads(path.read_text())["metrics"]
    tpot = next(e for k, e in entries.items() if k.endswith("::tpot_p50_s"))
    assert len(tpot["sessions"]) == 1 and tpot["sessions"][0]["machine"]["probe_s"] == pytest.approx(0.0056)
    run(slm_pytester, saved).assert_outcomes(passed=4)  # one saved kernel time: no shift is called


def test_a_regression_on_a_shifted_machine_is_invalid_too(
    slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a real +25 % TPOT regression measured while the machine is 10 % faster: neither can be told apart
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.025")
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", "0.0045")
    run(slm_pytester, saved).assert_outcomes(failed=4)
    assert verdicts(slm_pytester) == {"invalid"}
    # the same regression on the same machine is a regression
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", "0.00505")
    run(slm_pytester, saved).assert_outcomes(passed=2, failed=2)
    assert verdicts(slm_pytester, "tpot") == {"regressed"}


def test_a_machine_changing_speed_during_the_window_is_invalid(slm_pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    slm_pytester.pytester.makepyfile(LATENCY)
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", "0.005,0.006")  # before, after
    slm_pytester.run("-k", "test_tpot and single").assert_outcomes(failed=1)
    (rec,) = [r for r in slm_pytester.results()["records"] if r["metric"] == "tpot_p50_s"]
    assert rec["outcome"] == "invalid" and "ran 20 % slower after the window" in rec["invalid_reasons"][0]
    assert rec["info"]["machine"]["before_s"] == 0.005 and rec["info"]["machine"]["after_s"] == 0.006


def test_no_probe_no_machine_check(slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", "none")
    run(slm_pytester, saved).assert_outcomes(passed=4)
    recs = [r for r in slm_pytester.results()["records"] if r["gated"]]
    assert all(r["info"]["machine"] is None for r in recs) and verdicts(slm_pytester) == {"pass"}


def test_the_check_can_be_turned_off_for_a_machine_shared_on_purpose(
    slm_pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    slm_pytester.pytester.makepyfile(LATENCY)
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", "0.005,0.006")  # would be a window that changed speed
    slm_pytester.run("-k", "test_tpot and single", "--slm-no-machine-check").assert_outcomes(passed=1)
    (rec,) = [r for r in slm_pytester.results()["records"] if r["metric"] == "tpot_p50_s"]
    assert rec["outcome"] == "passed" and rec["info"]["machine"] is None
