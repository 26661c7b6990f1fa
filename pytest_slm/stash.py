"""Typed stash keys: the plugin's per-session and per-test state (never config._attributes)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_slm.compare.gate import Gate
from pytest_slm.configs.schema import ModelsConfig
from pytest_slm.devices import DeviceChoice
from pytest_slm.measure.context import BenchContext
from pytest_slm.settings import Settings
from pytest_slm.shard import ShardPlan
from pytest_slm.thresholds import ThresholdTable

SETTINGS = pytest.StashKey[Settings]()
THRESHOLDS = pytest.StashKey[ThresholdTable]()
#: per test: the bench context the ``slm`` fixture handed out
CONTEXT = pytest.StashKey[BenchContext]()
#: per process: the context of the test running now (set by ``slm`` for the test's duration), which
#: the session-scoped run caches tell about every run they hand out (validity by default)
RUNNING_CONTEXT = pytest.StashKey[BenchContext]()
#: engine id -> facts (load time, describe()) for engines loaded in this process
ENGINE_FACTS = pytest.StashKey[dict[str, dict[str, Any]]]()
#: (model, task) -> the bf16 accuracy result, for retention of quantized precisions
ACCURACY_REFERENCES = pytest.StashKey[dict[tuple[str, str], Any]]()
#: baseline comparison state (fingerprint, store, loaded files) for this process
GATE = pytest.StashKey[Gate]()
#: the device this process measures on (chosen once, applied before any engine loads)
DEVICE = pytest.StashKey[DeviceChoice]()
#: (model, metric) -> the bf16 figure of this session, for speed ratios of quantized precisions
SPEED_REFERENCES = pytest.StashKey[dict[tuple[str, str], float]]()
#: the loaded ``--slm-models-config`` (None without one)
MODELS_CONFIG = pytest.StashKey[ModelsConfig | None]()
#: this runner's ``--slm-shard`` (None: the whole matrix)
SHARD = pytest.StashKey[ShardPlan | None]()
#: on-request marker -> how many collected tests it left out of this run (pytest_slm.parametrize.not_requested)
LEFT_OUT_ON_REQUEST = pytest.StashKey[dict[str, int]]()
