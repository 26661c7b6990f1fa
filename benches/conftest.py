"""Benchmark-suite configuration.

The repository's ini turns warnings into errors for the plugin's own tests. Benchmarks run
third-party engines (vLLM, torch, llmcompressor) whose deprecation warnings say nothing
about the model's speed or accuracy, so here they are shown, not raised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings("default"))
