"""Engines: the small protocol benchmarks talk to (``base``), a lazy registry of backends
(``registry``), and the vLLM backend (``vllm_engine``)."""
