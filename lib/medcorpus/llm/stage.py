"""The base of the LLM-backed stages: an endpoint checked before Spark work, usage recorded, answers released."""

from __future__ import annotations

from typing import Any

from medcorpus.core.runlog import StageReport
from medcorpus.core.stage import Ledger, Stage
from medcorpus.llm import engine
from medcorpus.llm.tasks import require_endpoint


class LlmStage(Stage):
    in_pipeline = False  # they need an endpoint: `medcorpus <stage> --set llm.base_url=...`

    def __init__(self, ctx: Any, **params: Any):
        super().__init__(ctx, **params)
        self.answers: list[engine.Answers] = []

    def check_inputs(self) -> None:
        require_endpoint(self.ctx)  # fails fast, before any Spark work, when base_url is unset
        super().check_inputs()

    def ask(self, template: Any, requests: Any, extra: dict[str, Any] | None = None) -> engine.Answers:
        answers = engine.answer(self.ctx, self.name, template, requests, *([extra] if extra is not None else []))
        self.answers.append(answers)
        return answers

    def finish(self, ledger: Ledger) -> None:
        if self.answers:
            self.notes.append(engine.write_usage(self.ctx, self.name, [a.usage for a in self.answers]))

    def run(self) -> StageReport:
        try:
            return super().run()
        finally:
            for answers in self.answers:
                answers.release()
