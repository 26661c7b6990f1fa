"""Scoring and completion on a loaded ``vllm.LLM``, for accuracy (lm-eval). Pytest-free."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def score(llm: Any, token_prompts: Sequence[Sequence[int]]) -> list[list[tuple[float, int]]]:
    """For each prompt, (log p(token_i | tokens_<i), argmax token id) for i = 1..n-1."""
    from vllm import SamplingParams, TokensPrompt

    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1, detokenize=False)
    outs = llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in token_prompts], params, use_tqdm=False)
    result = []
    for prompt, out in zip(token_prompts, outs, strict=True):
        rows = []
        for tok, dist in zip(prompt[1:], (out.prompt_logprobs or [])[1:], strict=True):
            if dist is None:
                raise RuntimeError("vLLM returned no prompt logprobs for a scored position")
            top = min(dist.items(), key=lambda kv: kv[1].rank if kv[1].rank is not None else 1 << 30)[0]
            rows.append((float(dist[tok].logprob), int(top)))
        result.append(rows)
    return result


def complete(
    llm: Any, token_prompts: Sequence[Sequence[int]], *, max_tokens: int, stop: Sequence[str], temperature: float = 0.0
) -> list[str]:
    """Generate up to ``max_tokens`` after each token prompt, stopping at any of ``stop``."""
    from vllm import SamplingParams, TokensPrompt

    params = SamplingParams(max_tokens=max_tokens, stop=list(stop) or None, temperature=temperature)
    outs = llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in token_prompts], params, use_tqdm=False)
    return [o.outputs[0].text for o in outs]
