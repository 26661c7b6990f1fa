"""The gate's rule replayed on real recorded sessions (``scripts/data/aa_sessions_cpu.json``: quick
profile sessions of the embedded SmolLM2 on vLLM-CPU, recorded one after the other with
``scripts/aa_sessions.py``; ``aa_sessions_cpu_probe.json``: 11 more, three hours later, with the
reference kernel timed around every window and the plugin's own sequential verdicts; two more sets,
7 and 11 sessions, later). The replay
goes through the plugin's own ``compare_metric``, so a change
to the rule that makes it cry wolf on this machine's real noise, or stop seeing a large slowdown,
fails here."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "scripts" / "data" / "aa_sessions_cpu.json"
PROBED = ROOT / "scripts" / "data" / "aa_sessions_cpu_probe.json"
#: 7 sessions recorded with the final kernel rules (fewer than 10: used with the two sets above)
FINAL = ROOT / "scripts" / "data" / "aa_sessions_cpu_final.json"
#: 11 sessions two hours after those, with the pooled spread deciding in the run
POOLED = ROOT / "scripts" / "data" / "aa_sessions_cpu_pooled.json"


@pytest.fixture(scope="module")
def proof():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gate_proof", ROOT / "scripts" / "gate_proof.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path: Path) -> list[dict]:  # type: ignore[type-arg]
    data = json.loads(path.read_text())
    assert len(data["sessions"]) >= (7 if path == FINAL else 10), "the issue asks for at least 10 real sessions"
    return data["sessions"]


@pytest.fixture(scope="module")
def sessions() -> list[dict]:  # type: ignore[type-arg]
    return load(DATA)


def totals(per_metric: dict[str, Counter[str]], keys: list[str] | None = None) -> Counter[str]:
    return sum((c for k, c in per_metric.items() if keys is None or k in keys), Counter())


@pytest.mark.parametrize(
    ("path", "k"),
    [(DATA, 5), (DATA, 9), (PROBED, 5), (PROBED, 9), (FINAL, 3), (FINAL, 5), (POOLED, 5), (POOLED, 9)],
    ids=["day1-k5", "day1-k9", "day2-probed-k5", "day2-probed-k9", "final-k3", "final-k5", "day4-k5", "day4-k9"],
)
def test_recorded_aa_sessions_raise_no_false_alarm(proof, path: Path, k: int) -> None:  # type: ignore[no-untyped-def]
    per_metric, _, alarms, _, family = proof.replay(load(path), k, 0.05, 1.0, np.random.default_rng(0), 10)
    total = totals(per_metric)
    n = sum(total.values())
    assert n >= 10 * family
    assert (total["regressed"] + total["improved"]) / n <= 0.01  # per gate
    assert float(np.mean(alarms)) <= 0.05  # family-wise, per session


def test_a_slowdown_is_never_called_an_improvement(proof, sessions) -> None:  # type: ignore[no-untyped-def]
    per_metric, _, _, _, _ = proof.replay(sessions, 9, 0.05, 1.10, np.random.default_rng(1), 10)
    assert totals(per_metric)["improved"] == 0


def test_a_ten_percent_tpot_slowdown_is_found_with_nine_saved_sessions(proof, sessions) -> None:  # type: ignore[no-untyped-def]
    """The issue's detection goal (10 % TPOT slowdown found >= 95 % of the time), on this CPU's
    recorded noise: met by the single-stream TPOT p50 with nine saved sessions (with five, and for
    TPOT at batch 8, the recorded spread is too wide: the closing note gives those rates)."""
    per_metric, _, _, _, _ = proof.replay(sessions, 9, 0.05, 1.10, np.random.default_rng(2), 10)
    got = per_metric["test_tpot[smollm2-135m-bf16-single]::tpot_p50_s"]
    assert got["regressed"] / sum(got.values()) >= 0.95, got


def test_the_machine_check_rarely_voids_an_unchanged_session(proof) -> None:  # type: ignore[no-untyped-def]
    """The reference kernel's shift rule on real kernel times of unchanged sessions: a comparison
    it voids is a lost verdict, so it must be rare (it was 2 of 1,175 comparisons at K = 5)."""
    per_metric, _, _, _, _ = proof.replay(load(PROBED), 5, 0.05, 1.0, np.random.default_rng(3), 10)
    total = totals(per_metric)
    assert total["invalid (machine)"] / sum(total.values()) <= 0.01, total


def test_the_probed_sessions_carry_the_kernel_around_every_timing_window() -> None:
    for session in load(PROBED):
        timed = [
            f for key, f in session["figures"].items() if not key.startswith(("test_checkpoint", "test_kv", "test_mem"))
        ]
        assert timed and all(f["machine"] and f["machine"]["kernel"].startswith("matmul-stream/") for f in timed)


def test_the_pooled_spread_finds_more_of_a_slowdown_than_each_metric_alone(proof) -> None:  # type: ignore[no-untyped-def]
    """Five saved sessions (a young baseline) of the final set: each figure's own four degrees of
    freedom find a 10 % TPOT p50 slowdown about a quarter of the time; borrowing the spread of the
    file's other median speeds finds it at least half the time, with no more false alarms
    (measured: 24 % and 56 %)."""
    sessions = load(FINAL)
    tpot = [k for k in sessions[0]["figures"] if k.endswith("::tpot_p50_s")]

    def found(pooled: bool) -> float:
        per_metric, _, _, _, _ = proof.replay(sessions, 5, 0.05, 1.10, np.random.default_rng(3), 10, pooled=pooled)
        got = totals(per_metric, tpot)
        return got["regressed"] / sum(got.values())

    own, pooled = found(False), found(True)
    assert pooled >= 0.5 and pooled > own + 0.15, (own, pooled)


def test_the_pooled_kernel_spread_voids_fewer_unchanged_comparisons(proof) -> None:  # type: ignore[no-untyped-def]
    """The final set's kernel times: with each figure's own few saved kernel times the shift rule
    voided 4.8 % of unchanged comparisons at K = 5; with the kernel's spread pooled over every
    window of the baseline, 1.9 %."""
    voided = {}
    for pooled in (False, True):
        per_metric, _, _, _, _ = proof.replay(load(FINAL), 5, 0.05, 1.0, np.random.default_rng(3), 10, pooled=pooled)
        total = totals(per_metric)
        voided[pooled] = total["invalid (machine)"] / sum(total.values())
    assert voided[True] <= 0.025 and voided[True] < voided[False], voided


#: the script (20 draws a session) finds it 73 % -> 100 % on day 1, 14 % -> 30 % on day 4
@pytest.mark.parametrize(("path", "at_least"), [(DATA, 0.95), (POOLED, 0.0)], ids=["day1", "day4"])
def test_a_confirmation_session_finds_more_and_keeps_false_alarms_rare(proof, path: Path, at_least: float) -> None:  # type: ignore[no-untyped-def]
    """``--slm-confirm`` replayed (K = 5): a figure that did not pass is judged again on the mean of two
    sessions. The single-stream TPOT p50 slowed by 10 % is found more often than by one session (on
    the first day's set, at the issue's 95 %); unchanged sessions still raise at most 1 % false alarms
    per gate and leave fewer figures inconclusive."""
    recorded = load(path)
    key = "test_tpot[smollm2-135m-bf16-single]::tpot_p50_s"

    def rates(confirm: int, slowdown: float) -> tuple[Counter[str], list[bool]]:
        per_metric, _, alarms, _, _ = proof.replay(recorded, 5, 0.05, slowdown, np.random.default_rng(3), 10,
                                                   confirm=confirm)  # fmt: skip
        return per_metric, alarms

    def share(counts: Counter[str], verdict: str) -> float:
        return counts[verdict] / (sum(counts.values()) - counts["(confirmed)"])

    one, _ = rates(1, 1.10)
    two, _ = rates(2, 1.10)
    # never fewer; on the noisiest set (few valid draws at 10 per session) not always more
    assert share(two[key], "regressed") >= share(one[key], "regressed")
    assert share(two[key], "regressed") >= at_least
    aa_one, _ = rates(1, 1.0)
    aa_two, alarms = rates(2, 1.0)
    assert share(totals(aa_two), "regressed") + share(totals(aa_two), "improved") <= 0.01
    assert float(np.mean(alarms)) <= 0.05
    assert share(totals(aa_two), "inconclusive") < share(totals(aa_one), "inconclusive")


def test_a_third_session_still_helps_on_the_noisy_sets(proof) -> None:  # type: ignore[no-untyped-def]
    """Why the Actions example confirms up to twice: on the second and the fourth recorded sets (the
    script, 20 draws a session: batch TPOT p50 +10 % found 83 -> 98 % and 63 -> 84 % with two -> three
    sessions), the third session finds the slowdown more often than two did."""
    key = "test_tpot[smollm2-135m-bf16-batch]::tpot_p50_s"
    for path in (PROBED, POOLED):  # the second and the fourth set
        found = []
        for confirm in (2, 3):
            per_metric, _, _, _, _ = proof.replay(load(path), 5, 0.05, 1.10, np.random.default_rng(3), 10,
                                                  confirm=confirm)  # fmt: skip
            counts = per_metric[key]
            found.append(counts["regressed"] / (sum(counts.values()) - counts["(confirmed)"]))
        assert found[1] > found[0], (path.name, found)


def test_consecutive_sessions_are_not_correlated() -> None:
    """The reason docs/gates.md gives that a confirmation run minutes later is a fresh draw: in the recorded sets
    (sessions about 3 minutes apart) a session's median latencies and throughput do not follow the
    session before (lag-1 correlation of the per-session figures, averaged over metrics and sets)."""
    lags = []
    for path in (DATA, PROBED, FINAL, POOLED):
        recorded = load(path)
        keys = [k for k, f in recorded[0]["figures"].items() if f.get("samples") and ("p50" in k or "tok_s" in k)]
        for key in keys:
            x = np.array([np.log(s["figures"][key]["value"]) if key in s["figures"] and s["figures"][key]["valid"]
                          else np.nan for s in recorded])  # fmt: skip
            a, b = x[:-1], x[1:]
            ok = ~(np.isnan(a) | np.isnan(b))
            if ok.sum() > 4:
                lags.append(float(np.corrcoef(a[ok], b[ok])[0, 1]))
    assert len(lags) >= 20
    assert float(np.mean(lags)) < 0.0


def test_the_spread_is_the_machines_state_not_the_engines_start() -> None:
    """``scripts/noise_timescale.py``'s record (6 engines x 4 blocks): blocks of one engine 40 s apart
    differ as much as engines do, and the engines' means spread more than independent blocks would."""
    spec = importlib.util.spec_from_file_location("noise_timescale", ROOT / "scripts" / "noise_timescale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    s = module.spreads(ROOT / "scripts" / "data" / "noise_timescale_cpu.jsonl")
    assert s["engines"] >= 6 and s["blocks"] >= 4
    assert s["within_engine"] >= s["first_blocks"]  # within one engine at least as much as between starts
    assert s["engine_means"] > s["independent_blocks_would_give"]  # states last for minutes
