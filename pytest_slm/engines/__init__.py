"""Engines: the backends that implement :mod:`pytest_slm.engine_api`, their lazy registry
(``registry``), and the pipeline that loads one for a matrix cell (``loading``).

Each backend owns everything specific to it: ``vllm/`` the in-process ``vllm.LLM`` (arguments,
streaming, scoring, serving load levels on its step loop, the code that runs in its workers, which
precisions its kernels can run); ``openai/`` a model behind an OpenAI-compatible server (the HTTP
client, vLLM's server as a managed process, its Prometheus counters).
"""
