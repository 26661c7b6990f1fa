"""pytest-benchmark interop, as pure functions over plain dicts (no pytest, no hooks here).

- :func:`benchmark_metrics`: a ``benchmark`` fixture's stats (``Metadata.as_dict()``) -> pytest-slm metrics
  (seconds, lower is better; the per-round times are the samples the regression gate tests).
- :func:`to_benchmark_json`: a pytest-slm ``results.json`` -> pytest-benchmark's JSON, so its own
  ``pytest-benchmark compare`` (tables, ``--histogram``) reads our records.
- :func:`from_benchmark_json`: a pytest-benchmark JSON -> a pytest-slm results document.
- :func:`register`: the ``export`` and ``import-benchmark`` subcommands of the ``pytest-slm`` console script.

pytest-benchmark is imported only where its own statistics are used (export), never at collection.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from pytest_slm.record import Metric

#: where a record came from, in its info
SOURCE = "pytest-benchmark"
#: the statistic whose record carries a benchmark's rounds when exported (one entry per benchmark)
EXPORTED_STAT = "median"
#: pytest-benchmark statistics kept as records (all in seconds, lower is better)
STATS = ("min", "max", "mean", "median", "stddev")
#: statistics whose samples are the per-round times (central values the gate can test on rounds);
#: min, max and stddev summarize all rounds at once and have no per-round values of their own
WITH_ROUNDS = ("mean", "median")


class BenchmarkJSONError(ValueError):
    """A file that is not a usable pytest-benchmark JSON or pytest-slm results document."""


def metric_name(stat: str) -> str:
    return f"benchmark_{stat}_s"


def benchmark_metrics(bench: Mapping[str, Any]) -> list[Metric]:
    """Records for one pytest-benchmark result (``Metadata.as_dict(include_data=True)`` or a JSON entry).

    Every figure is per call (pytest-benchmark divides each round by its iterations); ``n`` is the
    number of rounds. Without per-round ``data`` (saved without ``--benchmark-save-data``) the central
    figures have no samples and the gate calls them inconclusive instead of guessing.
    """
    stats = bench.get("stats") or {}
    missing = [s for s in (*STATS, "rounds") if not isinstance(stats.get(s), (int, float))]
    if missing:
        raise BenchmarkJSONError(f"benchmark {bench.get('fullname') or bench.get('name')!r} lacks stats {missing}")
    data = tuple(float(x) for x in stats.get("data") or ())
    rounds = int(stats["rounds"])
    info = {
        "source": SOURCE,
        "benchmark": bench.get("fullname") or bench.get("name"),
        "group": bench.get("group"),
        "rounds": rounds,
        "iterations": stats.get("iterations"),
        "iqr_s": stats.get("iqr"),
        "ops_per_s": stats.get("ops"),
        "outliers": stats.get("outliers"),
        "extra_info": dict(bench.get("extra_info") or {}),
        "options": dict(bench.get("options") or {}),
    }
    out = []
    for stat in STATS:
        value = float(stats[stat])
        if not math.isfinite(value):
            continue
        samples = data if stat in WITH_ROUNDS else ()
        stderr = float(stats["stddev"]) / math.sqrt(rounds) if stat == "mean" and rounds > 1 else None
        out.append(Metric(metric_name(stat), value, "s", False, n=rounds, stderr=stderr, samples=samples, info=info))
    return out


# -- export: results.json -> pytest-benchmark JSON ------------------------------------------------------


def _machine_info(environment: Mapping[str, Any]) -> dict[str, Any]:
    hw = environment.get("hardware") or {}
    return {
        "node": hw.get("hostname") or "",
        "processor": hw.get("cpu_model") or "",
        "machine": hw.get("machine") or "",
        "python_implementation": "CPython",
        "python_version": environment.get("python") or "",
        "release": environment.get("platform") or "",
        "system": "",
        "cpu": {"brand_raw": hw.get("cpu_model") or "", "count": hw.get("cpu_count")},
        "gpu": hw.get("gpu_name"),
        "pytest_slm_versions": dict(environment.get("versions") or {}),
    }


def _stats_of(values: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's own statistics of ``values`` (its ``Stats`` class, so every field is its definition)."""
    from pytest_benchmark.stats import Stats

    stats: Any = Stats()  # type: ignore[no-untyped-call]
    for v in values:
        stats.update(v)
    out: dict[str, Any] = stats.as_dict()
    out["data"] = list(values)
    out["iterations"] = 1
    return out


def _split_test(test: str) -> tuple[str, str | None]:
    """``path::name[param]`` -> (``name[param]``, ``param``)."""
    name = test.split("::")[-1]
    param = name[name.index("[") + 1 : -1] if name.endswith("]") and "[" in name else None
    return name, param


def to_benchmark_json(results: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """pytest-benchmark's JSON for every time record (unit ``s``) of a results document, and what was left out.

    One benchmark per record, named ``<test>::<metric>`` and grouped by metric, its rounds being the
    record's samples (per-repetition values) or its value alone. Records of a ``benchmark`` fixture
    become one entry per test again (their median record carries the rounds). Other units (tokens/s,
    bytes, accuracy) have no place in a table of times and are listed as left out.
    """
    if not isinstance(results.get("records"), list):
        raise BenchmarkJSONError("not a pytest-slm results document (no 'records' list)")
    environment = results.get("environment") or {}
    benchmarks: list[dict[str, Any]] = []
    left_out: list[str] = []
    for r in results["records"]:
        test, metric = str(r.get("test")), str(r.get("metric"))
        info = r.get("info") or {}
        if r.get("unit") != "s" or r.get("outcome") in ("error", "invalid"):
            left_out.append(f"{test}::{metric} ({r.get('unit')}, {r.get('outcome')})")
            continue
        from_fixture = info.get("source") == SOURCE
        if from_fixture and metric != metric_name(EXPORTED_STAT):
            continue  # the same rounds, exported once with the median record
        samples = [float(x) for x in r.get("samples") or ()] or [float(r["value"])]
        name, param = _split_test(test)
        keys = ("model", "precision", "engine_id", "kv_cache_dtype", "outcome")
        extra = {k: r.get(k) for k in keys if r.get(k) is not None}
        extra.update(slm_metric=metric, slm_value=r.get("value"), slm_n=r.get("n"))
        if from_fixture:
            extra["benchmark_extra_info"] = info.get("extra_info") or {}
        benchmarks.append(
            {
                "group": info.get("group") if from_fixture else metric,
                "name": name if from_fixture else f"{name}::{metric}",
                "fullname": test if from_fixture else f"{test}::{metric}",
                "params": None,
                "param": param,
                "extra_info": extra,
                "options": {"source": "pytest-slm", "samples": "per-repetition values of the record"},
                "stats": _stats_of(samples),
            }
        )
    import pytest_benchmark

    commit = environment.get("git_commit")
    doc = {
        "machine_info": _machine_info(environment),
        "commit_info": {
            "id": commit or "unversioned",
            "dirty": bool(environment.get("git_dirty")),  # uncommitted changes to tracked files
            "project": "pytest-slm",
            "branch": None,
        },
        "benchmarks": benchmarks,
        "datetime": str(environment.get("finished_at") or datetime.now(timezone.utc).isoformat()),
        "version": pytest_benchmark.__version__,
    }
    return doc, left_out


# -- import: pytest-benchmark JSON -> results document ---------------------------------------------------


def from_benchmark_json(doc: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A pytest-slm results document from a pytest-benchmark JSON (``--benchmark-json`` or a saved run).

    Entries exported by pytest-slm keep their model, precision and engine id (from ``extra_info``).
    """
    from pytest_slm.report.writers import results_document

    if not isinstance(doc.get("benchmarks"), list):
        raise BenchmarkJSONError(f"{source}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    records: list[dict[str, Any]] = []
    for bench in doc["benchmarks"]:
        extra = bench.get("extra_info") or {}
        test = str(bench.get("fullname") or bench.get("name"))
        for m in benchmark_metrics(bench):
            d = m.to_dict()
            d.pop("name")
            records.append(
                {
                    "test": test,
                    "outcome": "passed",
                    "model": extra.get("model"),
                    "precision": extra.get("precision"),
                    "engine_id": extra.get("engine_id"),
                    **d,
                    "metric": m.name,
                    "threshold": None,
                    "baseline": None,
                    "baseline_key": None,
                }
            )
    machine = doc.get("machine_info") or {}
    commit = doc.get("commit_info") or {}
    cpu = machine.get("cpu") or {}
    environment = {
        "hardware": {
            "cpu_model": cpu.get("brand_raw") or machine.get("processor"),
            "cpu_count": cpu.get("count"),
            "machine": machine.get("machine"),
        },
        "python": machine.get("python_version"),
        "git_commit": commit.get("id"),
        "git_dirty": commit.get("dirty"),
        "imported_from": {"format": "pytest-benchmark", "path": source, "version": doc.get("version")},
        "machine_info": dict(machine),
        "commit_info": dict(commit),
        "engines": {},
    }
    return results_document(environment, records, [])


# -- the console script's subcommands --------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BenchmarkJSONError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise BenchmarkJSONError(f"{path} is not JSON: {exc}") from None


def _export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pytest_slm import atomic, results

    path = args.results / results.RESULTS_NAME if args.results.is_dir() else args.results
    try:
        try:
            read = results.read(path)
        except results.ResultsFileError as exc:
            raise BenchmarkJSONError(f"not a pytest-slm results document: {exc}") from None
        doc, left_out = to_benchmark_json(read.document())
    except BenchmarkJSONError as exc:
        print(f"pytest-slm export: error: {exc}", file=err)
        return 2
    except ImportError:
        print("pytest-slm export: error: pytest-benchmark is not installed (pip install pytest-benchmark)", file=err)
        return 2
    atomic.write_json(args.output, doc)
    print(f"wrote {args.output}: {len(doc['benchmarks'])} benchmark(s) from {path}", file=out)
    if left_out:
        print(
            f"left out {len(left_out)} record(s) that are not times (unit other than s), e.g. {left_out[0]}", file=out
        )
    return 0


def _import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pytest_slm.report import writers

    try:
        doc = from_benchmark_json(_read_json(args.benchmark_json), str(args.benchmark_json))
    except BenchmarkJSONError as exc:
        print(f"pytest-slm import-benchmark: error: {exc}", file=err)
        return 2
    writers.write(args.output_dir, doc["environment"], doc["records"], doc["skipped"])
    print(
        f"wrote {args.output_dir / 'results.json'} and results.md: {len(doc['records'])} record(s) "
        f"from {args.benchmark_json}",
        file=out,
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``export`` and ``import-benchmark`` to the ``pytest-slm`` console script's subcommands."""
    exp = subparsers.add_parser(
        "export",
        help="write a results.json in another tool's format (pytest-benchmark's JSON)",
        description="Write the time records (unit s) of a results.json as pytest-benchmark JSON, which "
        "`pytest-benchmark compare` (and --histogram) read.",
    )
    exp.add_argument("results", type=Path, help="results.json, or a directory holding one")
    exp.add_argument("--format", choices=["pytest-benchmark"], default="pytest-benchmark", help="output format")
    exp.add_argument("--output", "-o", type=Path, required=True, help="the JSON file to write")
    exp.set_defaults(func=_export)
    imp = subparsers.add_parser(
        "import-benchmark",
        help="read a pytest-benchmark JSON into a pytest-slm results.json",
        description="Turn a pytest-benchmark JSON (--benchmark-json, or a file under .benchmarks/) into "
        "pytest-slm records (results.json and results.md in the output directory).",
    )
    imp.add_argument("benchmark_json", type=Path, help="a pytest-benchmark JSON file")
    imp.add_argument("--output-dir", "-o", type=Path, default=Path("slm-results-imported"), help="where to write")
    imp.set_defaults(func=_import)
