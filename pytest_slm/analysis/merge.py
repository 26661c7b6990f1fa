"""Read results.json files and merge them without losing or double-counting a record.

A record's identity is (fingerprint, workload, model, precision, test, metric). The same identity
with the same value (and per-repetition samples) twice is one record counted once (the same file
given twice, or a CI shard re-uploaded); the same identity with a different value is a *conflict*:
the first input (in the order given) keeps its record in the tables and every other value is listed
in the conflicts, never silently overwritten. One exception: sessions of one *confirmation chain*
(``--slm-confirm``: a first session and the confirmations that reran what did not pass there, each
saying so in ``environment.confirms``). There the later session's record *supersedes* the earlier
one's, whatever the input order: it is the verdict of the pooled sessions, the one the CI acted on;
except a confirmation's invalid record that only repeats an earlier session's verdict (``stood``: its
window was void), which the valid record it repeats supersedes.
The superseded records are kept in the merged document, never dropped. A file that cannot be read, is not JSON, or has
another schema is named in an :class:`InputError`; the other inputs still merge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_slm import results
from pytest_slm.results import InputError, workload_of

MERGED_SCHEMA = "pytest-slm-merged/1"


@dataclass(frozen=True)
class Source:
    """One results.json that was read."""

    path: str
    started_at: str  # the run's start (environment.started_at), else the file's modification time
    time_source: str  # "environment.started_at" or "file mtime"
    fingerprint: str | None
    environment: Mapping[str, Any]
    records: int


@dataclass(frozen=True)
class Conflict:
    """Two records with the same identity and different values."""

    identity: Mapping[str, Any]
    kept_value: float
    kept_source: str
    other_value: float
    other_source: str
    other: Mapping[str, Any]

    def describe(self) -> str:
        i = self.identity
        return (
            f"{i['model']}-{i['precision']} {i['test']} {i['metric']}: {self.kept_value!r} in {self.kept_source} "
            f"(kept) vs {self.other_value!r} in {self.other_source}"
        )


@dataclass(frozen=True)
class Superseded:
    """A record replaced by a later session of the same confirmation chain."""

    identity: Mapping[str, Any]
    kept_source: str
    kept_session: int
    record: Mapping[str, Any]
    session: int


def chain_of(environment: Mapping[str, Any]) -> tuple[tuple[Any, Any] | None, int]:
    """A results file's confirmation chain (git commit, its first session's ``run_id``) and its session
    number in it (1: a first session); no chain (None) for files without a run id."""
    confirms = environment.get("confirms") if isinstance(environment.get("confirms"), Mapping) else None
    if confirms is None:
        first, session = environment.get("run_id"), 1
    else:
        first = confirms.get("first_run")
        session = confirms["session"] if isinstance(confirms.get("session"), int) else 2
    if not isinstance(first, str) or not first:
        return None, session
    return (environment.get("git_commit"), first), session


@dataclass
class Merged:
    """The union of the inputs' records (each with ``source`` and ``fingerprint``), and what merging found."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    duplicates: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    superseded: list[Superseded] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """``complete_results.json``: every kept record, the conflicting ones, the inputs and the errors."""
        return {
            "schema": MERGED_SCHEMA,
            "inputs": [
                {
                    "path": s.path,
                    "started_at": s.started_at,
                    "time_source": s.time_source,
                    "fingerprint": s.fingerprint,
                    "records": s.records,
                    "environment": dict(s.environment),
                }
                for s in self.sources
            ],
            "records": self.records,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "conflicts": conflicts_document(self.conflicts),
            "superseded": [
                {
                    "identity": dict(x.identity),
                    "kept_source": x.kept_source,
                    "kept_session": x.kept_session,
                    "session": x.session,
                    "record": dict(x.record),
                }
                for x in self.superseded
            ],
            "errors": [{"path": e.path, "message": e.message} for e in self.errors],
        }


def conflicts_document(conflicts: Sequence[Conflict]) -> list[dict[str, Any]]:
    return [
        {
            "identity": dict(c.identity),
            "kept_value": c.kept_value,
            "kept_source": c.kept_source,
            "other_value": c.other_value,
            "other_source": c.other_source,
            "other_record": dict(c.other),
        }
        for c in conflicts
    ]


def identity(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """(fingerprint, workload, model, precision, test, metric); the workload as canonical JSON."""
    workload = workload_of(record)
    return (
        record.get("fingerprint"),
        None if workload is None else json.dumps(workload, sort_keys=True, default=str),
        record.get("model"),
        record.get("precision"),
        record.get("test"),
        record.get("metric"),
    )


def run_started_at(path: Path, environment: Mapping[str, Any]) -> tuple[str, str]:
    started = environment.get("started_at")
    if isinstance(started, str) and started:
        return started, "environment.started_at"
    mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    return mtime.isoformat(timespec="seconds"), "file mtime"


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bool(a.get("value") == b.get("value") and list(a.get("samples") or ()) == list(b.get("samples") or ()))


def _rank(record: Mapping[str, Any], session: int, stood_tests: set[Any]) -> tuple[bool, int]:
    """Which of a chain's records of one figure is its verdict: the latest session's, the records of a
    test whose void window only repeated an earlier verdict (``stood``) after every valid one."""
    return record.get("test") not in stood_tests, session


def merge(paths: Sequence[Path]) -> Merged:
    """Merge the results files and directories in ``paths`` (earlier inputs win conflicts)."""
    files, errors = results.find(paths)
    out = Merged(errors=list(errors))
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    #: identity -> (chain, session number, index in out.records) of the record kept
    place: dict[tuple[Any, ...], tuple[tuple[Any, Any] | None, int, int]] = {}
    seen_skips: set[tuple[Any, ...]] = set()
    stood_tests: dict[str, set[Any]] = {}  # source -> its tests whose earlier verdicts stood (see _rank)
    for path in files:
        try:
            doc = results.read(path)
        except results.ResultsFileError as exc:
            out.errors.append(InputError(str(path), str(exc)))
            continue
        out.errors.extend(doc.problems)
        env = doc.environment
        fp = env.get("fingerprint") if isinstance(env.get("fingerprint"), str) else None
        started, time_source = run_started_at(path, env)
        chain, session = chain_of(env)
        stood = stood_tests[str(path)] = results.stood_tests(doc.records)
        out.sources.append(Source(str(path), started, time_source, fp, env, len(doc.records)))
        for raw in doc.records:
            rec: dict[str, Any] = {**raw, "fingerprint": raw.get("fingerprint") or fp, "source": str(path)}
            key = identity(rec)
            kept = seen.get(key)
            if kept is None:
                seen[key] = rec
                place[key] = (chain, session, len(out.records))
                out.records.append(rec)
                continue
            ident = dict(zip(("fingerprint", "workload", "model", "precision", "test", "metric"), key, strict=True))
            kept_chain, kept_session, index = place[key]
            # checked before duplicates: equal figures of two sessions still differ in their pooled verdict
            if chain is not None and chain == kept_chain and session != kept_session:
                # a later session confirmed the kept one (a void window that kept earlier verdicts never does)
                if _rank(rec, session, stood) > _rank(kept, kept_session, stood_tests[kept["source"]]):
                    seen[key] = out.records[index] = rec
                    place[key] = (chain, session, index)
                    out.superseded.append(Superseded(ident, str(path), session, kept, kept_session))
                else:
                    out.superseded.append(Superseded(ident, kept["source"], kept_session, rec, session))
                continue
            if _same(kept, rec):
                out.duplicates += 1
                continue
            out.conflicts.append(
                Conflict(ident, float(kept["value"]), kept["source"], float(rec["value"]), str(path), rec)
            )
        for s in doc.skipped:
            skey = (fp, s.get("test"), s.get("reason"))
            if skey not in seen_skips:
                seen_skips.add(skey)
                out.skipped.append({**s, "fingerprint": fp, "source": str(path)})
    return out
