"""The results document, ``results.json``: its one typed model, its one reader. Pytest-free.

Everything that writes or reads a record row goes through this module (asv's ``results.py`` idea:
one owner of the file format):

- :class:`Verdict`: every verdict a figure can get, from the gate (``pass``, ``regressed``,
  ``improved``, ``inconclusive``, ``incomparable``, ``invalid``, ``skipped``, ``error``) and from
  ``pytest-slm diff`` (``not gated``, ``only in A``, ``only in B``). A ``str`` enum: the JSON keeps
  the same strings, and a member compares equal to its string.
- :class:`Record`: one row of ``records``, built by :func:`record_rows` in the process that ran the
  test and finished by :func:`finished` on the xdist controller (its test id and outcome).
- :func:`read`: the one reader, with the schema check, used by ``--slm-confirm``, ``pytest-slm
  report``/``diff``/``trend``/``export`` and the leaderboard.
- :func:`fmt`: the one number formatter of the tables; :data:`COLUMNS`: a record as a table row.

The writer (the environment, the run's verdict, results.md) is :mod:`pytest_slm.report.writers`.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypedDict, cast

from pytest_slm.record import Metric

#: the schema of ``results.json`` (a reader refuses any other)
SCHEMA = "pytest-slm/1"
#: the file a run writes into its output directory, and that directory searches find
RESULTS_NAME = "results.json"
#: how an invalid measurement's failure message and comparison note start (told from a regression by it)
INVALID_PREFIX = "invalid measurement: "


class Verdict(str, Enum):
    """A figure's verdict against its reference. Formats and serialises as its plain string."""

    PASS = "pass"
    REGRESSED = "regressed"
    IMPROVED = "improved"
    INCONCLUSIVE = "inconclusive"
    #: the stored entry was measured on another workload: no verdict either way
    INCOMPARABLE = "incomparable"
    #: the measurement (or the machine under it) cannot be trusted: never compared
    INVALID = "invalid"
    #: the baselines are another machine's: comparison skipped
    SKIPPED = "skipped"
    #: the comparison could not be made (a changed unit, an unreadable baseline, bad samples)
    ERROR = "error"
    #: a diagnostic figure: recorded, never judged (``pytest-slm diff``'s rows)
    NOT_GATED = "not gated"
    #: a figure on one side of ``pytest-slm diff`` only
    ONLY_IN_A = "only in A"
    ONLY_IN_B = "only in B"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, format_spec: str) -> str:
        return format(str(self.value), format_spec)


#: the gate's verdicts in the order its summary counts them
GATE_VERDICTS: tuple[Verdict, ...] = (
    Verdict.PASS,
    Verdict.REGRESSED,
    Verdict.IMPROVED,
    Verdict.INCONCLUSIVE,
    Verdict.INCOMPARABLE,
    Verdict.INVALID,
    Verdict.SKIPPED,
    Verdict.ERROR,
)
#: verdicts that let a test pass without evidence of no regression (``--slm-strict`` fails them)
NO_EVIDENCE: tuple[Verdict, ...] = (Verdict.INCONCLUSIVE, Verdict.INCOMPARABLE, Verdict.SKIPPED)
#: verdicts a comparison rule reached (a per-comparison level was spent on each)
DECIDED: tuple[Verdict, ...] = (Verdict.PASS, Verdict.REGRESSED, Verdict.IMPROVED, Verdict.INCONCLUSIVE)


class ComparisonRow(TypedDict, total=False):
    """A record's ``baseline``: the gate's verdict on it and the numbers behind it
    (:class:`pytest_slm.compare.rules.Comparison`'s fields, plus where they came from)."""

    verdict: Verdict
    note: str
    metric: str
    rule: str
    baseline_value: float
    current_value: float
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    tau: float
    mde: float | None
    n_baseline: int
    n_current: int
    alpha: float | None
    #: the baseline file compared with
    file: str
    #: the machine's speed shift that voided the comparison
    machine_ratio: float
    #: the sessions the baseline needs before a timing can be called regressed
    min_sessions: int
    #: the figures of earlier sessions of this code it pooled (``--slm-confirm``)
    earlier: list[float]
    #: an invalid confirmation: the earlier verdict stands (where it was measured, and its note)
    stood: dict[str, Any]


class Record(TypedDict, total=False):
    """One row of ``results.json``'s ``records``: one figure of one test, and what became of it."""

    # the engine cell (absent for a test without an engine)
    model: str
    precision: str
    engine_id: str
    parallel: str | None
    kv_cache_dtype: str
    # the figure (:class:`pytest_slm.record.Metric`)
    metric: str
    value: float
    unit: str
    higher_is_better: bool
    n: int | None
    stderr: float | None
    samples: list[float]
    info: dict[str, Any]
    # what the plugin made of it
    gated: bool
    threshold: str | None
    baseline: ComparisonRow | None
    baseline_key: str | None
    workload: dict[str, Any] | None
    workload_id: str | None
    invalid_reasons: list[str] | None
    validity: str
    compared: bool
    # added on the controller (:func:`finished`)
    test: str
    outcome: str
    # added by a merge of several files
    fingerprint: str | None
    source: str


def record_rows(
    context: Mapping[str, Any],
    metrics: Iterable[Metric],
    *,
    is_gated: Callable[[str], bool],
    workload_id: Callable[[Mapping[str, Any]], str],
    invalid_reasons: Sequence[str] = (),
    checked: bool = False,
    compared: bool = True,
    thresholds: Mapping[str, str] | None = None,
    comparisons: Mapping[str, ComparisonRow] | None = None,
    key: str | None = None,
    identities: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Record]:
    """The rows of one test's figures, as the process that ran it knows them: the engine cell
    (``context``), each figure, its limit, its comparison, its baseline key and workload identity,
    and whether a checked window stands behind it (``checked``; none: "unchecked"). ``is_gated``
    and ``workload_id``: the gate's policy and identity digest
    (:func:`pytest_slm.compare.policy.is_gated`, :func:`pytest_slm.compare.identity.digest`)."""
    thresholds = thresholds or {}
    comparisons = comparisons or {}
    identities = identities or {}
    validity = "invalid" if invalid_reasons else ("checked" if checked else "unchecked")
    rows = []
    for m in metrics:
        row: dict[str, Any] = {
            **context,
            **{k: v for k, v in m.to_dict().items() if k != "name"},
            "metric": m.name,
            "gated": is_gated(m.name),
            "threshold": thresholds.get(m.name),
            "baseline": _plain(comparisons.get(m.name)),
            "baseline_key": f"{key}::{m.name}" if key else None,
            "workload": identities.get(m.name),
            "workload_id": workload_id(identities[m.name]) if m.name in identities else None,
            "invalid_reasons": list(invalid_reasons) or None,
            "validity": validity,
        }
        if not compared:
            row["compared"] = False
        rows.append(cast(Record, row))
    return rows


def _plain(row: ComparisonRow | None) -> ComparisonRow | None:
    """``row`` with its verdict as a plain ``str``: rows travel from xdist workers through execnet,
    which serialises builtin types only."""
    if row is None or not isinstance(row.get("verdict"), Verdict):
        return row
    return cast(ComparisonRow, {**row, "verdict": str(row["verdict"])})


def finished(row: Mapping[str, Any], test: str, outcome: str) -> Record:
    """A row as the report keeps it: with its test's id and outcome. An invalid measurement fails
    its test but is no failed model, so its outcome says "invalid" (a confirmation's invalid window
    passes where the earlier run's verdicts stand: "invalid" too)."""
    shown = "invalid" if outcome in ("failed", "passed") and row.get("invalid_reasons") else outcome
    return {**row, "test": test, "outcome": shown}  # type: ignore[typeddict-item]


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputError:
    """An input that could not be used (or a record in it); ``message`` names the file."""

    path: str
    message: str

    def __str__(self) -> str:
        return self.message


class ResultsFileError(Exception):
    """A results file that cannot be used; the message names it."""


class MissingResultsFile(ResultsFileError):
    """The path names no file."""


@dataclass
class Results:
    """One ``results.json`` as read: its records (the usable ones) and what else it holds."""

    path: Path
    environment: dict[str, Any]
    records: list[Record]
    skipped: list[dict[str, Any]]
    #: node id -> pytest's outcome for every collected test (None: a file written before the field)
    tests: dict[str, Any] | None = None
    unmeasured: list[dict[str, Any]] = field(default_factory=list)
    #: the records dropped (no metric name, no finite value), each named
    problems: list[InputError] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The document's fields as a dict (the shape ``results.json`` has)."""
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "environment": self.environment,
            "records": self.records,
            "skipped": self.skipped,
        }
        if self.tests is not None:
            doc["tests"] = self.tests
            doc["unmeasured"] = self.unmeasured
        return doc


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read(path: Path) -> Results:
    """One results.json, checked; raises :class:`ResultsFileError` for a file that cannot be used at
    all (:class:`MissingResultsFile` when there is none). Records without a metric name or a finite
    numeric value are dropped with an error naming the file and the record's index; the file's
    other records are kept."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingResultsFile(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"{path}: cannot be read ({exc})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ResultsFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ResultsFileError(f"{path}: expected a JSON object with schema {SCHEMA!r}, found {type(doc).__name__}")
    if doc.get("schema") != SCHEMA:
        raise ResultsFileError(
            f"{path}: schema {doc.get('schema')!r} is not a pytest-slm results file (expected {SCHEMA!r})"
        )
    records = doc.get("records")
    if not isinstance(records, list):
        raise ResultsFileError(f"{path}: 'records' must be a list")
    problems: list[InputError] = []
    good: list[Record] = []
    for i, r in enumerate(records):
        if not isinstance(r, dict) or not isinstance(r.get("metric"), str) or not _is_number(r.get("value")):
            problems.append(InputError(str(path), f"{path}: record {i} has no metric name or no finite value; dropped"))
            continue
        good.append(cast(Record, r))
    tests = doc.get("tests")
    unmeasured = doc.get("unmeasured")
    return Results(
        path=path,
        environment=doc["environment"] if isinstance(doc.get("environment"), dict) else {},
        records=good,
        skipped=[s for s in doc["skipped"] if isinstance(s, dict)] if isinstance(doc.get("skipped"), list) else [],
        tests=tests if isinstance(tests, dict) else None,
        unmeasured=[u for u in unmeasured if isinstance(u, dict)] if isinstance(unmeasured, list) else [],
        problems=problems,
    )


def find(paths: Iterable[Path]) -> tuple[list[Path], list[InputError]]:
    """Files as given; directories searched recursively for ``results.json`` (sorted, so the order is stable)."""
    found: list[Path] = []
    errors: list[InputError] = []
    for p in paths:
        if p.is_dir():
            inside = sorted(p.rglob(RESULTS_NAME))
            if not inside:
                errors.append(InputError(str(p), f"{p}: directory contains no {RESULTS_NAME}"))
            found.extend(inside)
        elif p.is_file():
            found.append(p)
        else:
            errors.append(InputError(str(p), f"{p}: no such file or directory"))
    return found, errors


# --- accessors ---------------------------------------------------------------------------------


def comparison(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The record's comparison row (``{}`` when it was not compared)."""
    row = record.get("baseline")
    return row if isinstance(row, Mapping) else {}


def verdict_of(record: Mapping[str, Any]) -> Verdict | None:
    """The gate's verdict on the record as it counts: an invalid measurement is "invalid", except in a
    confirmation whose earlier verdicts stand for its invalid window (``stood``): then that verdict;
    None for a diagnostic or a figure with no comparison."""
    if not record.get("gated", True):  # diagnostics: recorded, never judged
        return None
    row = comparison(record)
    if record.get("outcome") == "invalid" and not row.get("stood"):
        return Verdict.INVALID
    verdict = row.get("verdict")
    return as_verdict(verdict) if verdict else None


def as_verdict(text: Any) -> Verdict | Any:
    """``text`` as a :class:`Verdict` where it names one (a file may hold a verdict a newer version added)."""
    try:
        return Verdict(text)
    except ValueError:
        return text


def verdict_counts(records: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """Verdicts of the gated records, counted as :func:`verdict_of` says."""
    out: Counter[str] = Counter()
    for r in records:
        verdict = verdict_of(r)
        if verdict:
            out[verdict] += 1
    return out


def stood_tests(records: Iterable[Mapping[str, Any]]) -> set[Any]:
    """The tests of a confirmation whose void window kept the earlier run's verdicts (any of their
    records carries a ``stood`` row: diagnostics of the same test carry none)."""
    return {r.get("test") for r in records if comparison(r).get("stood")}


def workload_of(record: Mapping[str, Any]) -> Any:
    """The record's workload: the top-level field, else the measurement's ``info["workload"]``, else None."""
    if record.get("workload") is not None:
        return record["workload"]
    info = record.get("info")
    return info.get("workload") if isinstance(info, Mapping) else None


def metric_of(record: Mapping[str, Any]) -> Metric:
    """The record's figure as the :class:`~pytest_slm.record.Metric` it was recorded as."""
    return Metric(
        name=str(record["metric"]),
        value=float(record["value"]),
        unit=str(record.get("unit") or "1"),
        higher_is_better=bool(record.get("higher_is_better")),
        n=record.get("n"),
        stderr=record.get("stderr"),
        samples=tuple(float(x) for x in record.get("samples") or ()),
        info=dict(record.get("info") or {}),
    )


def test_function(record: Mapping[str, Any]) -> str:
    """``benches/test_latency.py::test_ttft[m-bf16-single]`` -> ``test_ttft``."""
    test = str(record.get("test") or "")
    return test.split("::")[-1].split("[")[0]


def variant_of(record: Mapping[str, Any]) -> str:
    """The test's parameters other than the engine id, e.g. ``single`` for ``test_ttft[m-bf16-single]``."""
    match = re.search(r"\[(.*)\]$", str(record.get("test") or ""))
    if not match:
        return ""
    params = match.group(1)
    engine_id = record.get("engine_id") or f"{record.get('model')}-{record.get('precision')}"
    if params == engine_id:
        return ""
    if params.startswith(f"{engine_id}-"):
        return params[len(engine_id) + 1 :]
    return params


def record_key(record: Mapping[str, Any]) -> str:
    """The record's identity across runs and engines, as the gate keys baselines:
    ``file::function[params without the engine id]::metric``."""
    if record.get("baseline_key"):
        return str(record["baseline_key"])
    test = str(record.get("test") or "")
    variant = variant_of(record)
    name = Path(test.split("::")[0]).name
    return f"{name}::{test_function(record)}" + (f"[{variant}]" if variant else "") + f"::{record['metric']}"


# --- presenting --------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    """A figure for reading: 4 significant digits, '–' for not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    v = float(value)
    if v == 0 or 1e-3 <= abs(v) < 1e6:
        return f"{v:.4g}"
    return f"{v:.3e}"


#: a record as one table row (the W&B ``records`` table, the analysis frame's leading columns)
COLUMNS: tuple[str, ...] = (
    "test",
    "model",
    "precision",
    "engine_id",
    "metric",
    "value",
    "unit",
    "higher_is_better",
    "n",
    "stderr",
    "outcome",
    "verdict",
)


def column_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's :data:`COLUMNS` (``verdict``: its comparison's)."""
    return {c: comparison(record).get("verdict") if c == "verdict" else record.get(c) for c in COLUMNS}
