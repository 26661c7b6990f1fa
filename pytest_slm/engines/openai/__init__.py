"""The ``openai`` backend: a model behind an OpenAI-compatible server, measured over HTTP (:mod:`.engine`).

Around it: one async request function per API returning a plain result (:mod:`.client`), vLLM's
OpenAI server as a managed process (:mod:`.server`), and the server's Prometheus counters
(:mod:`.prom`). The server it manages runs vLLM, so its arguments and precision gating are the
vLLM backend's.
"""
