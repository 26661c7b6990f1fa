"""Which precisions the hardware can run, decided before anything is quantized. Pytest-free.

On CUDA the limits are vLLM's kernels' minimum compute capabilities; on CPU every scheme
loads (FP8 through a slow fallback path, which the report marks).
"""

from __future__ import annotations

from pytest_slm.precisions import Precision

#: precision name -> minimum CUDA compute capability for a native kernel in vLLM
MIN_CAPABILITY: dict[str, tuple[int, int]] = {
    "fp8": (8, 9),  # FP8 W8A8 tensor-core GEMMs: Ada and Hopper
    "int8": (7, 5),  # INT8 W8A8 scaled-mm (CUTLASS): Turing and newer
    "w8a16": (8, 0),
    "w8a16-rtn": (8, 0),
    "int4": (8, 0),
    "w4a16-awq": (8, 0),  # Marlin-family kernels
    "bf16": (8, 0),  # bfloat16 arithmetic
}

#: precision name -> why its CPU path is not representative (shown in the report, not skipped)
CPU_FALLBACK_NOTES: dict[str, str] = {
    "fp8": "vLLM's CPU backend has no native FP8 GEMM kernel; FP8 runs through a slow fallback path",
}


#: precision name -> why it cannot run on a machine without an accelerator (checked before quantizing)
CPU_UNSUPPORTED: dict[str, str] = {
    "w8a16": "vLLM's CPU backend has no 8-bit weight-only (WNA16) kernel: CPUWNA16 supports uint4/uint4b8 only "
    '("Failed to find a kernel that can implement the WNA16 linear layer")',
    "w8a16-rtn": "vLLM's CPU backend has no 8-bit weight-only (WNA16) kernel: CPUWNA16 supports uint4/uint4b8 only "
    '("Failed to find a kernel that can implement the WNA16 linear layer")',
    "w4a16-awq": "llmcompressor's AWQ pipeline pins calibration tensors in page-locked memory, which needs an "
    'accelerator ("RuntimeError: Cannot access accelerator device when none is available")',
}


def unsupported_reason(
    precision: Precision, cuda_capability: tuple[int, int] | None, device_name: str = "this GPU"
) -> str | None:
    """Why ``precision`` cannot run here, or None. ``cuda_capability`` None means CPU."""
    if cuda_capability is None:
        reason = CPU_UNSUPPORTED.get(precision.name)
        return f"{precision.name} on CPU: {reason}" if reason else None
    need = MIN_CAPABILITY.get(precision.name)
    if need is not None and cuda_capability < need:
        return (
            f"{precision.name} ({precision.description}) needs CUDA compute capability >= {need[0]}.{need[1]}; "
            f"{device_name} has {cuda_capability[0]}.{cuda_capability[1]}"
        )
    return None


#: why a pruned checkpoint runs dense in vLLM 0.32 (recorded in the engine facts, on every device)
SPARSE_DENSE_NOTE = (
    "no sparse kernel: vLLM 0.32 removed compressed-tensors sparsity support (a checkpoint with a "
    "sparsity_config is refused) and llmcompressor 0.14 saves pruned weights dense without one, so vLLM "
    "loads them as ordinary weights and multiplies the zeros; sparsity saves neither memory nor time here"
)


def execution_note(precision: Precision) -> str | None:
    """How the engine really executes ``precision`` where that differs from its name (sparsity), or None."""
    return SPARSE_DENSE_NOTE if precision.sparsity is not None else None
