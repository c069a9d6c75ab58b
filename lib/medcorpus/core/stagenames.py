"""The names of the pipeline's stages, known without importing the stages.

Importing the stage registry (``medcorpus.stages``) imports every stage's transforms, pyspark, pandas and
numba: seconds. The CLI checks ``--until`` before any of that, so the pipeline order is also written here;
``tests/test_issue21_cli.py`` asserts it equals the registry's order, so the two cannot drift.
"""

from __future__ import annotations

from medcorpus.core.errors import InputError

#: ``medcorpus.stages.pipeline_stages()``, in order
PIPELINE_STAGES: tuple[str, ...] = (
    "ingest", "normalize", "filter", "classify", "dedup", "decontaminate", "sft", "preference", "pretrain", "release",
)


def check_until(until: str | None) -> None:
    """``--until`` must name a pipeline stage (checked before Spark starts, and before the stages are imported)."""
    if until is not None and until not in PIPELINE_STAGES:
        raise InputError(f"unknown stage {until!r} for --until; stages: {', '.join(PIPELINE_STAGES)}")
