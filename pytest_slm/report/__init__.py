"""The session's report, written by the plugin on the xdist controller: ``collector`` (test reports
to records), ``writers`` (results.json, results.md, the dashboard feeds), ``verdicts`` (the gate's
lines and the run's verdict), ``terminal`` (the terminal summary), ``timing`` (what each cell's
tests cost), ``environment`` (where the run happened). The record's model and reader live in
:mod:`pytest_slm.results`; ``pytest-slm report`` over stored files is :mod:`pytest_slm.analysis`."""
