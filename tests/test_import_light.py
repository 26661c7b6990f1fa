"""Loading the plugin must stay light: no engine, framework or statistics stack at collection."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("vllm", "torch", "transformers", "llmcompressor", "lm_eval", "pynvml", "numpy", "scipy", "pandas")


def test_plugin_import_pulls_in_nothing_heavy() -> None:
    code = (
        f"import sys, pytest_slm.plugin, pytest_slm.fixtures\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_collect_only_of_benches_loads_no_engine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import sys, pytest\n"
        "rc = pytest.main(['benches', '--collect-only', '-q', '-p', 'no:cacheprovider'])\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY[:6]!r} if m in sys.modules))\n"
        "raise SystemExit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "HEAVY=\n" in out.stdout or out.stdout.rstrip().endswith("HEAVY=")
