"""The pipeline: the registered stages in their declared order, each followed by its validation gate."""

from __future__ import annotations

import logging

from medcorpus.core.context import RunContext, new_run_id
from medcorpus.core.runlog import StageReport
from medcorpus.core.stagenames import check_until
from medcorpus.stages import STAGES, pipeline_stages

log = logging.getLogger(__name__)

__all__ = ["RunContext", "new_run_id", "stage_names", "check_until", "run_pipeline"]


def stage_names() -> list[str]:
    return pipeline_stages()


def run_pipeline(ctx: RunContext, sources: list[str], until: str | None = None) -> list[StageReport]:
    """Every pipeline stage in order (ingest reads ``sources``), stopping after ``until`` when given."""
    check_until(until)
    from medcorpus.quality.validation import StageGate  # GX: what a stage wrote is validated before the next runs

    gate = StageGate(ctx)
    reports = []
    try:
        for name in stage_names():
            log.info("stage %s ...", name)
            params = {"sources": sources} if name == "ingest" else {}
            reports.append(STAGES[name](ctx, **params).run())
            gate.after(name)
            if name == until:
                break
        gate.finish()
    finally:
        gate.close()  # the Data Docs of what was validated, also when a stage failed
    return reports
