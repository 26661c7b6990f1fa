"""Real NVML energy measurement on an NVIDIA GPU, for the record (not part of the test suite).

Runs pytest-slm's meter and measurement method (pytest_slm.energy) around two workloads:
1. bf16 matrix products (a steady, known load);
2. greedy decoding with Hugging Face transformers on a model of SmolLM2-135M's architecture
   with random weights (the checkpoint cannot travel to an offline GPU machine; the compute per
   token is the architecture's, not the weights').
Both through the energy counter, and again through the power-sampling fallback, to cross-check.
Usage: python3 scripts/gpu_energy_check.py [OUT.json]   (needs torch, transformers, nvidia-ml-py)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_slm.devices import nvml_gpus
from pytest_slm.energy.meters import NvmlMeter
from pytest_slm.energy.method import energy_metrics, measure

SMOLLM2_135M = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "num_hidden_layers": 30,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "tie_word_embeddings": True,
}


class _NoCounter:
    """The NVML module with the energy counter hidden, to exercise the sampling fallback for real."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nvml, name)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        raise self._nvml.NVMLError_NotSupported(self._nvml.NVML_ERROR_NOT_SUPPORTED)


def main(out_path: str | None) -> None:
    import pynvml
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    report: dict[str, Any] = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)

    def matmuls() -> tuple[int, int]:
        for _ in range(50):
            a @ b
        torch.cuda.synchronize()
        return 50, 1

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).to("cuda", torch.bfloat16).eval()

    def decoder(batch: int) -> Any:
        prompt = torch.randint(0, 49152, (batch, 64), device="cuda")

        def decode() -> tuple[int, int]:
            with torch.no_grad():
                out = model.generate(prompt, max_new_tokens=128, min_new_tokens=128, do_sample=False)
            torch.cuda.synchronize()
            return int((out.shape[1] - prompt.shape[1]) * out.shape[0]), int(out.shape[0])

        return decode

    decode, decode64 = decoder(8), decoder(64)

    matmuls()
    decode()  # warm-up
    decode64()
    for label, nvml in (("counter", pynvml), ("sampling", _NoCounter(pynvml))):
        meter = NvmlMeter(nvml_gpus()[0].uuid, nvml=nvml)
        try:
            workloads = (
                ("matmul_8192_bf16", matmuls),
                ("smollm2_arch_decode_b8", decode),
                ("smollm2_arch_decode_b64", decode64),
            )
            for name, work in workloads:
                t0 = time.perf_counter()
                res = measure(meter, work, idle_s=2.0, min_window_s=5.0)
                report[f"{label}/{name}"] = {
                    "meter": meter.describe(),
                    "wall_s": time.perf_counter() - t0,
                    "result": {
                        **res.__dict__,
                        "avg_power_w": res.avg_power_w,
                        "dynamic_energy_j": res.dynamic_energy_j,
                        "crosscheck_ratio": res.crosscheck_ratio,
                    },
                    "metrics": {m.name: [m.value, m.unit] for m in energy_metrics(res)},
                }
                if name.startswith("matmul"):
                    tflop = 2 * 8192**3 * res.output_tokens / 1e12
                    report[f"{label}/{name}"]["tflop_per_s"] = tflop / res.window_s
                    report[f"{label}/{name}"]["j_per_tflop"] = res.energy_j / tflop
        finally:
            meter.close()
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if out_path:
        Path(out_path).write_text(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
