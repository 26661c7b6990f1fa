"""Analysis of stored results (``pytest-slm report``, ``diff``, ``trend``): ``merge`` (several
results.json into one), ``plots``, ``leaderboard``, ``build`` (the report directory: tables,
executive summary, plots, page), ``diff`` and ``trend``. Files are read through
:func:`pytest_slm.results.read`; the tables are :mod:`pytest_slm.report.tables`.

Pytest-free, and used both by the plugin (the compact table at the top of every report) and by
the ``pytest-slm`` console script (``report``, ``diff``, ``trend``). pandas and matplotlib are
imported inside the functions that need them, never at import time.
"""
