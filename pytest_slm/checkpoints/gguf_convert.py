"""Convert a GGUF file to a Hugging Face checkpoint (bf16 safetensors + tokenizer).

Run as a subprocess (``python -m pytest_slm.checkpoints.gguf_convert GGUF OUTDIR``) so that
the ~1 GB the conversion takes is returned to the OS before an engine starts.
"""

from __future__ import annotations

import sys
from pathlib import Path


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # dequantize=True: transformers 5 refuses to save a model still marked as GGUF-quantized.
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m pytest_slm.checkpoints.gguf_convert GGUF OUTDIR")
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
