"""What each figure cost: each test's wall time in results.json, per model × precision in results.md and
on the terminal."""

from __future__ import annotations

import json

from pytest_slm.report.timing import OUTSIDE, cell_of, markdown, per_cell, terminal_line
from tests.conftest import SlmPytester

SLOW_FIRST = """
import time

def test_loads(slm_engine, slm):
    time.sleep(0.3)
    slm.record("x_s", 1.0, unit="s", higher_is_better=False)

def test_after(slm_engine, slm):
    slm.record("y_s", 1.0, unit="s", higher_is_better=False)

def test_plain():
    time.sleep(0.1)
"""


def test_a_test_id_names_its_cell() -> None:
    assert cell_of("benches/test_latency.py::test_ttft[smollm2-135m-bf16-single]") == "smollm2-135m-bf16"
    assert cell_of("t.py::test_accuracy[smollm2-135m-sparse-2of4-slm_mc]") == "smollm2-135m-sparse-2of4"
    assert cell_of("t.py::test_kv[smollm2-135m-bf16-kvfp8-single]") == "smollm2-135m-bf16-kvfp8"
    assert cell_of("t.py::test_memory_bandwidth") == OUTSIDE
    assert cell_of("t.py::test_other[a-b]") == OUTSIDE


def test_cells_sum_their_tests_most_expensive_first() -> None:
    tests = {
        "t.py::a[m-bf16]": {"outcome": "passed", "duration_s": 2.0},
        "t.py::b[m-bf16-single]": {"outcome": "passed", "duration_s": 3.0},
        "t.py::c[m-int4]": {"outcome": "failed", "duration_s": 10.0},
        "t.py::d": {"outcome": "not run"},  # never reported: no time yet
    }
    assert per_cell(tests) == [("m-int4", 10.0, 1), ("m-bf16", 5.0, 2), (OUTSIDE, 0.0, 1)]
    line = terminal_line(tests)
    assert line is not None and line.startswith("wall time per model × precision: m-int4 10 s, m-bf16 5 s;")
    assert "slowest: c[m-int4] 10 s" in line
    assert terminal_line({"t.py::d": {"outcome": "not run"}}) is None and markdown({}) == ""


def test_results_hold_each_tests_wall_time(slm_pytester: SlmPytester) -> None:
    slm_pytester.pytester.makepyfile(test_cost_of=SLOW_FIRST)
    result = slm_pytester.run()
    result.assert_outcomes(passed=3)
    doc = json.loads((slm_pytester.output / "results.json").read_text())
    times = {k.split("::")[-1].split("[")[0]: v["duration_s"] for k, v in doc["tests"].items()}
    # setup + call + teardown: at least the sleep, and the engine's load on the first test of the cell
    assert times["test_loads"] >= 0.3 and times["test_plain"] >= 0.1 and times["test_after"] > 0
    md = (slm_pytester.output / "results.md").read_text()
    assert "## What each figure cost" in md and "| tiny-model-bf16 | 2 |" in md
    assert "wall time per model × precision: tiny-model-bf16 " in result.stdout.str()
