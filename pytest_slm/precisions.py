"""The precision registry: names, aliases and what each one means for the checkpoint.

Pytest-free. ``resolve_precisions`` turns what a user typed (``--precision int4 FP16``)
into registry entries or raises :class:`UnknownPrecision` listing the valid names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class UnknownPrecision(ValueError):
    """A precision name that is neither a registered name nor an alias."""


@dataclass(frozen=True)
class Precision:
    """One entry of the precision matrix.

    ``dtype`` is what vLLM is asked to run activations in (``auto`` = the checkpoint's
    own); ``scheme`` names the llmcompressor preset when the precision needs a quantized
    checkpoint (``None`` = serve the source checkpoint as it is). ``sparsity`` names the pruning
    pattern (``"2:4"``: two zeros in every four consecutive input weights; ``"unstructured"``)
    of a pruned checkpoint, made by llmcompressor like a quantized one.
    """

    name: str
    description: str
    dtype: str
    scheme: str | None = None
    method: str | None = None  # "gptq", "smoothquant+gptq", "rtn", "awq", "dynamic"
    weight_bits: int = 16
    activation_bits: int = 16
    aliases: tuple[str, ...] = ()
    sparsity: str | None = None  # "2:4" or "unstructured"
    sparsity_fraction: float = 0.0  # target fraction of zero weights in the pruned layers

    @property
    def quantized(self) -> bool:
        """True when the precision needs a checkpoint made by llmcompressor (quantized, pruned, or both)."""
        return self.scheme is not None or self.sparsity is not None


PRECISIONS: tuple[Precision, ...] = (
    Precision("auto", "the checkpoint's native dtype, no quantization", dtype="auto"),
    Precision("bf16", "bfloat16, no quantization", dtype="bfloat16", aliases=("bfloat16",)),
    Precision("fp16", "float16, no quantization", dtype="float16", aliases=("float16", "half")),
    Precision(
        "fp8",
        "FP8 W8A8, dynamic per-token activations, no calibration",
        dtype="auto",
        scheme="FP8_DYNAMIC",
        method="dynamic",
        weight_bits=8,
        activation_bits=8,
        aliases=("fp8-w8a8",),
    ),
    Precision(
        "int8",
        "INT8 W8A8, SmoothQuant + GPTQ",
        dtype="auto",
        scheme="W8A8",
        method="smoothquant+gptq",
        weight_bits=8,
        activation_bits=8,
        aliases=("int8-w8a8", "w8a8"),
    ),
    Precision(
        "w8a16",
        "INT8 weights, 16-bit activations, GPTQ",
        dtype="auto",
        scheme="W8A16",
        method="gptq",
        weight_bits=8,
        aliases=("int8-w8a16",),
    ),
    Precision(
        "w8a16-rtn",
        "INT8 weights, 16-bit activations, round-to-nearest",
        dtype="auto",
        scheme="W8A16",
        method="rtn",
        weight_bits=8,
        aliases=("int8-w8a16-rtn",),
    ),
    Precision(
        "int4",
        "INT4 W4A16, GPTQ",
        dtype="auto",
        scheme="W4A16",
        method="gptq",
        weight_bits=4,
        aliases=("int4-w4a16", "w4a16"),
    ),
    Precision(
        "w4a16-awq",
        "INT4 W4A16, AWQ",
        dtype="auto",
        scheme="W4A16",
        method="awq",
        weight_bits=4,
        aliases=("int4-w4a16-awq",),
    ),
    Precision(
        "sparse-2of4",
        "2:4 semi-structured sparsity (SparseGPT), 16-bit weights",
        dtype="auto",
        method="sparsegpt",
        sparsity="2:4",
        sparsity_fraction=0.5,
        aliases=("2of4", "sparse-24", "sparsegpt-2of4"),
    ),
    Precision(
        "wanda-50",
        "50 % unstructured sparsity (Wanda), 16-bit weights",
        dtype="auto",
        method="wanda",
        sparsity="unstructured",
        sparsity_fraction=0.5,
        aliases=("wanda", "wanda-0.5"),
    ),
    Precision(
        "sparse-2of4-int4",
        # W4A16 by round-to-nearest: GPTQ's error compensation refills the pruned weights (measured
        # on SmolLM2: 0 of 210 layers kept 2:4, 45 % zeros), while symmetric RTN maps 0 to 0.
        "2:4 sparsity (SparseGPT) plus INT4 W4A16 (round-to-nearest, which keeps the zeros)",
        dtype="auto",
        scheme="W4A16",
        method="sparsegpt+rtn",
        weight_bits=4,
        sparsity="2:4",
        sparsity_fraction=0.5,
        aliases=("2of4-int4", "sparse-2of4-w4a16"),
    ),
)

_BY_NAME: dict[str, Precision] = {}
for _p in PRECISIONS:
    for _key in (_p.name, *_p.aliases):
        _BY_NAME[_key.lower()] = _p


def valid_names() -> list[str]:
    """Registered names (not aliases), in matrix order, plus the ``all`` shorthand."""
    return [p.name for p in PRECISIONS] + ["all"]


def get_precision(name: str) -> Precision:
    """Look a precision up by name or alias, case-insensitively."""
    try:
        return _BY_NAME[name.strip().lower()]
    except KeyError:
        aliases = ", ".join(f"{a} ({p.name})" for p in PRECISIONS for a in p.aliases)
        raise UnknownPrecision(
            f"unknown precision {name!r}; valid: {', '.join(valid_names())}; aliases: {aliases}"
        ) from None


def resolve_precisions(names: Iterable[str]) -> tuple[Precision, ...]:
    """Expand ``all``, resolve aliases, drop duplicates, keep the user's order."""
    out: list[Precision] = []
    for raw in names:
        expanded = [p for p in PRECISIONS if p.name != "auto"] if raw.strip().lower() == "all" else [get_precision(raw)]
        for p in expanded:
            if p not in out:
                out.append(p)
    if not out:
        raise UnknownPrecision(f"no precision given; valid: {', '.join(valid_names())}")
    return tuple(out)
