"""The gate and ``pytest-slm diff`` reach the same verdict on the same figures, figure by figure.

Both call one ladder (:func:`pytest_slm.compare.judge.judge`: invalid, not gated, unit, workload,
machine shift, rule) with one family (:func:`pytest_slm.compare.policy.family`) and the baseline
file's spread. Replayed here on every recorded session in ``scripts/data/``:

- ``aa_chain_cpu``: a real baseline file (10 sessions) and three real results files: each session
  through :meth:`Gate.compare` against the baseline, and ``diff BASELINE_DIR SESSION``;
- the four A/A sets (``aa_sessions_cpu*.json``, 40 sessions of 21 gated figures): the first
  :data:`K` sessions of a set saved as a baseline by :meth:`Gate.save`, then every later session
  through the gate, through ``diff BASELINE_DIR SESSION`` and through ``diff S1 .. SK --vs SESSION``
  (results files as the reference). Figures the session judged invalid stay invalid (the machine
  check of the time excepted: the replay applies it to the baseline it builds, as
  ``scripts/gate_proof.py`` does)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_slm.analysis.diff import baseline_side, diff_rows, results_side
from pytest_slm.compare.gate import Gate
from pytest_slm.compare.identity import baseline_key
from pytest_slm.compare.policy import is_gated
from pytest_slm.measure.machine import SHIFT_REASON_PREFIX
from pytest_slm.results import SCHEMA, Verdict, metric_of
from pytest_slm.settings import Settings

DATA = Path(__file__).resolve().parents[1] / "scripts" / "data"
SETS = tuple(f"aa_sessions_cpu{suffix}.json" for suffix in ("", "_probe", "_final", "_pooled"))
#: sessions of an A/A set saved as its baseline (the gate's default min_sessions is 3: timings decide)
K = 5
ENVIRONMENT = {
    "hardware": {"cpu_model": "AMD EPYC", "cpu_count": 2, "machine": "x86_64", "gpu_probe": "nvml"},
    "versions": {"vllm": "0.32.0", "torch": "2.13.0+cpu"},
}
MODEL, PRECISION, ENGINE_ID = "smollm2-135m", "bf16", "smollm2-135m-bf16"


def gate_for(tmp: Path) -> Gate:
    return Gate(Settings(baseline_dir=tmp / "baselines"), json.loads(json.dumps(ENVIRONMENT)))


def gate_verdicts(gate: Gate, records: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    """Each record of one session through :meth:`Gate.compare`, a test at a time as the plugin does:
    baseline key -> (verdict, rule) for every figure the gate judged."""
    tests: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        tests.setdefault(str(r["baseline_key"]).rpartition("::")[0], []).append(r)
    gate.plan([(MODEL, PRECISION, key, None) for key in tests])
    out = {}
    for key, rows in tests.items():
        reasons = list(dict.fromkeys(x for r in rows for x in r.get("invalid_reasons") or ()))
        result = gate.compare(
            [metric_of(r) for r in rows],
            {"model": MODEL, "precision": PRECISION, "parallel": None},
            key,
            {},
            {r["metric"]: r.get("workload") or {} for r in rows},
            reasons,
        )
        for metric, row in result.rows.items():
            out[f"{key}::{metric}"] = (str(row["verdict"]), row.get("rule"))
    return out


def diff_verdicts(rows: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    """``pytest-slm diff``'s rows as baseline key -> (verdict, rule), for figures on both sides."""
    return {
        f"{r['test']}::{r['metric']}": (str(r["verdict"]), r["rule"])
        for r in rows
        if r["verdict"] not in (Verdict.ONLY_IN_A, Verdict.ONLY_IN_B)
    }


def diff_of(reference: Any, current: Any, settings: Settings) -> dict[str, tuple[str, str | None]]:
    return diff_verdicts(
        diff_rows(
            reference,
            current,
            tau=settings.tolerance,
            tau_accuracy=settings.accuracy_tolerance,
            alpha_family=settings.alpha,
            min_sessions=settings.min_sessions,
        )
    )


def agree(gate: Mapping[str, tuple[str, str | None]], diff: Mapping[str, tuple[str, str | None]]) -> int:
    """Every figure on both sides of the diff judged alike by the gate (which records no row for a
    diagnostic: "not gated"), and every gated figure the gate judged on both sides of the diff; the
    count of figures compared."""
    assert {k: gate.get(k, (Verdict.NOT_GATED, None)) for k in diff} == dict(diff)
    assert {k for k in gate if is_gated(k.rpartition("::")[2])} <= set(diff)
    return len(diff)


COMPARED: Counter[str] = Counter()
VERDICTS: Counter[str] = Counter()


def test_the_recorded_chain_sessions(tmp_path: Path) -> None:
    gate = gate_for(tmp_path)
    folder = tmp_path / "baselines" / gate.fingerprint / MODEL
    folder.mkdir(parents=True)
    (folder / "bf16.json").write_bytes(gzip.decompress((DATA / "aa_chain_cpu" / "baseline_bf16.json.gz").read_bytes()))
    for i in (1, 2, 3):
        path = tmp_path / f"session{i}" / "results.json"
        path.parent.mkdir()
        path.write_bytes(gzip.decompress((DATA / "aa_chain_cpu" / f"session{i}.json.gz").read_bytes()))
        records = [r for r in json.loads(path.read_text())["records"] if r.get("model") == MODEL]
        by_gate = gate_verdicts(gate_for(tmp_path), records)
        current = results_side(path)
        by_diff = diff_of(baseline_side(tmp_path / "baselines", current, gate.fingerprint), current, gate.settings)
        COMPARED["chain"] += agree(by_gate, by_diff)
        VERDICTS.update(verdict for verdict, _ in by_gate.values())
    assert COMPARED["chain"] >= 45


def session_records(session: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A recorded A/A session's figures as the records of its results file."""
    out = []
    for name, f in session["figures"].items():
        test, _, metric = name.rpartition("::")
        function, _, params = test.partition("[")
        reasons = [r for r in f.get("invalid_reasons") or () if not r.startswith(SHIFT_REASON_PREFIX)]
        invalid = not f["valid"] and (bool(reasons) or not f.get("invalid_reasons"))
        out.append(
            {
                "model": MODEL,
                "precision": PRECISION,
                "engine_id": ENGINE_ID,
                "test": f"benches/test_bench.py::{test}",
                "metric": metric,
                "value": f["value"],
                "unit": f["unit"],
                "higher_is_better": f["higher_is_better"],
                "samples": f["samples"],
                "info": {"se_log": f["se_log"], "machine": f.get("machine")},
                "gated": True,
                "baseline": None,
                "baseline_key": f"{baseline_key('test_bench.py', function, params.rstrip(']'), ENGINE_ID)}::{metric}",
                "workload": {},
                "invalid_reasons": (reasons or ["invalid"]) if invalid else None,
                "outcome": "invalid" if invalid else "passed",
            }
        )
    return out


def write_results(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": SCHEMA, "environment": ENVIRONMENT, "records": records, "skipped": []}))
    return path


@pytest.mark.parametrize("name", SETS)
def test_the_recorded_aa_sessions(tmp_path: Path, name: str) -> None:
    sessions = json.loads((DATA / name).read_text())["sessions"]
    gate = gate_for(tmp_path)
    saved = []
    for i, session in enumerate(sessions[:K]):
        records = session_records(session)
        gate.save(records)
        saved.append(write_results(tmp_path / "main" / f"s{i}" / "results.json", records))
    for i, session in enumerate(sessions[K:]):
        records = session_records(session)
        path = write_results(tmp_path / "pr" / f"s{i}" / "results.json", records)
        by_gate = gate_verdicts(gate_for(tmp_path), records)
        current = results_side(path)
        by_baseline = diff_of(baseline_side(tmp_path / "baselines", current, gate.fingerprint), current, gate.settings)
        by_results = diff_of(results_side(saved), current, gate.settings)
        COMPARED[name] += agree(by_gate, by_baseline) + agree(by_gate, by_results)
        VERDICTS.update(verdict for verdict, _ in by_gate.values())
    # 21 gated figures a session (an older recorder dropped a failed test's figures from a few)
    assert COMPARED[name] >= 2 * 18 * (len(sessions) - K)
