"""The serving levels of one engine, memoized: what ``slm_serving`` hands the serving benches. Pytest-free.

Every level of a sweep sends the same prompts (the first ``requests`` of the prompt set, distinct
within the level), so levels differ only in load. Warm-up requests (``--slm-num-warmup``, taken
from the end of the prompt set where it is large enough) run once per engine before the first
level and are discarded.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pytest_slm.engine_api import Engine, SamplingSpec, tokenizer_of
from pytest_slm.measure import machine
from pytest_slm.measure.context import HandOut
from pytest_slm.measure.prompts import PromptSet, load_prompt_set, with_shared_prefix
from pytest_slm.measure.validity import MAX_FOREIGN_LOAD, CpuWindow, server_processes_of
from pytest_slm.serving.load import LoadSpec, PlannedRequest, ServingRun, levels, run_load
from pytest_slm.serving.metrics import client_check
from pytest_slm.settings import Settings
from pytest_slm.slo import SLO, parse_slo


def load_levels(settings: Settings) -> list[LoadSpec]:
    """Every load level of the sweep the settings ask for (concurrency levels, then rates)."""
    s = settings
    return levels(s.concurrency, s.request_rate, requests=s.serving_requests, max_s=s.serving_max_s)


@dataclasses.dataclass(frozen=True, eq=False)
class LevelWindow:
    """One served level as a measured window: its problems are the client's own check (p99 loop lag or
    send skew beyond ``margin_s``), other processes' CPU load and the reference kernel, each labelled
    with the level (``c8: ...``) so a test that takes several levels says which one was voided."""

    run: ServingRun
    margin_s: float

    def problems(self, max_foreign_cores: float = MAX_FOREIGN_LOAD) -> list[str]:
        return [f"{self.run.load.id}: {r}" for r in client_check(self.run, self.margin_s, max_foreign_cores)[1]]


class ServingSession:
    """Load levels on one engine: ``run(level)`` serves it once and remembers the run; every run
    handed out goes to ``on_handout`` as a :class:`LevelWindow` (validity by default)."""

    def __init__(
        self, engine: Engine, settings: Settings, chat_tokenizer: Any = None, on_handout: HandOut | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings
        #: the tokenizer whose chat template wraps each prompt (None: raw prompts), as the latency benches do
        self.chat_tokenizer = chat_tokenizer
        self.on_handout = on_handout
        self._prompts: PromptSet | None = None
        self._runs: dict[LoadSpec, LevelWindow] = {}
        self._warm = False
        # the reference kernel, where the engine has one and it is wanted
        self.prober = machine.session_prober(engine, not settings.no_machine_check)

    def levels(self) -> list[LoadSpec]:
        return load_levels(self.settings)

    def slos(self) -> list[SLO]:
        return [parse_slo(text) for text in self.settings.slo]

    @property
    def prompt_set(self) -> PromptSet:
        if self._prompts is None:
            s = self.settings
            needs_tokenizer = s.prompt_set.startswith("synthetic:") or s.shared_prefix > 0
            tokenizer = tokenizer_of(self.engine) if needs_tokenizer else None
            ps = load_prompt_set(s.prompt_set, tokenizer=tokenizer, default_prompt=s.prompt, cycle=s.prompt_cycle)
            if s.shared_prefix:
                ps = with_shared_prefix(ps, s.shared_prefix, tokenizer)
            # synthetic prompts have exact token counts: a template around them would change the counts
            chat = self.chat_tokenizer is not None and ps.identity.get("prompt_source") != "synthetic"
            if chat:
                from pytest_slm.measure.chat import render

                ps = dataclasses.replace(ps, prompts=tuple(render(self.chat_tokenizer, p) for p in ps.prompts))
            ps = dataclasses.replace(ps, identity={**ps.identity, "chat_template": chat})
            self._prompts = ps
        return self._prompts

    def plans(self, n: int, offset: int = 0) -> list[PlannedRequest]:
        ps = self.prompt_set
        prompts = ps.take(n, offset)
        lengths = ps.take_max_new_tokens(n, offset)
        return [
            PlannedRequest(i, p, SamplingSpec(max_new_tokens=m or self.settings.max_new_tokens))
            for i, (p, m) in enumerate(zip(prompts, lengths, strict=True))
        ]

    def warm_up(self) -> None:
        """``--slm-num-warmup`` requests at once, discarded (once per engine)."""
        if self._warm:
            return
        self._warm = True
        n = self.settings.num_warmup
        if n <= 0:
            return
        ps = self.prompt_set
        offset = max(0, len(ps) - n) if len(ps) >= n else 0
        plans = self._warm_plans(n, offset)
        self.engine.stream([p.prompt for p in plans], [p.sampling for p in plans])

    def _warm_plans(self, n: int, offset: int) -> list[PlannedRequest]:
        ps = self.prompt_set
        idx = [(offset + i) % len(ps) for i in range(n)]  # warm-up may repeat prompts: it is not measured
        return [
            PlannedRequest(
                i, ps.prompts[j], SamplingSpec(max_new_tokens=ps.max_new_tokens[j] or self.settings.max_new_tokens)
            )
            for i, j in enumerate(idx)
        ]

    def run(self, load: LoadSpec) -> ServingRun:
        """The level's run (served on first use)."""
        if load not in self._runs:
            plans = self.plans(load.requests)  # before warming: a too-small prompt set fails here first
            self.warm_up()
            with machine.Bracket(self.prober) as kernel, CpuWindow(server=server_processes_of(self.engine)) as window:
                run = run_load(self.engine, plans, load)
            run = dataclasses.replace(run, cpu=window.usage, machine=kernel.probes)
            self._runs[load] = LevelWindow(run, self.settings.client_margin_s)
        level = self._runs[load]
        if self.on_handout is not None:
            self.on_handout(level)
        return level.run

    def workload(self, load: LoadSpec) -> dict[str, Any]:
        """What was measured, as flat JSON scalars for ``info["workload"]`` (baselines key on it)."""
        s = self.settings
        return {
            **self.prompt_set.identity,
            **self.prompt_set.usage(load.requests),
            **load.describe(),
            "max_new_tokens": s.max_new_tokens,
            "num_warmup": s.num_warmup,
            "engine": self.engine.kind,
            "openai_api": s.openai_api if self.engine.kind == "openai" else None,
            "prefix_caching": s.prefix_caching,
        }
