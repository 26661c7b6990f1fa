"""pytest-slm: benchmarks of small and quantized language models as pytest tests."""

__version__ = "0.1.0"
