"""The engine library's import is timed apart from the engine's load, once per process, and not
reported where something else imported it first (seen on the H200 run: the fp8 process had
vLLM imported before its engine, and recorded ``import_s`` = 3 µs)."""

from __future__ import annotations

import sys
import time
import types

import pytest

from pytest_slm.engines import loading


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "_PRELOAD_S", {})


def make_engine(module: str, calls: list[float]) -> type:
    class Engine:
        preload_module = module

        @classmethod
        def preload(cls) -> None:
            if module not in sys.modules:
                time.sleep(0.05)
                sys.modules[module] = types.ModuleType(module)
            calls.append(1)

    return Engine


def test_first_import_timed_and_reused_by_later_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "slm_fake_lib", raising=False)
    calls: list[float] = []
    engine = make_engine("slm_fake_lib", calls)
    first = loading.timed_preload(engine)
    assert first is not None and first >= 0.05
    assert loading.timed_preload(engine) == first  # the second engine of the process: same figure
    assert len(calls) == 1
    monkeypatch.delitem(sys.modules, "slm_fake_lib")


def test_already_imported_is_not_an_import_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "slm_fake_lib2", types.ModuleType("slm_fake_lib2"))
    assert loading.timed_preload(make_engine("slm_fake_lib2", [])) is None


def test_engines_without_preload_have_no_import_time() -> None:
    assert loading.timed_preload(type("Plain", (), {})) is None
