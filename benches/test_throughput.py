"""Offline batch throughput: ``--batch-size`` prompts generated together, ``--num-runs`` times."""

from __future__ import annotations

from pytest_slm.measure.throughput import throughput_metrics


def test_offline_throughput(slm_runs, slm):
    """Output tokens/s, total tokens/s, requests/s and batch latency over the measured batches."""
    slm.extend(throughput_metrics(slm_runs.offline(slm.workload("batch"))))
