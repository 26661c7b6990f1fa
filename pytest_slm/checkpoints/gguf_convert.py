"""Convert a GGUF file to a Hugging Face checkpoint (bf16 safetensors + tokenizer).

Run as a subprocess (``python -m pytest_slm.checkpoints.gguf_convert GGUF OUTDIR``) so that
the ~1 GB the conversion takes is returned to the OS before an engine starts. The subprocess
prints one ``FACTS_PREFIX`` line with :func:`gguf_facts` of the source file.

The conversion dequantizes: a checkpoint converted from a Q4_1 GGUF holds bf16 numbers that
are exactly the Q4_1 values (16 levels per block of 32 weights), not the original release.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

FACTS_PREFIX = "SLM_GGUF_FACTS "


def gguf_facts(gguf_path: Path) -> dict[str, Any]:
    """What the GGUF header says about its weights: the file type (``general.file_type``, e.g.
    ``Q4_1``) and how many tensors of each type it holds. Reads the header only (memory-mapped)."""
    import gguf

    reader = gguf.GGUFReader(gguf_path)
    field = reader.fields.get("general.file_type")
    file_type: str | None = None
    if field is not None:
        code = int(field.parts[field.data[0]][0])
        name = gguf.LlamaFileType(code).name
        file_type = name.removeprefix("MOSTLY_").removeprefix("ALL_")
    types = Counter(t.tensor_type.name for t in reader.tensors)
    return {"gguf_file_type": file_type, "gguf_tensor_types": dict(sorted(types.items()))}


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
    print(FACTS_PREFIX + json.dumps(gguf_facts(Path(sys.argv[1]))), flush=True)
