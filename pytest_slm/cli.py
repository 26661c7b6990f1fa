"""The ``pytest-slm`` console script: small commands over stored results.json files.

    pytest-slm export RESULTS --format pytest-benchmark -o OUT.json
    pytest-slm import-benchmark BENCH.json [-o DIR]

Exit status: 0 on success, 2 when the input cannot be used (the reason is on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from pytest_slm.interop import pytest_benchmark


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pytest-slm", description="Commands over pytest-slm results.json files.")
    sub = p.add_subparsers(dest="command", required=True)
    pytest_benchmark.register(sub)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of the ``pytest-slm`` console script; returns the exit status."""
    args = parser().parse_args(argv)
    return int(args.func(args, out or sys.stdout, err or sys.stderr))


if __name__ == "__main__":
    raise SystemExit(main())
