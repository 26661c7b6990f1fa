"""What a verdict costs: the wall time of the default bench and of the three-precision run, warm and cold.

Runs ``pytest benches`` as ``scripts/bench.sh`` does (the repository's ini, the embedded SmolLM2), once per
scenario, and prints for each the whole wait, the time of every test (setup + call + teardown, from
pytest's JUnit XML, so an engine load or a quantization shows on the first test that needed it) and the
sum per model × precision:

    .venv/bin/python scripts/cost_bench.py                    # default: one cell (bf16), warm
    .venv/bin/python scripts/cost_bench.py --scenario three --cold
    .venv/bin/python scripts/cost_bench.py --scenario one three --keep /tmp/costs -- --slm-self-check

Scenarios: ``one`` (``--precision bf16``, the default bench) and ``three`` (``--precision bf16 int4 int8``,
the design card's run). Warm: the quantized checkpoints and vLLM's compile cache as this machine has them
(a first warm run fills them). ``--cold``: a fresh quantized-models folder and a fresh vLLM cache for the
run, so every quantization and compilation is paid; the embedded model's one-time GGUF conversion stays
cached. Arguments after ``--`` go to every pytest run. These are benchmarks, not tests: nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from pytest_slm.report.timing import cell_of

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = {"one": ("bf16",), "three": ("bf16", "int4", "int8")}


def test_times(junit: Path) -> list[tuple[str, str, float]]:
    """(test id, outcome, seconds) of every test case in a JUnit XML report, in run order."""
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
        module = case.get("classname", "").rsplit(".", 1)[-1]
        out.append((f"{module}::{case.get('name')}", outcome, float(case.get("time", 0.0))))
    return out


def run(scenario: str, cold: bool, extra: list[str], keep: Path | None) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix=f"slm-cost-{scenario}-"))
    out = (keep or work) / f"{scenario}-{'cold' if cold else 'warm'}"
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    args = ["--precision", *SCENARIOS[scenario]]
    if cold:
        args += ["--slm-quantized-models-dir", str(work / "quantized")]
        env["VLLM_CACHE_ROOT"] = str(work / "vllm-cache")
    cmd = [sys.executable, "-m", "pytest", "benches", "-p", "no:cacheprovider", "-q", "--slm-output", str(out),
           "--junitxml", str(out / "junit.xml"), *args, *extra]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    (out / "pytest.log").write_text(proc.stdout + proc.stderr)
    tests = test_times(out / "junit.xml") if (out / "junit.xml").exists() else []
    return {"scenario": scenario, "cold": cold, "wall_s": round(wall, 1), "exit": proc.returncode,
            "summary": (proc.stdout.strip().splitlines() or [""])[-1], "tests": tests, "output": str(out)}  # fmt: skip


def show(result: dict[str, object]) -> None:
    tests: list[tuple[str, str, float]] = result["tests"]  # type: ignore[assignment]
    state = "cold" if result["cold"] else "warm"
    print(f"\n## {result['scenario']} ({state}): {result['wall_s']} s wall, exit {result['exit']}: {result['summary']}")
    print(f"   output: {result['output']}")
    per_cell: dict[str, float] = defaultdict(float)
    for test, _, seconds in tests:
        per_cell[cell_of(test)] += seconds
    print("\n| model × precision | seconds |\n| --- | ---: |")
    for cell, seconds in sorted(per_cell.items(), key=lambda kv: -kv[1]):
        print(f"| {cell} | {seconds:.1f} |")
    outside = float(result["wall_s"]) - sum(per_cell.values())  # type: ignore[arg-type]
    print(f"| (outside the tests: start, collection, reports) | {outside:.1f} |")
    print("\n| test | outcome | seconds |\n| --- | --- | ---: |")
    for test, outcome, seconds in sorted(tests, key=lambda t: -t[2]):
        print(f"| {test} | {outcome} | {seconds:.1f} |")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", nargs="+", choices=sorted(SCENARIOS), default=["one"])
    parser.add_argument("--cold", action="store_true", help="fresh quantized-models folder and vLLM cache")
    parser.add_argument("--keep", type=Path, help="write each run's reports, log and JUnit XML here")
    parser.add_argument("--json", type=Path, help="also write every result as JSON here")
    args = parser.parse_args(argv)
    results = [run(s, args.cold, extra, args.keep) for s in args.scenario]
    for result in results:
        show(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return max(int(r["exit"]) for r in results)  # type: ignore[call-overload]


if __name__ == "__main__":
    sys.exit(main())
