"""Serving mode: load levels, the client's self-check, goodput against SLOs, and a level's metrics.

Pytest-free, and engine-agnostic: it talks to an engine through :mod:`pytest_slm.engine_api` and
the ``Servable`` capability only. The load generator (:mod:`.load`), the client's self-check
(:mod:`.loopmon`), goodput and the saturation point (:mod:`.goodput`; the SLO itself is
:mod:`pytest_slm.slo`), the metrics of a serving run (:mod:`.metrics`), and the memoized levels of
one engine (:mod:`.session`). How a backend serves a level is the backend's own:
:mod:`pytest_slm.engines.vllm.serve` steps the in-process engine, :mod:`pytest_slm.engines.openai`
drives HTTP requests against a server it may manage itself.
"""
