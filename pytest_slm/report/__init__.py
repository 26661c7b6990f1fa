"""The session's report, written by the plugin on the xdist controller: ``collector`` (test reports
to records), ``writers`` (results.json, results.md, the dashboard feeds), ``tables`` (the compact
table and the frames the analysis groups on), ``verdicts`` (the gate's lines and the run's
verdict), ``terminal`` (the header and the summary), ``timing`` (what each cell's tests cost). The
results document's model, reader and environment block live in :mod:`pytest_slm.results`;
``pytest-slm report`` over stored files is :mod:`pytest_slm.analysis`."""
