"""Accuracy runs on one engine, memoized per task, plus the session's bf16 references."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from pytest_slm.accuracy.evaluate import TaskResult, evaluate
from pytest_slm.engine_api import ScoringEngine
from pytest_slm.measure.chat import ChatTemplateError, has_template
from pytest_slm.record import Metric
from pytest_slm.settings import Settings

REFERENCE_PRECISION = "bf16"
PERPLEXITY_TASK = "slm_ppl"


class AccuracyRunner:
    """Evaluates tasks on one engine through :class:`EngineLM`; each task runs once per engine.

    Results of the ``bf16`` cell are kept in ``references`` (shared by the session) so a
    quantized cell of the same model can compute its retention; results at KV-cache dtype
    ``auto`` are the references of the same precision at another KV-cache dtype.

    Prompts are lm-eval's own: without the chat template unless ``--slm-apply-chat-template``
    (lm-eval's default), whatever ``--slm-chat-template`` does for the speed workloads, so a
    figure reads like lm-eval's CLI figure for the same task and settings.
    """

    def __init__(
        self,
        engine: ScoringEngine,
        manager: Any,
        settings: Settings,
        references: MutableMapping[tuple[str, str], TaskResult],
    ) -> None:
        from pytest_slm.accuracy.lm import EngineLM

        self.engine = engine
        self.manager = manager
        self.settings = settings
        self.references = references
        self.lm = EngineLM(engine, batch_size=settings.accuracy_batch_size)
        self._done: dict[str, TaskResult | BaseException] = {}

    @property
    def model(self) -> str:
        return self.engine.spec.model_name

    def run(self, task: str) -> TaskResult:
        """The task's result on this engine (evaluated on first use; a failure is remembered)."""
        if task not in self._done:
            try:
                self._done[task] = self._evaluate(task)
            except Exception as exc:
                self._done[task] = exc
        done = self._done[task]
        if isinstance(done, BaseException):
            raise done
        return done

    def evaluate_again(self, task: str) -> TaskResult:
        """Evaluate ``task`` once more, not memoized (for a measurement window around a whole run)."""
        return self._evaluate(task)

    def wall_s(self, task: str) -> float:
        """Seconds the (memoized) evaluation of ``task`` took on this engine."""
        speed = next(m for m in self.run(task).metrics if m.name == f"{task}.items_per_s")
        return float(speed.info["wall_s"])

    def _evaluate(self, task: str) -> TaskResult:
        rolling = task == PERPLEXITY_TASK
        if rolling:
            self.lm.rolling_tokens, self.lm.rolling_logprob = 0, 0.0
        # perplexity scores raw text (lm-eval builds no context for rolling log-likelihood): no template
        chat = self.settings.apply_chat_template and not rolling
        if chat and not has_template(self.lm.tokenizer):
            raise ChatTemplateError(
                f"{self.settings.sources.get('apply_chat_template', '--slm-apply-chat-template')}: the tokenizer "
                f"of {self.model} has no chat template"
            )
        t0 = time.perf_counter()
        result = evaluate(
            self.lm,
            task,
            manager=self.manager,
            num_fewshot=0 if rolling else self.settings.num_fewshot,
            limit=self.settings.accuracy_task_limits.get(task, self.settings.accuracy_limit),
            apply_chat_template=chat,
            fewshot_as_multiturn=chat and self.settings.fewshot_as_multiturn,
        )
        wall_s = time.perf_counter() - t0
        result.metrics.append(
            Metric(
                f"{task}.items_per_s",
                result.n_items / wall_s,
                "item/s",
                higher_is_better=True,
                n=result.n_items,
                info={"wall_s": wall_s, "kind": "speed", "note": "includes few-shot context building"},
            )
        )
        if rolling and self.lm.rolling_tokens:
            import math

            ppl = math.exp(-self.lm.rolling_logprob / self.lm.rolling_tokens)
            result.metrics.append(
                Metric(
                    f"{task}.token_perplexity",
                    ppl,
                    "1",
                    higher_is_better=False,
                    n=self.lm.rolling_tokens,
                    info={
                        "tokens": self.lm.rolling_tokens,
                        "task": task,
                        "kind": "quality",
                        "workload": {"task": task, "num_fewshot": 0, "limit": self.settings.accuracy_limit},
                    },
                )
            )
        spec = self.engine.spec
        if spec.kv_cache_dtype == "auto":
            # every precision at the default KV dtype is the reference of its own KV-dtype variants
            self.references[(f"{self.model}@{spec.precision.name}", task)] = result
            if spec.precision.name == REFERENCE_PRECISION:
                self.references[(self.model, task)] = result
        return result

    @property
    def reference_name(self) -> str:
        """What this engine's retention is measured against: the same precision at KV dtype auto
        for a non-default KV-cache dtype, else bf16."""
        spec = self.engine.spec
        return f"{spec.precision.name} (kv auto)" if spec.kv_cache_dtype != "auto" else REFERENCE_PRECISION

    def reference(self, task: str) -> TaskResult | None:
        spec = self.engine.spec
        if spec.kv_cache_dtype != "auto":
            return self.references.get((f"{self.model}@{spec.precision.name}", task))
        return self.references.get((self.model, task))
