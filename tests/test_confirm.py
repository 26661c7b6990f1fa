"""``--slm-confirm``: a second session of the same code, pooled with the first (the rule, the
false-alarm argument by simulation, reading an earlier results file, and end to end on the fake engine)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_slm.analysis.merge import merge
from pytest_slm.compare.confirm import ConfirmError, load
from pytest_slm.compare.rules import compare_sessions
from pytest_slm.results import SCHEMA
from pytest_slm.results.environment import git_commit, git_diff

LATENCY = (Path(__file__).resolve().parents[1] / "benches" / "test_latency.py").read_text()
ARGS = ("-k", "test_tpot or test_ttft", "--slm-num-runs", "6")


def pooled(history: list[float], current: float, earlier: list[float], alpha: float = 0.01):  # type: ignore[no-untyped-def]
    return compare_sessions(
        "tpot_p50_s", history, [None] * len(history), current, None, higher_is_better=False, alpha=alpha,
        earlier=earlier,
    )  # fmt: skip


def test_earlier_sessions_are_averaged_on_logs_and_narrow_the_interval() -> None:
    rng = np.random.default_rng(1)
    history = list(0.03 * np.exp(rng.normal(0, 0.03, 5)))
    one = pooled(history, 0.033, [])
    two = pooled(history, 0.033, [0.0312])
    assert one.n_current == 1 and two.n_current == 2
    assert two.current_value == pytest.approx(math.sqrt(0.033 * 0.0312))
    # the spread of the prediction: between * sqrt(1/m + 1/K), so two sessions narrow the interval
    width = lambda c: math.log(c.ci_high / c.ci_low)  # noqa: E731
    assert width(two) / width(one) == pytest.approx(math.sqrt((1 / 2 + 1 / 5) / (1 + 1 / 5)), rel=1e-6)
    assert "geometric mean of 2 sessions" in two.note


def test_a_confirmation_keeps_the_false_alarm_level() -> None:
    """Unchanged code, between-session noise of 3 %: a confirmation run only after a first session
    that did not pass, pooled with it, says "regressed" no more often than alpha (the one-sided
    level of that verdict: the pooled test is valid on its own, and selecting when to run it can
    only remove alarms). And it finds a 10 % slowdown more often than one session does."""
    rng = np.random.default_rng(7)
    alpha, sd, k, trials = 0.05, 0.03, 5, 2000
    alarms = {1.0: [0, 0], 1.10: [0, 0]}  # slowdown -> [first session alone, with confirmation]
    for _ in range(trials):
        history = list(np.exp(rng.normal(0, sd, k)))
        for slow in alarms:
            first, second = (slow * math.exp(x) for x in rng.normal(0, sd, 2))
            c1 = pooled(history, first, [], alpha)
            alarms[slow][0] += c1.verdict == "regressed"
            c2 = c1 if c1.verdict == "pass" else pooled(history, second, [first], alpha)
            alarms[slow][1] += c2.verdict == "regressed"
    false_one, false_confirmed = (n / trials for n in alarms[1.0])
    found_one, found_confirmed = (n / trials for n in alarms[1.10])
    assert false_confirmed <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    assert false_one <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    assert found_confirmed > found_one + 0.1


def results_file(tmp_path: Path, records: list[dict], commit: str | None = "abc123", **env: Any) -> Path:  # type: ignore[type-arg]
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps({"schema": SCHEMA, "environment": {"git_commit": commit, **env}, "records": records}))
    return path


def record(test: str, metric: str, verdict: str | None, rule: str = "sessions-t", value: float = 0.02, **kw):  # type: ignore[no-untyped-def]
    return {
        "test": test, "metric": metric, "model": "m", "precision": "bf16", "baseline_key": f"k[{test}]::{metric}",
        "value": value, "gated": True, "outcome": kw.pop("outcome", "passed"), "workload": {"num_runs": 6},
        "baseline": None if verdict is None else {"verdict": verdict, "rule": rule, **kw},
    }  # fmt: skip


def test_reading_an_earlier_run(tmp_path: Path) -> None:
    path = results_file(tmp_path, [
        record("t::a", "tpot_p50_s", "pass", alpha=0.05 / 21),
        record("t::b", "tpot_p50_s", "inconclusive", alpha=0.05 / 21),
        record("t::b", "tpot_p99_s", "pass"),
        record("t::c", "checkpoint_bytes", "regressed", rule="exact", value=100.0),
        record("t::d", "tpot_p50_s", None, outcome="invalid"),
        record("t::e", "tpot_p50_s", "regressed", earlier=[0.03]),
        record("t::f", "tpot_p50_s", "pass", outcome="failed"),  # a threshold failed it
        # a baseline of 1 session: no confirmation can decide it (the sessions missing are the baseline's)
        record("t::y", "tpot_p50_s", "inconclusive", rule="within-session", n_baseline=1, min_sessions=3),
        {**record("t::r", "slm_mc.retention", None, outcome="failed"), "gated": False},  # a floor, not gated
    ])  # fmt: skip
    run = load(path, "abc123")
    assert run.tests == {"t::b", "t::c", "t::d", "t::e", "t::f", "t::r"} and run.settled == {"t::a", "t::y"}
    assert run.alpha == pytest.approx(0.05 / 21)
    assert run.earlier("m", "bf16", "k[t::b]::tpot_p50_s", {"num_runs": 6}) == ((0.02,), "")
    assert run.earlier("m", "bf16", "k[t::e]::tpot_p50_s", {"num_runs": 6}) == ((0.03, 0.02), "")  # chained
    assert run.earlier("m", "bf16", "k[t::c]::checkpoint_bytes", {"num_runs": 6}) == ((), "")  # exact: not pooled
    assert run.earlier("m", "bf16", "k[t::d]::tpot_p50_s", {"num_runs": 6}) == ((), "")  # invalid: not pooled
    values, why = run.earlier("m", "bf16", "k[t::b]::tpot_p50_s", {"num_runs": 5})
    assert values == () and "workload differs" in why


def test_what_stands_for_an_invalid_confirmation(tmp_path: Path) -> None:
    path = results_file(tmp_path, [
        record("t::b", "tpot_p50_s", "inconclusive", ratio=1.03, n_current=1),
        record("t::b", "tpot_p99_s", "pass", rule="sessions-t"),
        record("t::e", "tpot_p50_s", "regressed", outcome="failed"),  # the test failed there
        record("t::g", "tpot_p50_s", "inconclusive", earlier=[0.03], n_current=2),
        record("t::d", "tpot_p50_s", None, outcome="invalid"),
    ])  # fmt: skip
    run = load(path, "abc123")
    keys = lambda t, *ms: {m: f"k[{t}]::{m}" for m in ms}  # noqa: E731
    same = {m: {"num_runs": 6} for m in ("tpot_p50_s", "tpot_p99_s")}
    rows = run.standing("m", "bf16", keys("t::b", "tpot_p50_s", "tpot_p99_s"), same, "the machine moved")
    assert rows is not None and {m: r["verdict"] for m, r in rows.items()} == {
        "tpot_p50_s": "inconclusive", "tpot_p99_s": "pass"}  # fmt: skip
    assert rows["tpot_p50_s"]["stood"] and rows["tpot_p50_s"]["ratio"] == 1.03
    assert rows["tpot_p50_s"]["earlier"] == [0.02]  # what the earlier run measured, all of it
    assert "invalid here (the machine moved): the verdict of 1 earlier session(s) stands" in rows["tpot_p50_s"]["note"]
    assert rows["tpot_p50_s"]["stood"] == {"measured_in": str(path), "note": ""}
    chained = run.standing("m", "bf16", keys("t::g", "tpot_p50_s"), same, "x")
    assert chained is not None and chained["tpot_p50_s"]["earlier"] == [0.03, 0.02]
    assert run.standing("m", "bf16", keys("t::e", "tpot_p50_s"), same, "x") is None  # failed there: cannot clear
    assert run.standing("m", "bf16", keys("t::d", "tpot_p50_s"), same, "x") is None  # invalid there: nothing stands
    other = {"tpot_p50_s": {"num_runs": 5}}
    assert run.standing("m", "bf16", keys("t::b", "tpot_p50_s"), other, "x") is None  # another workload
    # the next confirmation reads a stood row's pooled figures, never the void window's value
    origin = {"measured_in": "first.json", "note": "5 saved sessions"}
    path.write_text(json.dumps({"schema": SCHEMA, "environment": {"git_commit": "abc123"}, "records": [
        {**record("t::b", "tpot_p50_s", "inconclusive", earlier=[0.02, 0.021], stood=origin,
                  note="invalid here (y): ..."), "value": 0.05, "outcome": "invalid"}]}))  # fmt: skip
    again = load(path, "abc123")
    assert again.tests == {"t::b"}
    assert again.earlier("m", "bf16", "k[t::b]::tpot_p50_s", {"num_runs": 6}) == ((0.02, 0.021), "")
    twice = again.standing("m", "bf16", keys("t::b", "tpot_p50_s"), same, "x")  # stands again, named by its origin
    assert twice is not None and twice["tpot_p50_s"]["stood"] == origin
    assert (
        twice["tpot_p50_s"]["note"]
        == "invalid here (x): the verdict of 2 earlier session(s) stands (first.json); 5 saved sessions"
    )


def test_an_earlier_run_of_other_code_or_no_results_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfirmError, match="measured on commit abc123, this run is on def456"):
        load(results_file(tmp_path, []), "def456")
    with pytest.raises(ConfirmError, match="does not exist"):
        load(tmp_path / "missing.json", None)
    # the same commit with other uncommitted changes is other code too
    with pytest.raises(ConfirmError, match="uncommitted changes 0123456789ab to tracked files, this run has no unc"):
        load(results_file(tmp_path, [], git_diff="0123456789ab"), "abc123", None)
    with pytest.raises(ConfirmError, match="no uncommitted changes to tracked files, this run has uncommitted ch"):
        load(results_file(tmp_path, [], git_diff=None), "abc123", "0123456789ab")
    assert load(results_file(tmp_path, [], git_diff="0123456789ab"), "abc123", "0123456789ab").git_commit == "abc123"
    (tmp_path / "bad.json").write_text('{"tests": []}')
    with pytest.raises(ConfirmError, match=r"not a pytest-slm results\.json"):
        load(tmp_path / "bad.json", None)


def test_confirm_reruns_what_did_not_pass_and_pools_it(slm_pytester, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """End to end: five saved sessions, then TPOT 25 % slower. The confirmation runs only the two
    TPOT tests (the TTFT ones passed), judges the mean of two sessions, and a second confirmation
    pools three; an unchanged run leaves nothing to confirm."""
    monkeypatch.setenv("SLM_FAKE_JITTER", "0.01")
    slm_pytester.pytester.makepyfile(LATENCY)
    root = tmp_path / "baselines"
    for _ in range(5):
        slm_pytester.run(*ARGS, "--slm-baseline-dir", str(root), "--slm-save-baseline").assert_outcomes(passed=4)
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.025")
    plain = slm_pytester.run(*ARGS, "--slm-baseline-dir", str(root))
    plain.assert_outcomes(passed=2, failed=2, deselected=(by_k := plain.parseoutcomes()["deselected"]))
    first = shutil.copy(slm_pytester.output / "results.json", tmp_path / "first.json")

    result = slm_pytester.run(*ARGS, "--slm-baseline-dir", str(root), "--slm-confirm", str(first))
    result.assert_outcomes(failed=2, deselected=by_k + 2)
    result.stdout.fnmatch_lines(["*slm: confirming*first.json*2 test(s) to measure again, 2 settled there*"])
    rows = [r["baseline"] for r in slm_pytester.results()["records"] if r["metric"] == "tpot_p50_s"]
    assert len(rows) == 2 and all(r["verdict"] == "regressed" and r["n_current"] == 2 for r in rows)
    # the first run's family (4 tests x 2 gated figures), not the confirmation's own 2 x 2
    assert all(r["alpha"] == pytest.approx(0.05 / 8) for r in rows)
    result.stdout.fnmatch_lines(["*family: 8 gated comparison(s), each at alpha 0.05/8*"])
    assert all(len(r["earlier"]) == 1 and "geometric mean of 2 sessions" in r["note"] for r in rows)

    second = shutil.copy(slm_pytester.output / "results.json", tmp_path / "second.json")
    slm_pytester.run(*ARGS, "--slm-baseline-dir", str(root), "--slm-confirm", str(second)).assert_outcomes(
        failed=2, deselected=by_k + 2
    )
    rows = [r["baseline"] for r in slm_pytester.results()["records"] if r["metric"] == "tpot_p50_s"]
    assert all(r["n_current"] == 3 and len(r["earlier"]) == 2 for r in rows)

    # each results.json names its place in the chain, and the report keeps the latest session's records
    envs = [json.loads(Path(f).read_text())["environment"] for f in (first, second)]
    third = slm_pytester.results()["environment"]
    assert "confirms" not in envs[0] and envs[1]["confirms"]["first_run"] == envs[0]["run_id"]
    assert [envs[1]["confirms"]["session"], third["confirms"]["session"]] == [2, 3]
    assert third["confirms"]["first_run"] == envs[0]["run_id"] and third["confirms"]["results"] == str(second)
    merged = merge([slm_pytester.output / "results.json", Path(first), Path(second)])
    kept = [r for r in merged.records if "test_tpot" in r["test"]]
    assert kept and all(r["source"] == str(slm_pytester.output / "results.json") for r in kept)
    assert not merged.conflicts and len(merged.superseded) == 2 * len(kept)  # each TPOT figure, twice

    monkeypatch.delenv("SLM_FAKE_TPOT_S")
    slm_pytester.run(*ARGS, "--slm-baseline-dir", str(root)).assert_outcomes(passed=4)
    calm = shutil.copy(slm_pytester.output / "results.json", tmp_path / "calm.json")
    nothing = slm_pytester.run(*ARGS, "--slm-baseline-dir", str(root), "--slm-confirm", str(calm))
    nothing.assert_outcomes(deselected=by_k + 4)
    assert nothing.ret == pytest.ExitCode.OK  # nothing left to confirm is a success, not "no tests ran"


def test_confirm_with_a_bad_file_is_a_usage_error(slm_pytester, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    slm_pytester.pytester.makepyfile(LATENCY)
    result = slm_pytester.run(*ARGS, "--slm-confirm", str(tmp_path / "nope.json"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--slm-confirm:*nope.json does not exist*"])


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_code_identity_covers_uncommitted_changes(tmp_path: Path) -> None:
    """What a confirmation compares: the commit, and a digest of the uncommitted changes to tracked
    files, staged or not; untracked files (a session's own outputs) are not code."""

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)  # fmt: skip

    git("init", "-q")
    (tmp_path / "bench.py").write_text("N = 1\n")
    git("add", "bench.py")
    git("commit", "-q", "-m", "one")
    assert git_commit(tmp_path) and git_diff(tmp_path) is None
    (tmp_path / "results.json").write_text("{}")  # untracked: not part of the code
    assert git_diff(tmp_path) is None
    (tmp_path / "bench.py").write_text("N = 2\n")
    edited = git_diff(tmp_path)
    assert edited is not None
    git("add", "bench.py")
    assert git_diff(tmp_path) == edited  # staged or not, the same change
    (tmp_path / "bench.py").write_text("N = 3\n")
    assert git_diff(tmp_path) not in (None, edited)


def test_an_invalid_confirmation_keeps_the_earlier_verdicts_where_the_test_passed(  # type: ignore[no-untyped-def]
    slm_pytester, tmp_path: Path, monkeypatch
) -> None:
    """A confirmation whose window is void (here the machine 12 % slower, then a queueing client)
    adds no session: where the first run's test passed (TPOT inconclusive), its verdicts stand and
    the test passes; the next confirmation pools the first session only, never the void window.
    Where the first run's test failed (TTFT regressed), an invalid confirmation cannot clear it."""
    monkeypatch.setenv("SLM_FAKE_JITTER", "0.01")
    slm_pytester.pytester.makepyfile(LATENCY)
    root = tmp_path / "baselines"
    for tpot in ("0.0194", "0.0206", "0.02", "0.0197", "0.0203"):  # sessions that differ, as real ones do
        monkeypatch.setenv("SLM_FAKE_TPOT_S", tpot)
        slm_pytester.run(*ARGS, "--slm-baseline-dir", str(root), "--slm-save-baseline").assert_outcomes(passed=4)
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.0206")  # 3 % slower: within tau or not, one session cannot say
    monkeypatch.setenv("SLM_FAKE_TTFT_S", "0.07")  # 40 % slower: regressed
    first = slm_pytester.run(*ARGS, "--slm-baseline-dir", str(root))
    first.assert_outcomes(passed=2, failed=2, deselected=(by_k := first.parseoutcomes()["deselected"]))
    verdicts = {(r["test"], r["metric"]): r["baseline"]["verdict"] for r in slm_pytester.results()["records"]
                if r["gated"]}  # fmt: skip
    tpot = {k: v for k, v in verdicts.items() if "tpot_p50" in k[1]}
    assert set(tpot.values()) == {"inconclusive"}, verdicts
    assert {v for k, v in verdicts.items() if "ttft_p50" in k[1]} == {"regressed"}, verdicts
    one = shutil.copy(slm_pytester.output / "results.json", tmp_path / "one.json")

    monkeypatch.setenv("SLM_FAKE_MACHINE_S", "0.0056")  # the machine 12 % slower for this session,
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.0231")  # and the engine with it: TPOT would read "regressed"
    void = slm_pytester.run(*ARGS, "--slm-baseline-dir", str(root), "--slm-confirm", str(one))
    void.assert_outcomes(passed=2, failed=2, deselected=by_k)  # TPOT stands; TTFT stays red, as invalid
    void.stdout.fnmatch_lines(["*invalid, the earlier run's verdicts stand: *test_tpot*12.0 % slower*"])
    void.stdout.fnmatch_lines(["*invalid measurement: the machine is 12.0 % slower*"])
    (gate,) = [line for line in void.outlines if line.startswith("gate: ")]
    assert gate.endswith(", 4 invalid"), gate  # the TTFT tests' gated figures; diagnostics are not counted
    records = slm_pytester.results()["records"]
    stood = [r for r in records if r["gated"] and "test_tpot" in r["test"]]
    assert stood and all(r["outcome"] == "invalid" and r["baseline"]["stood"]["measured_in"] == str(one) for r in stood)
    first_rows = {(r["test"], r["metric"]): r for r in json.loads(Path(one).read_text())["records"]}
    for r in stood:  # the first run's verdict and figures, and what it pooled, not this window's
        earlier = first_rows[(r["test"], r["metric"])]
        assert r["baseline"]["verdict"] == earlier["baseline"]["verdict"]
        assert r["baseline"]["ratio"] == earlier["baseline"]["ratio"]
        assert r["baseline"]["earlier"] == [earlier["value"]] and r["value"] != earlier["value"]
        assert "invalid here (the machine is 12.0 % slower" in r["baseline"]["note"]
    assert {r["baseline"]["verdict"] for r in records if r["gated"] and "test_ttft" in r["test"]} == {"invalid"}
    markdown = (slm_pytester.output / "results.md").read_text()
    stands = [line for line in markdown.splitlines() if "(a confirmation: the earlier run's verdicts stand)" in line]
    assert len(stands) == 2 and all("test_tpot" in line for line in stands)  # both TPOT tests, not the TTFT ones
    two = shutil.copy(slm_pytester.output / "results.json", tmp_path / "two.json")

    monkeypatch.delenv("SLM_FAKE_MACHINE_S")  # a valid window again: it pools the first session, not the void one
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.0206")
    slm_pytester.run(*ARGS, "--slm-baseline-dir", str(root), "--slm-confirm", str(two)).assert_outcomes(
        passed=2, failed=2, deselected=by_k
    )
    third = [r for r in slm_pytester.results()["records"] if r["metric"] == "tpot_p50_s"]
    assert len(third) == 2 and all(r["outcome"] == "passed" and not r["baseline"].get("stood") for r in third)
    for r in third:
        assert r["baseline"]["n_current"] == 2
        assert r["baseline"]["earlier"] == [first_rows[(r["test"], "tpot_p50_s")]["value"]]
    # the test the first run failed (TTFT regressed), then voided: the void window threw nothing away,
    # this session pools the first one's figure (hole 3 of the red-light issue: it was judged alone)
    ttft = [r for r in slm_pytester.results()["records"] if r["metric"] == "ttft_p50_s"]
    assert len(ttft) == 2 and all(r["baseline"]["verdict"] == "regressed" for r in ttft)
    for r in ttft:
        assert r["baseline"]["n_current"] == 2
        assert r["baseline"]["earlier"] == [first_rows[(r["test"], "ttft_p50_s")]["value"]]

    # the merged report shows the verdicts the job acted on: the valid sessions', never the void one's
    merged = merge([Path(two), Path(one), slm_pytester.output / "results.json"])
    kept = {r["source"] for r in merged.records if "test_tpot" in r["test"]}
    assert kept == {str(slm_pytester.output / "results.json")}
    only_void = merge([Path(two), Path(one)])
    assert {r["source"] for r in only_void.records if "test_tpot" in r["test"]} == {str(one)}
    assert not only_void.conflicts


#: a session whose failures leave no gated figure behind: a floor on a diagnostic figure, a setup
#: error, a test that raises before its first record; and one fine test
UNGATED_FAILURES = """
import pytest


@pytest.fixture
def broken_engine(slm_engine):
    raise RuntimeError("the quantized checkpoint would not load")


def test_setup_error(broken_engine, slm):
    slm.record("ttft_p50_s", 0.05, unit="s", higher_is_better=False)


@pytest.mark.slm_threshold(**{"slm_mc.retention": ">= 0.99"})
def test_retention_floor(slm_engine, slm):
    slm.record("slm_mc.retention", 0.9, unit="1", higher_is_better=True)


def test_raises_before_recording(slm_engine, slm):
    raise ValueError("broke before the first record")


def test_fine(slm_engine, slm):
    slm.record("slm_mc.retention", 1.0, unit="1", higher_is_better=True)
"""


def test_a_confirmation_reruns_every_test_that_did_not_pass(slm_pytester, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Holes 1 and 2 of the red-light issue: a failed floor on a figure the gate does not gate, a setup
    error and a test that raised before recording leave no gated record; the confirmation must run them
    again (and they fail again), leaving only the test that passed. Before, it deselected all four
    and exited 0."""
    slm_pytester.pytester.makepyfile(test_user=UNGATED_FAILURES)
    first = slm_pytester.run()
    first.assert_outcomes(passed=1, failed=2, errors=1)
    doc = slm_pytester.results()
    outcomes = {k.split("::")[-1].split("[")[0]: v["outcome"] for k, v in doc["tests"].items()}
    assert outcomes == {"test_setup_error": "error", "test_retention_floor": "failed",
                        "test_raises_before_recording": "failed", "test_fine": "passed"}  # fmt: skip
    assert doc["verdict"]["status"] == "error" and doc["verdict"]["tests"] == {"error": 1, "failed": 2, "passed": 1}
    saved = shutil.copy(slm_pytester.output / "results.json", tmp_path / "first.json")

    again = slm_pytester.run("--slm-confirm", str(saved))
    again.assert_outcomes(failed=2, errors=1, deselected=1)
    assert again.ret == pytest.ExitCode.TESTS_FAILED
    again.stdout.fnmatch_lines(["*3 test(s) to measure again, 1 settled there*"])


KILLER = """
import os


def test_a(slm_engine, slm):
    slm.record("ttft_p50_s", 0.05, unit="s", higher_is_better=False)


def test_b_kills_the_run(slm_engine, slm):
    os._exit(3)  # the runner's job is killed here: nothing after this is reported


def test_c(slm_engine, slm):
    slm.record("ttft_p50_s", 0.05, unit="s", higher_is_better=False)
"""


def test_a_killed_run_leaves_what_it_never_reported_to_the_confirmation(slm_pytester, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A run killed in the middle leaves results.json with every collected test; what it never
    finished is what the confirmation runs again."""
    slm_pytester.pytester.makepyfile(test_user=KILLER)
    killed = slm_pytester.run(subprocess=True)
    assert killed.ret == 3
    doc = slm_pytester.results()
    outcomes = {k.split("::")[-1].split("[")[0]: v["outcome"] for k, v in doc["tests"].items()}
    # the file is rewritten when a test reports figures: the killed test reads as never run, like the next
    assert outcomes == {"test_a": "passed", "test_b_kills_the_run": "not run", "test_c": "not run"}
    saved = shutil.copy(slm_pytester.output / "results.json", tmp_path / "killed.json")
    assert load(Path(saved), doc["environment"].get("git_commit"), doc["environment"].get("git_diff")).settled == {
        next(k for k in doc["tests"] if "test_a" in k)
    }
    slm_pytester.pytester.makepyfile(test_user=KILLER.replace("os._exit(3)", "pass"))
    again = slm_pytester.run("--slm-confirm", str(saved))
    again.assert_outcomes(passed=2, deselected=1)
