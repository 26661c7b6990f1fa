"""Validity by default: a run ``slm_runs`` or ``slm_serving`` hands a test is checked for that test,
so its figures, derived ones included, are invalid when the run's window was disturbed, with no
``slm.validate`` in the test. The disturbance is the fake engine's reference kernel running 20 %
slower after the first window than before it (``SLM_FAKE_MACHINE_S=0.005,0.006``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_slm.measure.context import BenchContext, Window
from tests.conftest import REPO, SlmPytester
from tests.integration.voided import assert_the_machine_voided_at_most_its_share
from tests.test_roofline import CONFTEST as BANDWIDTH_CONFTEST
from tests.test_roofline import checkpoint

#: the fake engine's reference kernel, before and after the first window: 20 % slower after it
SHIFTED = "0.005,0.006"
SHIFT_REASON = "ran 20 % slower after the window"

USER_TESTS = """
from pytest_slm import stash
from pytest_slm.measure.latency import latency_metrics


def test_latency(slm_runs, slm):
    run = slm_runs.streaming(slm.workload("single"))
    slm.extend(latency_metrics(run, "tpot"))
    assert slm.checked_windows == 1


def test_derived(slm_runs, slm):
    run = slm_runs.streaming(slm.workload("single"))  # memoized: the run test_latency measured
    tpot = latency_metrics(run, "tpot")[0].value
    slm.record("my_tokens_per_s", 1 / tpot, unit="token/s", higher_is_better=True)
    slm_runs.streaming(slm.workload("single"))
    slm.validate(run)  # an explicit call stays valid: the same window, counted and applied once
    assert slm.checked_windows == 1


def test_own_metric(slm, pytestconfig):
    assert pytestconfig.stash[stash.RUNNING_CONTEXT] is slm
    slm.record("my_metric", 1.0, unit="1", higher_is_better=True)
    assert slm.checked_windows == 0


def test_warm_up_only(slm_runs, slm):
    slm_runs.streaming(slm.workload("single"), inherit_validity=False)
    slm.record("after_warm_up", 1.0, unit="1", higher_is_better=True)
    assert slm.checked_windows == 0


def test_no_slm_no_running_context(slm_runs, pytestconfig):
    assert stash.RUNNING_CONTEXT not in pytestconfig.stash  # the last test's slm cleared it
"""


def records(slm_pytester: SlmPytester) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["metric"]: r for r in slm_pytester.results()["records"] if r.get("metric")}


def test_a_run_taken_without_validate_is_checked(slm_pytester: SlmPytester) -> None:
    slm_pytester.pytester.makepyfile(test_user=USER_TESTS)
    slm_pytester.run().assert_outcomes(passed=5)
    recs = records(slm_pytester)
    assert {recs[m]["outcome"] for m in ("tpot_p50_s", "my_tokens_per_s", "my_metric")} == {"passed"}


def test_a_disturbed_run_voids_its_figures_and_those_derived_from_it(
    slm_pytester: SlmPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", SHIFTED)
    slm_pytester.pytester.makepyfile(test_user=USER_TESTS)
    result = slm_pytester.run()
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(
        [f"invalid: *::test_latency[[]*]: *{SHIFT_REASON}*", f"invalid: *::test_derived[[]*]: *{SHIFT_REASON}*"]
    )
    recs = records(slm_pytester)
    for name in ("tpot_p50_s", "my_tokens_per_s"):
        assert recs[name]["outcome"] == "invalid", recs[name]
        (reason,) = recs[name]["invalid_reasons"]  # once, though the derived test also validated the run
        assert SHIFT_REASON in reason
    # no window behind it, or one taken only to warm the engine: nothing to void
    assert recs["my_metric"]["outcome"] == recs["after_warm_up"]["outcome"] == "passed"


def test_the_decode_roofline_inherits_the_latency_runs_verdict(
    slm_pytester: SlmPytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = checkpoint(tmp_path / "tiny-model", {"model.layers.0.mlp.up_proj.weight": ("BF16", [64, 64])})
    monkeypatch.setenv("BW", "1e12")  # MBU far below 1: only the window can void it
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", SHIFTED)
    p = slm_pytester.pytester
    p.makeconftest(BANDWIDTH_CONFTEST)
    shutil.copy(REPO / "benches" / "test_roofline.py", p.path / "test_roofline.py")
    slm_pytester.run("--models", str(ckpt), "-k", "test_decode_roofline").assert_outcomes(failed=1)
    recs = records(slm_pytester)
    for name in ("mbu", "roofline_tpot_s", "decode_bytes_per_token"):
        assert recs[name]["outcome"] == "invalid" and SHIFT_REASON in recs[name]["invalid_reasons"][0]
    assert recs["mbu"]["value"] < 1


def test_usd_per_million_tokens_inherits_the_throughput_runs_verdict(
    slm_pytester: SlmPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", SHIFTED)
    slm_pytester.pytester.makepyfile(test_cost=(REPO / "benches" / "test_cost.py").read_text())
    # slm_mc: the cost bench's other tests are parametrized by local tasks only (no hub at collection)
    args = ("--slm-accuracy-tasks", "slm_mc", "--slm-price-per-hour", "3.6", "-k", "test_usd_per_million_output_tokens")
    result = slm_pytester.run(*args)
    result.assert_outcomes(failed=1)
    rec = records(slm_pytester)["usd_per_million_output_tokens"]
    assert rec["outcome"] == "invalid" and SHIFT_REASON in rec["invalid_reasons"][0]


SERVING_TEST = """
def test_my_level(slm_serving, slm):
    run = slm_serving.run(slm_serving.levels()[0])
    slm.record("my_completed", len(run.completed), unit="request", higher_is_better=True)
    assert slm.checked_windows == 1
"""


def test_a_serving_level_is_checked_with_its_label(slm_pytester: SlmPytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_FAKE_MACHINE_S", SHIFTED)
    slm_pytester.pytester.makepyfile(test_user=SERVING_TEST)
    slm_pytester.run("--slm-concurrency", "2", "--slm-serving-requests", "4").assert_outcomes(failed=1)
    rec = records(slm_pytester)["my_completed"]
    (reason,) = rec["invalid_reasons"]
    assert rec["outcome"] == "invalid" and reason.startswith("c2: ") and SHIFT_REASON in reason


# ---------------------------------------------------------------- the context and the cache, without pytest


class FakeWindow:
    def __init__(self, *reasons: str) -> None:
        self.reasons = list(reasons)
        self.asked: list[float] = []

    def problems(self, max_foreign_cores: float = 0.3) -> list[str]:
        self.asked.append(max_foreign_cores)
        return self.reasons


def test_a_window_counts_once_and_its_reasons_are_asked_with_the_sessions_limit() -> None:
    ctx = BenchContext()
    window = FakeWindow("busy machine")
    assert isinstance(window, Window) and not isinstance(["busy machine"], Window)
    ctx.observe(window)
    ctx.observe(window)
    ctx.validate(window)
    assert ctx.checked_windows == 1 and ctx.invalid_reasons == ["busy machine"]
    assert window.asked == [ctx.settings.max_foreign_load]
    ctx.observe(FakeWindow())  # another, undisturbed window
    ctx.validate(["busy machine"])  # the test's own window (a CpuWindow's reasons): one more, no new reason
    assert ctx.checked_windows == 3 and ctx.invalid_reasons == ["busy machine"]


def test_the_integration_tier_fails_a_check_that_voids_most_of_a_session() -> None:
    def row(test: str, outcome: str, validity: str | None) -> dict[str, object]:
        return {"test": test, "outcome": outcome, "validity": validity, "invalid_reasons": ["r"]}

    session = [row("a", "invalid", "invalid"), row("a", "invalid", "invalid"), row("b", "passed", "checked")]
    session += [row("size", "passed", "unchecked")]  # no window behind it: not in the share
    assert_the_machine_voided_at_most_its_share({"records": session})  # 1 of 2 checked tests
    # two windows of three voided (55 % of a real session's tests on 2026-12-06): the machine's doing
    assert_the_machine_voided_at_most_its_share({"records": [*session, row("c", "invalid", "invalid")]})
    every_window = [*session, row("c", "invalid", "invalid"), row("d", "invalid", "invalid")]
    every_window = [r if r["test"] != "b" else row("b", "invalid", "invalid") for r in every_window]
    with pytest.raises(AssertionError, match="4 of 4 checked tests invalid"):
        assert_the_machine_voided_at_most_its_share({"records": every_window})
    with pytest.raises(AssertionError, match="no test's figures rest on a checked window"):
        assert_the_machine_voided_at_most_its_share({"records": [row("size", "passed", "unchecked")]})
