"""Prompt sets: what the requests of a workload say. Pytest-free, import-light.

A prompt set is chosen by a spec string (``--slm-prompt-set``):

- ``fixed``: the single prompt of ``--slm-prompt``, repeated for every request (every concurrent
  request identical, as the single-prompt workloads have always been).
- ``shipped``: about a hundred varied prompts shipped with pytest-slm (``data/prompts/shipped.jsonl``:
  questions, instructions, summaries of a given paragraph, code, small reasoning tasks).
- ``synthetic:in=N,out=M[,dist=fixed|uniform|normal][,range=R][,std=S][,n=K][,seed=S]``: prompts of
  exactly the drawn number of input tokens (verified with the model's tokenizer) and per-prompt output
  lengths, both drawn from the named distribution, as vLLM's random dataset does. ``uniform`` draws
  from ``[N·(1−R), N·(1+R)]`` (R defaults to 0.5), ``normal`` from a normal law of mean N and standard
  deviation ``S·N`` (S defaults to 0.25), rounded and clipped to at least 1 token. ``in_dist``/``out_dist``
  set the two laws apart; ``n`` is the number of prompts (default 100).
- ``jsonl:PATH``: a user's JSONL file, one object per line with ``prompt`` and optionally ``id`` and
  ``max_new_tokens``.

Requests take distinct prompts (:meth:`PromptSet.take`); asking for more requests than the set holds
is an error unless cycling was asked for, and cycling is recorded. A shared prefix of a given number
of tokens can be put in front of every prompt (:func:`with_shared_prefix`) for prefix-sharing workloads.

:attr:`PromptSet.identity` is a flat dict of JSON scalars (source, content hash, count, length
parameters) for a metric's ``info["workload"]``, so a baseline is only compared with the same prompts.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

SHIPPED_RESOURCE = "prompts/shipped.jsonl"  # under pytest_slm/data
SOURCES = ("fixed", "shipped", "synthetic:in=N,out=M[,...]", "jsonl:PATH")
DISTRIBUTIONS = ("fixed", "uniform", "normal")
SYNTHETIC_KEYS = ("in", "out", "dist", "in_dist", "out_dist", "range", "std", "n", "seed")
DEFAULT_SYNTHETIC_COUNT = 100
DEFAULT_RANGE = 0.5
DEFAULT_STD = 0.25
#: decode → re-encode rounds allowed when building an exact-length prompt
MAX_ADJUST_ROUNDS = 32


class PromptSetError(ValueError):
    """A bad prompt-set spec or file; the message names the spec, the file and the line."""


@dataclass(frozen=True)
class PromptSet:
    """An ordered set of prompts with optional per-prompt output lengths (``None``: the run's
    ``--slm-max-new-tokens``). ``cycle``: whether :meth:`take` may wrap around the set."""

    name: str
    prompts: tuple[str, ...]
    max_new_tokens: tuple[int | None, ...]
    identity: Mapping[str, str | int | float | bool | None]
    cycle: bool = False
    #: per-prompt input token counts where they are known exactly (synthetic sets)
    prompt_tokens: tuple[int, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise PromptSetError(f"prompt set {self.name!r} is empty")
        if len(self.max_new_tokens) != len(self.prompts):
            n = len(self.max_new_tokens)
            raise PromptSetError(f"prompt set {self.name!r}: {n} output lengths for {len(self)} prompts")

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def repeats_prompt(self) -> bool:
        """A set of one prompt that every request repeats (the ``fixed`` source)."""
        return self.name == "fixed"

    def indices(self, n: int, offset: int = 0) -> list[int]:
        """Indices of the ``n`` prompts starting at ``offset`` (see :meth:`take`)."""
        if n < 0 or offset < 0:
            raise ValueError(f"n and offset must be >= 0, got n={n}, offset={offset}")
        if offset + n > len(self) and not (self.cycle or self.repeats_prompt):
            raise PromptSetError(
                f"prompt set {self.name!r} holds {len(self)} prompts, {offset + n} were asked for "
                f"(offset {offset} + {n}); use a larger set (synthetic: n=...), fewer requests, "
                "or allow cycling (--slm-prompt-cycle), which repeats prompts and is recorded"
            )
        return [(offset + i) % len(self) for i in range(n)]

    def take(self, n: int, offset: int = 0) -> list[str]:
        """``n`` prompts from position ``offset``: distinct while the set lasts; beyond it only
        when the set was loaded with cycling allowed (or is the single ``fixed`` prompt)."""
        return [self.prompts[i] for i in self.indices(n, offset)]

    def take_max_new_tokens(self, n: int, offset: int = 0) -> list[int | None]:
        """The per-prompt output lengths matching :meth:`take` (``None``: the run's default)."""
        return [self.max_new_tokens[i] for i in self.indices(n, offset)]

    def usage(self, n: int, offset: int = 0) -> dict[str, int | bool]:
        """What a run of ``n`` requests used of the set, for ``info["workload"]``."""
        distinct = len(set(self.indices(n, offset)))
        return {"prompt_requests": n, "prompt_distinct": distinct, "prompt_cycled": distinct < n}


# -- loading ----------------------------------------------------------------------------------
def load_prompt_set(
    spec: str,
    *,
    tokenizer: Any = None,
    seed: int = 0,
    default_prompt: str | None = None,
    cycle: bool = False,
) -> PromptSet:
    """The prompt set named by ``spec`` (see the module docstring for the sources).

    ``tokenizer`` (a Hugging Face tokenizer) is needed by ``synthetic`` only; ``seed`` seeds its
    draws unless the spec has its own ``seed=``; ``default_prompt`` is the ``fixed`` prompt.
    """
    spec = spec.strip()
    source, _, arg = spec.partition(":")
    if source == "fixed" and not arg:
        if default_prompt is None:
            from pytest_slm.options import DEFAULT_PROMPT

            default_prompt = DEFAULT_PROMPT
        return _finish("fixed", (default_prompt,), (None,), {"prompt_source": "fixed"}, cycle)
    if source == "shipped" and not arg:
        text = resources.files("pytest_slm").joinpath("data", SHIPPED_RESOURCE).read_text(encoding="utf-8")
        prompts, lengths = _parse_jsonl(text.splitlines(), "the shipped prompt set")
        return _finish("shipped", prompts, lengths, {"prompt_source": "shipped"}, cycle)
    if source == "jsonl" and arg:
        path = Path(arg).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise PromptSetError(f"prompt set {spec!r}: cannot read {path}: {exc.strerror or exc}") from None
        prompts, lengths = _parse_jsonl(lines, str(path))
        identity = {"prompt_source": "jsonl", "prompt_file": path.name}
        return _finish(f"jsonl:{path.name}", prompts, lengths, identity, cycle)
    if source == "synthetic" and arg:
        params = parse_synthetic(arg, spec)
        if tokenizer is None:
            raise PromptSetError(f"prompt set {spec!r} needs the model's tokenizer to build exact-length prompts")
        return synthetic_prompt_set(params, tokenizer, seed=seed, cycle=cycle)
    raise PromptSetError(f"unknown prompt set {spec!r}; valid: {', '.join(SOURCES)}")


def _finish(
    name: str,
    prompts: Sequence[str],
    lengths: Sequence[int | None],
    identity: dict[str, Any],
    cycle: bool,
    prompt_tokens: Sequence[int] = (),
) -> PromptSet:
    identity = {
        **identity,
        "prompt_set_sha256": content_hash(prompts, lengths),
        "prompt_count": len(prompts),
        "prompt_cycle": cycle,
    }
    return PromptSet(name, tuple(prompts), tuple(lengths), identity, cycle, tuple(prompt_tokens))


def content_hash(prompts: Sequence[str], lengths: Sequence[int | None]) -> str:
    """First 16 hex digits of the SHA-256 of the prompts and their output lengths."""
    h = hashlib.sha256()
    for p, n in zip(prompts, lengths, strict=True):
        h.update(json.dumps([p, n], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def _parse_jsonl(lines: Sequence[str], where: str) -> tuple[list[str], list[int | None]]:
    prompts: list[str] = []
    lengths: list[int | None] = []
    ids: set[str] = set()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptSetError(f"{where} line {lineno}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise PromptSetError(f'{where} line {lineno}: expected an object with a non-empty "prompt" string')
        rid = row.get("id")
        if rid is not None:
            if str(rid) in ids:
                raise PromptSetError(f"{where} line {lineno}: duplicate id {rid!r}")
            ids.add(str(rid))
        limit = row.get("max_new_tokens")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise PromptSetError(f"{where} line {lineno}: max_new_tokens must be a positive integer, got {limit!r}")
        prompts.append(row["prompt"])
        lengths.append(limit)
    if not prompts:
        raise PromptSetError(f"{where}: no prompts")
    return prompts, lengths


# -- synthetic prompts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticParams:
    """Length laws of a synthetic set (token counts)."""

    input_len: int
    output_len: int
    input_dist: str = "fixed"
    output_dist: str = "fixed"
    range_ratio: float = DEFAULT_RANGE
    std_ratio: float = DEFAULT_STD
    count: int = DEFAULT_SYNTHETIC_COUNT
    seed: int | None = None


def parse_synthetic(arg: str, spec: str) -> SyntheticParams:
    """``in=N,out=M,...`` as :class:`SyntheticParams`; errors name the spec and the bad entry."""
    raw: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in arg.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in SYNTHETIC_KEYS:
            raise PromptSetError(f"prompt set {spec!r}: bad entry {part!r}; keys: {', '.join(SYNTHETIC_KEYS)}")
        raw[key] = value.strip()
    for key in ("in", "out"):
        if key not in raw:
            raise PromptSetError(f"prompt set {spec!r}: {key}=N is required")

    def integer(key: str, minimum: int) -> int:
        try:
            value = int(raw[key])
        except ValueError:
            raise PromptSetError(f"prompt set {spec!r}: {key} must be an integer, got {raw[key]!r}") from None
        if value < minimum:
            raise PromptSetError(f"prompt set {spec!r}: {key} must be >= {minimum}, got {value}")
        return value

    def ratio(key: str, default: float, upper: float) -> float:
        if key not in raw:
            return default
        try:
            value = float(raw[key])
        except ValueError:
            raise PromptSetError(f"prompt set {spec!r}: {key} must be a number, got {raw[key]!r}") from None
        if not 0 <= value <= upper:
            raise PromptSetError(f"prompt set {spec!r}: {key} must be in [0, {upper}], got {value}")
        return value

    dist = raw.get("dist", "fixed")
    laws = {"in": raw.get("in_dist", dist), "out": raw.get("out_dist", dist)}
    for key, law in [("dist", dist), *laws.items()]:
        if law not in DISTRIBUTIONS:
            raise PromptSetError(f"prompt set {spec!r}: {key} must be one of {', '.join(DISTRIBUTIONS)}, got {law!r}")
    return SyntheticParams(
        input_len=integer("in", 1),
        output_len=integer("out", 1),
        input_dist=laws["in"],
        output_dist=laws["out"],
        range_ratio=ratio("range", DEFAULT_RANGE, 1.0),
        std_ratio=ratio("std", DEFAULT_STD, 10.0),
        count=integer("n", 1) if "n" in raw else DEFAULT_SYNTHETIC_COUNT,
        seed=integer("seed", 0) if "seed" in raw else None,
    )


def draw_length(rng: random.Random, mean: int, law: str, range_ratio: float, std_ratio: float) -> int:
    """One length from ``law`` around ``mean`` (at least 1)."""
    if law == "fixed":
        return mean
    if law == "uniform":
        lo = max(1, math.floor(mean * (1 - range_ratio)))
        hi = max(lo, math.ceil(mean * (1 + range_ratio)))
        return rng.randint(lo, hi)
    if law == "normal":
        return max(1, round(rng.gauss(mean, std_ratio * mean)))
    raise ValueError(f"unknown distribution {law!r}")


def synthetic_prompt_set(params: SyntheticParams, tokenizer: Any, *, seed: int = 0, cycle: bool = False) -> PromptSet:
    """Prompts of exactly the drawn token counts (as ``tokenizer`` encodes them, special tokens
    included, which is how the engine counts them) and per-prompt output lengths.

    Prompt ``i`` depends only on the seed and ``i``: a larger set starts with the smaller one.
    """
    seed = params.seed if params.seed is not None else seed
    vocab = word_vocabulary(tokenizer)
    prompts: list[str] = []
    lengths: list[int | None] = []
    counts: list[int] = []
    for i in range(params.count):
        rng = random.Random(f"slm-synthetic:{seed}:{i}")
        n_in = draw_length(rng, params.input_len, params.input_dist, params.range_ratio, params.std_ratio)
        n_out = draw_length(rng, params.output_len, params.output_dist, params.range_ratio, params.std_ratio)
        prompts.append(exact_length_prompt(tokenizer, n_in, rng, vocab))
        lengths.append(n_out)
        counts.append(n_in)
    identity = {
        "prompt_source": "synthetic",
        "prompt_in": params.input_len,
        "prompt_out": params.output_len,
        "prompt_in_dist": params.input_dist,
        "prompt_out_dist": params.output_dist,
        "prompt_range": params.range_ratio if "uniform" in (params.input_dist, params.output_dist) else None,
        "prompt_std": params.std_ratio if "normal" in (params.input_dist, params.output_dist) else None,
        "prompt_seed": seed,
    }
    name = f"synthetic:in={params.input_len},out={params.output_len}"
    return _finish(name, prompts, lengths, identity, cycle, counts)


def special_token_count(tokenizer: Any) -> int:
    """How many tokens the tokenizer adds around any text (a BOS token, for instance)."""
    return len(tokenizer.encode("", add_special_tokens=True)) - len(tokenizer.encode("", add_special_tokens=False))


def word_vocabulary(tokenizer: Any, limit: int = 20000) -> list[int]:
    """Token ids that decode to one space-led alphabetic word and encode back to themselves:
    text built from them re-tokenizes almost exactly, so few adjustment rounds are needed."""
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    size = min(int(getattr(tokenizer, "vocab_size", 0) or len(tokenizer)), limit)
    out = []
    for tid in range(size):
        if tid in special:
            continue
        text = tokenizer.decode([tid])
        word = text[1:]
        if len(text) >= 3 and text[0] == " " and word.isascii() and word.isalpha() and word.islower():
            out.append(tid)
    if len(out) < 100:  # an unusual vocabulary: fall back to every ordinary token
        out = [t for t in range(size) if t not in special]
    return out


def exact_length_prompt(tokenizer: Any, n_tokens: int, rng: random.Random, vocab: Sequence[int]) -> str:
    """Text that ``tokenizer`` encodes to exactly ``n_tokens`` tokens (special tokens included).

    Built from random token ids, then decoded and re-encoded until the count is exact: the round
    trip is not the identity (neighbouring pieces can merge or split), so the ids are cut or padded
    to the re-encoded count and tried again."""
    extra = special_token_count(tokenizer)
    want = n_tokens - extra
    if want < 1:
        raise PromptSetError(f"a {n_tokens}-token prompt is too short: the tokenizer adds {extra} special token(s)")
    ids = [rng.choice(vocab) for _ in range(want)]
    for _ in range(MAX_ADJUST_ROUNDS):
        text = tokenizer.decode(ids)
        got = list(tokenizer.encode(text, add_special_tokens=False))
        if len(got) == want and len(tokenizer.encode(text, add_special_tokens=True)) == n_tokens:
            return str(text)
        ids = got[:want] if len(got) > want else got + [rng.choice(vocab) for _ in range(want - len(got))]
    raise PromptSetError(f"could not build a prompt of exactly {n_tokens} tokens in {MAX_ADJUST_ROUNDS} rounds")


def with_shared_prefix(prompt_set: PromptSet, n_tokens: int, tokenizer: Any, *, seed: int = 0) -> PromptSet:
    """Every prompt preceded by the same ``n_tokens``-token prefix (a prefix-sharing workload: the
    engine's prefix cache, where enabled, can reuse it). ``n_tokens`` counts the prefix as the
    tokenizer encodes it alone; the identity records it."""
    if n_tokens <= 0:
        return prompt_set
    rng = random.Random(f"slm-prefix:{seed}")
    prefix = exact_length_prompt(tokenizer, n_tokens + special_token_count(tokenizer), rng, word_vocabulary(tokenizer))
    prompts = tuple(f"{prefix.rstrip()}\n\n{p}" for p in prompt_set.prompts)
    identity = {
        **prompt_set.identity,
        "prompt_shared_prefix_tokens": n_tokens,
        "prompt_set_sha256": content_hash(prompts, prompt_set.max_new_tokens),
    }
    return replace(prompt_set, prompts=prompts, identity=identity, prompt_tokens=())
