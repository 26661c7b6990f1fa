"""Energy per request and per token, single stream and batched, from the device's energy counter.

Idle power is measured first and reported (the dynamic figures subtract it); the workload repeats
until the window reaches ``--slm-energy-window-s``. Skipped, with the reason, where no meter exists.
"""

from __future__ import annotations

import pytest

from pytest_slm.energy.meters import CounterReset
from pytest_slm.energy.method import energy_metrics, measure


@pytest.mark.parametrize("streams", ["single", "batch"])
def test_energy(slm_engine, power_meter, slm, streams):
    """energy_j, avg/idle power, J per output token, tokens per J, J per request, mWh per token."""
    w = slm.workload(streams)
    prompts = w.prompts()

    def one_pass():
        out = slm_engine.generate(prompts, w.sampling)
        return out.output_tokens, out.requests

    s = slm.settings
    try:
        result = measure(
            power_meter,
            one_pass,
            idle_s=s.energy_idle_s,
            settle_s=s.energy_settle_s,
            min_window_s=s.energy_window_s,
            min_repeats=s.energy_sample_runs,
        )
    except CounterReset as exc:  # no figure at all: the window cannot be measured
        slm.invalid(str(exc))
        return
    slm.extend(energy_metrics(result, power_meter.describe(), workload=w.describe()))
    slm.validate(result.problems())
