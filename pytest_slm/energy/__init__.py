"""Power meters and the energy measurement method. Pytest-free; NVML loads lazily.

``meters`` opens an NVML (NVIDIA) or RAPL (CPU powercap) meter or explains why none is
available; ``method`` measures idle power, then a workload over a window long enough for the
counters, and turns that into metrics (J, W, J/token, token/J, mWh/token).
"""
