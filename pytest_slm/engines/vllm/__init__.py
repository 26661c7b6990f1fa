"""The vLLM backend: one in-process ``vllm.LLM`` per model × precision (:mod:`.engine`).

Around it: the engine arguments and sampling parameters (:mod:`.args`), the streaming client loop
and the engine's own timestamps (:mod:`.stream`), load levels on the engine's step loop
(:mod:`.serve`), scoring for accuracy (:mod:`.scoring`), memory and description facts
(:mod:`.facts`), what runs inside vLLM's workers (:mod:`.worker`), and which precisions the
hardware can run (:mod:`.gating`). Importing this package imports no vLLM.
"""
