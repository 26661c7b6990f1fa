"""Record real A/A sessions: the same code, the same machine, one session after the other.

Each session is a separate ``pytest benches`` process (a fresh engine, as in CI), by default the
quick profile's timing benches (latency, throughput, footprint). The gated figures of every
session are collected into one compact JSON file, as the gate sees them: per metric and session
the figure, its within-session standard error and its per-repetition values, plus whether the
session judged the measurement valid. ``scripts/gate_proof.py`` replays them.

With ``--baseline-dir DIR`` every session also compares with, and then saves to, a baseline in DIR
(as a CI job on main would), and the plugin's own verdicts of each session are recorded too.

Usage: python scripts/aa_sessions.py --sessions 12 --out scripts/data/aa_sessions_cpu.json
       [--baseline-dir /tmp/aa-baselines] [-- pytest args]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_slm.compare.judge import metric_se_log  # noqa: E402
from pytest_slm.compare.policy import is_gated  # noqa: E402
from pytest_slm.record import Metric  # noqa: E402

DEFAULT_SELECTION = ["-k", "test_latency or test_throughput or test_footprint"]


def session_figures(doc: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    out = {}
    for r in doc["records"]:
        # a figure the gate called regressed fails its test: it is still this session's figure
        if not is_gated(r["metric"]) or r.get("outcome") not in ("passed", "failed", "invalid"):
            continue
        key = f"{r['test'].split('::')[-1]}::{r['metric']}"
        m = Metric(r["metric"], r["value"], r["unit"], r["higher_is_better"], samples=tuple(r.get("samples") or ()),
                   info=r.get("info") or {})  # fmt: skip
        out[key] = {
            "value": r["value"],
            "se_log": metric_se_log(m),
            "samples": r.get("samples") or [],
            "higher_is_better": r["higher_is_better"],
            "unit": r["unit"],
            "valid": r["outcome"] != "invalid",
            "verdict": (r.get("baseline") or {}).get("verdict"),
            "invalid_reasons": r.get("invalid_reasons"),
            "cpu": (r.get("info") or {}).get("cpu"),
            "machine": (r.get("info") or {}).get("machine"),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--baseline-dir", type=Path, help="compare with and save to a baseline here each session")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    existing = json.loads(args.out.read_text()) if args.out.exists() else {"sessions": []}
    for i in range(args.sessions):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            gate = (
                ["--slm-baseline-dir", str(args.baseline_dir), "--slm-save-baseline"]
                if args.baseline_dir
                else ["--slm-no-compare"]
            )
            cmd = [sys.executable, "-m", "pytest", "benches", "-p", "no:cacheprovider", "-q", "--slm-output", tmp,
                   *DEFAULT_SELECTION, *gate, *args.pytest_args]  # fmt: skip
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
            doc = json.loads((Path(tmp) / "results.json").read_text())
            figures = session_figures(doc)
            existing["sessions"].append(
                {
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
                    "wall_s": round(time.time() - t0, 1),
                    "exit_status": proc.returncode,
                    "environment": {k: doc["environment"].get(k) for k in ("hardware", "versions", "git_commit")},
                    "figures": figures,
                    "verdicts": dict(
                        Counter(
                            (r.get("baseline") or {}).get("verdict") or "none" for r in doc["records"] if r.get("gated")
                        )
                    ),
                }
            )
            existing["selection"] = DEFAULT_SELECTION + args.pytest_args
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(existing, indent=1, sort_keys=True) + "\n")
            invalid = sum(not f["valid"] for f in figures.values())
            verdicts = existing["sessions"][-1]["verdicts"]
            print(f"session {i + 1}/{args.sessions}: {len(figures)} gated figures, {invalid} invalid, "
                  f"verdicts {verdicts}, {time.time() - t0:.0f} s", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
