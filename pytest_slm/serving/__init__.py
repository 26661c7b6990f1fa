"""Serving mode: load generation, SLOs and goodput, and the OpenAI-compatible server process.

Pytest-free. The request functions live in :mod:`pytest_slm.engines.openai_client`; this package
holds what sits around them: the load generator (:mod:`.load`), the client's self-check
(:mod:`.loopmon`), the SLO and goodput maths (:mod:`.slo`), the metrics of a serving run
(:mod:`.metrics`), vLLM's server as a managed process (:mod:`.server`) and its Prometheus
counters (:mod:`.prom`).
"""
