"""Measurements: workloads run on an engine (``workloads``) and the figures computed from
them (``latency``, ``throughput``), each returned as :class:`pytest_slm.record.Metric`."""
