"""Confirming a verdict with another session of the same code (``--slm-confirm``). Pytest-free.

On a shared runner the between-session spread, not the repetitions, limits what one session can
tell: a 10 % slowdown can read "inconclusive", and an unchanged figure can fail to show it is
within tolerance. The CI remedy is to measure again: ``pytest benches --slm-confirm
slm-results/results.json`` (after copying the first run's results aside) reruns every test that
did not pass there: a gated figure regressed, improved, inconclusive or invalid; any record failed,
gated or not (a threshold or a retention floor, which must then fail again); or pytest's outcome for
the test (``results.json``'s ``tests``, every collected test) was a failure, an error, or never
came (a killed run). The session rule judges the geometric mean of the earlier session(s) and this
one against the baseline (:func:`pytest_slm.compare.rules.compare_sessions`, ``earlier``). Chained
confirmations pool every earlier valid session: each run carries the figures it was offered
forward (``environment.confirms.pooled``) and its rows the figures they pooled, so a void window,
an error or a crash in between throws none away.

Why this keeps the false-alarm level: the pooled comparison of m sessions is a valid test at
``alpha`` whether or not it is run; running it only after a first session did not pass can only
drop alarms it would have raised, never add one. For that, each comparison keeps the first run's
per-comparison level (its whole family's Bonferroni share), not one computed from the smaller
family the confirmation runs, which the data chose. The rows say how many sessions they pooled.

Only figures measured validly, on the same git commit and the same workload, are pooled; anything
else reruns as an ordinary single-session comparison, and the row's note says why.

A confirmation whose window turns out invalid (the machine moved, a foreign load, ...) adds no
session to the chain. Where the earlier run's test *passed* (its figures were inconclusive, say),
the earlier verdicts stand (:meth:`EarlierRun.standing`): the test passes again, its figures are
recorded as invalid, and each row repeats the earlier verdict with ``stood`` (the results file the
verdict was measured in, and its note) and the figures it pooled in ``earlier``, so a further
confirmation pools those and never this window's. Where the
earlier test failed (a regression, a threshold, an invalid window), an invalid confirmation cannot
clear it and fails as invalid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_slm import results
from pytest_slm.record import ERRORED
from pytest_slm.results import ComparisonRow, Verdict

#: earlier verdicts that make a test worth measuring again
TO_CONFIRM = frozenset({Verdict.REGRESSED, Verdict.IMPROVED, Verdict.INCONCLUSIVE, Verdict.INVALID})
#: the comparison rules whose figures are pooled across sessions (timings, throughput, energy, memory)
SESSION_RULES = frozenset({"sessions-t", "within-session"})
#: a test's pytest outcome (``results.json``'s ``tests``) that makes it run again: it failed or erred,
#: or the run never saw it finish (a crash, a killed job): see :mod:`pytest_slm.report.collector`
UNFINISHED = ERRORED | {"failed"}


class ConfirmError(Exception):
    """``--slm-confirm`` was given a file it cannot use."""


@dataclass(frozen=True)
class Earlier:
    """One metric's figures from earlier sessions of this code, oldest first."""

    values: tuple[float, ...]
    workload: Mapping[str, Any]


@dataclass
class EarlierRun:
    """What an earlier run of the same code says: which tests to run again, and their figures."""

    path: Path
    git_commit: str | None
    #: node ids of the tests with a figure to confirm
    tests: set[str] = field(default_factory=set)
    #: (model, precision, baseline key) -> the figures to pool
    figures: dict[tuple[str, str, str], Earlier] = field(default_factory=dict)
    #: tests of the earlier run left out of this one (every gated figure passed or was not compared)
    settled: set[str] = field(default_factory=set)
    #: the per-comparison level the earlier run used (its whole family's): the confirmation keeps it,
    #: never the laxer level of its own smaller family (which would follow from what the data chose)
    alpha: float | None = None
    #: the chain this run continues: its first session's ``run_id``, and this run's session number (first: 1)
    first_run: str | None = None
    session: int = 2
    #: (model, precision, baseline key) -> the earlier run's comparison row where its test passed, None
    #: where it failed (an invalid confirmation falls back on the row, never on None)
    rows: dict[tuple[str, str, str], tuple[Mapping[str, Any], Mapping[str, Any]] | None] = field(default_factory=dict)

    def chain(self) -> dict[str, Any]:
        """What this run's ``results.json`` says about its place in the chain (``environment.confirms``):
        ``pytest-slm report`` lets a later session's records supersede an earlier one's. ``pooled``
        carries the earlier sessions' valid figures forward, so a further confirmation pools them
        whatever this run does with the test (a void window, an error, a crash)."""
        return {
            "results": str(self.path),
            "first_run": self.first_run,
            "session": self.session,
            "code_identity": "checked" if self.git_commit else "unchecked: not a git checkout",
            "pooled": [
                {
                    "model": model,
                    "precision": precision,
                    "baseline_key": key,
                    "values": list(found.values),
                    "workload": dict(found.workload),
                }
                for (model, precision, key), found in sorted(self.figures.items())
            ],
        }

    def earlier(
        self, model: str, precision: str, key: str, workload: Mapping[str, Any]
    ) -> tuple[tuple[float, ...], str]:
        """The figures to pool with this session's, and why none when there are none."""
        found = self.figures.get((model, precision, key))
        if found is None:
            return (), ""
        if dict(found.workload) != dict(workload):
            return (), f"not pooled with {self.path}: its workload differs"
        return found.values, ""

    def standing(
        self, model: str, precision: str, keys: Mapping[str, str], workloads: Mapping[str, Mapping[str, Any]], why: str
    ) -> dict[str, ComparisonRow] | None:
        """The rows an invalid confirmation of a test reports instead of its own (metric -> row): the
        earlier run's, where it compared the test's gated figures and the test passed there, on the
        same workload; None when any of them failed there or was measured otherwise, or none was
        compared (the test then fails as invalid). ``keys``: metric -> baseline key; ``why``: the
        invalid reasons."""
        out: dict[str, ComparisonRow] = {}
        for metric, key in keys.items():
            if (model, precision, key) not in self.rows:
                continue  # not compared there: nothing to stand
            found = self.rows[(model, precision, key)]
            if found is None or dict(found[1]) != dict(workloads.get(metric, {})):
                return None
            earlier = found[0]
            row = {k: v for k, v in earlier.items() if k != "earlier"}
            pooled = self.figures.get((model, precision, key))
            if pooled is not None:
                row["earlier"] = list(pooled.values)  # all of them: this window adds none
            # where the verdict was measured, and its own note (an earlier void window passes them on)
            origin = earlier["stood"] if isinstance(earlier.get("stood"), dict) else {}
            row["stood"] = {
                "measured_in": origin.get("measured_in", str(self.path)),
                "note": origin.get("note", earlier.get("note") or ""),
            }
            sessions = f"{len(pooled.values)} earlier session(s)" if pooled is not None else "the earlier run"
            row["note"] = (f"invalid here ({why}): the verdict of {sessions} stands ({row['stood']['measured_in']}); "
                           f"{row['stood']['note']}").rstrip("; ")  # fmt: skip
            out[metric] = row  # type: ignore[assignment]  # the earlier run's row, as it was written
        return out or None


def _young(row: Mapping[str, Any]) -> bool:
    """An inconclusive verdict against a baseline with too few sessions: pooling more sessions of this
    code cannot decide it (the missing sessions are the baseline's), so a confirmation would only
    measure it again to the same verdict."""
    n, needed = row.get("n_baseline"), row.get("min_sessions")
    return (
        row.get("verdict") == Verdict.INCONCLUSIVE
        and row.get("rule") == "within-session"
        and isinstance(n, int)
        and isinstance(needed, int)
        and n < needed
    )


def _changes(digest: str | None) -> str:
    return f"uncommitted changes {digest}" if digest else "no uncommitted changes"


def load(path: Path, git_commit: str | None, git_diff: str | None = None) -> EarlierRun:
    """Read an earlier ``results.json``; it must come from the same code: the same ``git_commit``
    and the same uncommitted changes to tracked files (``git_diff``, a digest; None: none)."""
    try:
        data = results.read(Path(path))
    except results.MissingResultsFile:
        raise ConfirmError(f"--slm-confirm: {path} does not exist") from None
    except results.ResultsFileError as exc:
        raise ConfirmError(f"--slm-confirm: {path} is not a pytest-slm results.json ({exc})") from None
    env = data.environment
    _same_code(path, env, git_commit, git_diff)
    before: dict[str, Any] = env["confirms"] if isinstance(env.get("confirms"), dict) else {}
    run = EarlierRun(
        Path(path),
        env.get("git_commit"),
        first_run=before.get("first_run") or env.get("run_id"),
        session=(before["session"] if isinstance(before.get("session"), int) and before["session"] >= 1 else 1) + 1,
    )
    for carried in before.get("pooled") or ():  # what the sessions before that one measured validly
        try:
            where = (str(carried["model"]), str(carried.get("precision", "")), str(carried["baseline_key"]))
            run.figures[where] = Earlier(tuple(float(v) for v in carried["values"]), carried.get("workload") or {})
        except (KeyError, TypeError, ValueError):
            continue
    seen: set[str] = set()
    for test, info in (data.tests or {}).items():  # every collected test: one that erred, crashed or never ran
        seen.add(test)
        if isinstance(info, dict) and info.get("outcome") in UNFINISHED:
            run.tests.add(test)
    records: list[Mapping[str, Any]] = [r for r in data.records if isinstance(r.get("test"), str)]
    stood = results.stood_tests(records)
    for r in records:
        seen.add(str(r["test"]))
        _take(run, r, str(r["test"]) in stood)
    run.settled = seen - run.tests
    return run


def _same_code(path: Path, env: Mapping[str, Any], git_commit: str | None, git_diff: str | None) -> None:
    """Refuse an earlier run of other code: another commit, or other uncommitted changes."""
    theirs = env.get("git_commit")
    if theirs != git_commit:
        raise ConfirmError(
            f"--slm-confirm: {path} was measured on commit {theirs or 'unknown'}, this run is on "
            f"{git_commit or 'unknown'}; a confirmation pools sessions of the same code only"
        )
    if "git_diff" in env and env["git_diff"] != git_diff:  # results written before the check lack it
        raise ConfirmError(
            f"--slm-confirm: {path} was measured with {_changes(env['git_diff'])} to tracked files, this run has "
            f"{_changes(git_diff)} (same commit {theirs or 'unknown'}); a confirmation pools sessions of the same "
            "code only: commit, or rerun the first session"
        )


def _take(run: EarlierRun, r: Mapping[str, Any], stood: bool) -> None:
    """What one earlier record tells ``run``: whether its test goes again, its comparison row (for a
    void window to stand on) and its figures to pool. ``stood``: its test's earlier verdicts stood."""
    test, outcome = str(r["test"]), r.get("outcome")
    # a failed record, gated or not (a retention floor, a threshold on a diagnostic), must fail again;
    # so must an invalid one, unless the earlier verdicts stood for it and its test passed
    if outcome == "failed" or (outcome == "invalid" and not stood):
        run.tests.add(test)
    if not r.get("gated", True):
        return
    row = r.get("baseline") or {}
    if isinstance(row.get("alpha"), (int, float)) and row["alpha"] > 0:
        run.alpha = min(run.alpha or 1.0, float(row["alpha"]))
    if row.get("verdict") in TO_CONFIRM and not _young(row):
        run.tests.add(test)
    if not (r.get("model") and r.get("baseline_key")):
        return
    where = (r["model"], r.get("precision", ""), r["baseline_key"])
    if row.get("verdict") and row.get("verdict") != Verdict.INVALID:
        passed = outcome == "passed" or stood
        run.rows[where] = (row, r.get("workload") or {}) if passed else None
    if row.get("stood") and row.get("rule") in SESSION_RULES and row.get("earlier"):
        run.figures[where] = Earlier(tuple(float(v) for v in row["earlier"]), r.get("workload") or {})
    elif (
        row.get("rule") in SESSION_RULES
        and outcome != "invalid"
        and isinstance(r.get("value"), (int, float))
        and r["value"] > 0
    ):
        values = (*(float(v) for v in row.get("earlier") or ()), float(r["value"]))
        run.figures[where] = Earlier(values, r.get("workload") or {})
