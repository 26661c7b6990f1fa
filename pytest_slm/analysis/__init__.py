"""Analysis of stored results: merging results.json files, tables, plots, the leaderboard page.

Pytest-free, and used both by the plugin (the compact table at the top of every report) and by
the ``pytest-slm`` console script (``report``, ``diff``, ``trend``). pandas and matplotlib are
imported inside the functions that need them, never at import time.
"""
