"""What each figure cost: the session's wall time per test and per model × precision. Pytest-free.

Read from results.json's ``tests`` (each test's ``duration_s``: setup + call + teardown as pytest
timed them, so an engine load or a quantization counts on the first test of its cell that needed
it). Shown in results.md and on the terminal, so a user sees what a default costs before changing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_slm.precisions import valid_names

OUTSIDE = "(outside the matrix)"


def cell_of(test_id: str) -> str:
    """The model × precision (× KV-cache dtype) a test id belongs to, e.g. ``smollm2-135m-bf16`` for
    ``benches/test_latency.py::test_ttft[smollm2-135m-bf16-single]``; :data:`OUTSIDE` for a test that
    is not parametrized over the matrix."""
    params = test_id.rsplit("[", 1)[1].rstrip("]") if test_id.endswith("]") and "[" in test_id else ""
    for name in sorted(valid_names(), key=len, reverse=True):
        at = params.find(f"-{name}")
        end = at + 1 + len(name)
        if at > 0 and params[end:][:1] in ("", "-"):
            kv = params[end:].split("-")[1:2]  # a KV-cache dtype other than auto: -kvfp8
            return params[:end] + (f"-{kv[0]}" if kv and kv[0].startswith("kv") else "")
    return OUTSIDE


def per_cell(tests: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, float, int]]:
    """(cell, seconds, tests) for every cell, most expensive first."""
    out: dict[str, tuple[float, int]] = {}
    for test, entry in tests.items():
        seconds, n = out.get(cell_of(test), (0.0, 0))
        out[cell_of(test)] = (seconds + float(entry.get("duration_s") or 0.0), n + 1)
    return sorted(((c, s, n) for c, (s, n) in out.items()), key=lambda row: -row[1])


def slowest(tests: Mapping[str, Mapping[str, Any]], n: int = 5) -> list[tuple[str, float]]:
    """The ``n`` tests that took longest, with their seconds."""
    timed = [(t, float(e.get("duration_s") or 0.0)) for t, e in tests.items()]
    return sorted(timed, key=lambda row: -row[1])[:n]


def terminal_line(tests: Mapping[str, Mapping[str, Any]]) -> str | None:
    """One line: the seconds each cell took and the slowest tests (None before any test ran)."""
    cells = [row for row in per_cell(tests) if row[1] > 0]
    if not cells:
        return None
    spent = ", ".join(f"{c} {s:.0f} s" for c, s, _ in cells)
    top = ", ".join(f"{t.rsplit('::', 1)[-1]} {s:.0f} s" for t, s in slowest(tests, 3))
    return f"wall time per model × precision: {spent}; slowest: {top}"


def markdown(tests: Mapping[str, Mapping[str, Any]], n: int = 10) -> str:
    """results.md's section: seconds per cell and the slowest tests ("" before any test ran)."""
    cells = per_cell(tests)
    if not any(s > 0 for _, s, _ in cells):
        return ""
    lines = [
        "## What each figure cost",
        "",
        "Wall time of each test (setup + call + teardown; an engine load or a quantization counts on the first "
        "test of its cell that needed it).",
        "",
        "| model × precision | tests | seconds |",
        "| --- | ---: | ---: |",
        *(f"| {c} | {k} | {s:.1f} |" for c, s, k in cells),
        "",
        "| slowest tests | seconds |",
        "| --- | ---: |",
        *(f"| `{t}` | {s:.1f} |" for t, s in slowest(tests, n)),
        "",
    ]
    return "\n".join(lines)
