"""Hooks that turn pytest-benchmark's ``benchmark`` fixture results into pytest-slm records.

Registered by the plugin only when pytest-benchmark is loaded. A test that takes both ``benchmark``
and ``slm`` gets ``benchmark_{min,max,mean,median,stddev}_s`` records after its body, gated,
thresholded and reported like any other. Where pytest-benchmark times nothing (``--benchmark-disable``,
or under xdist, where it disables itself) the function ran once and there are no statistics: no record
is made, and the terminal summary says which tests and why. pytest_benchmark is never imported here.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from pytest_slm import stash
from pytest_slm.interop.pytest_benchmark import benchmark_metrics

#: user_properties key of the note a test leaves when its benchmark produced no statistics
NOTE_PROPERTY_KEY = "slm_benchmark_note"


def disabled_reason(config: pytest.Config) -> str:
    """Why pytest-benchmark did not time the call, in its own terms."""
    if os.environ.get("PYTEST_XDIST_WORKER") or config.getoption("dist", "no") != "no":
        return "pytest-benchmark disables itself under xdist (timings would be unreliable); run without -n to time it"
    if config.getoption("benchmark_disable", False):
        return "--benchmark-disable: the function ran once, untimed"
    return "pytest-benchmark recorded no statistics (benchmark fixture not called, or disabled)"


class BenchmarkRecords:
    """Adds a test's pytest-benchmark statistics to its pytest-slm records (worker side) and lists the
    tests whose benchmark was not timed (controller side, in the terminal summary)."""

    def __init__(self) -> None:
        self.untimed: list[tuple[str, str]] = []

    @pytest.hookimpl(wrapper=True, trylast=True)  # innermost: runs before the plugin attaches the records
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        try:
            return (yield)
        finally:
            self._collect(item)

    def _collect(self, item: pytest.Item) -> None:
        fixture = getattr(item, "funcargs", {}).get("benchmark")
        ctx = item.stash.get(stash.CONTEXT, None)
        if fixture is None or ctx is None:
            return  # not a pytest-slm test, or no benchmark: pytest-benchmark reports it alone
        if getattr(fixture, "stats", None):
            ctx.extend(benchmark_metrics(fixture.stats.as_dict(include_data=True)))
        else:
            item.user_properties.append((NOTE_PROPERTY_KEY, disabled_reason(item.config)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == NOTE_PROPERTY_KEY:
                self.untimed.append((report.nodeid, str(value)))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.untimed:
            return
        terminalreporter.write_sep("-", f"pytest-slm: {len(self.untimed)} benchmark(s) not timed, no records")
        for nodeid, why in self.untimed:
            terminalreporter.write_line(f"{nodeid}: {why}")
