"""The stage registry: every stage of medcorpus, one short module each.

From this one list come the pipeline order (a topological order of the declared tables, checked to be a
DAG), the CLI subcommands (``medcorpus <stage>``) and the ``jobs/<stage>.py`` spark-submit entry points.
"""

from __future__ import annotations

from typing import Any

from medcorpus.core.context import RunContext
from medcorpus.core.runlog import StageReport
from medcorpus.core.stage import Stage
from medcorpus.stages.annotate import Annotate
from medcorpus.stages.classify import Classify
from medcorpus.stages.decontaminate import Decontaminate
from medcorpus.stages.dedup import Dedup
from medcorpus.stages.filter import Filter
from medcorpus.stages.generate_qa import GenerateQa
from medcorpus.stages.ingest import Ingest
from medcorpus.stages.judge import Judge
from medcorpus.stages.normalize import Normalize
from medcorpus.stages.preference import Preference
from medcorpus.stages.pretrain import Pretrain
from medcorpus.stages.release import Release
from medcorpus.stages.sft import Sft
from medcorpus.stages.translate import Translate

#: every stage, in the order ties are broken when the pipeline order is computed
STAGE_CLASSES: tuple[type[Stage], ...] = (
    Ingest, Normalize, Filter, Classify, Dedup, Decontaminate, Sft, Preference, Pretrain, Release,
    Annotate, Translate, GenerateQa, Judge,
)
STAGES: dict[str, type[Stage]] = {cls.name: cls for cls in STAGE_CLASSES}


def dependencies(stages: tuple[type[Stage], ...]) -> dict[str, set[str]]:
    """stage -> the stages that write a table it reads, or that it is declared to run after."""
    return {
        cls.name: {other.name for other in stages if other is not cls
                   and (set(cls.inputs) & set(other.outputs) or other.name in cls.after)}
        for cls in stages
    }


def stage_order(stages: tuple[type[Stage], ...]) -> list[str]:
    """A topological order of ``stages`` (ties keep their order in ``stages``); a cycle is an error."""
    deps = dependencies(stages)
    order: list[str] = []
    remaining = [cls.name for cls in stages]
    while remaining:
        ready = [name for name in remaining if deps[name] <= set(order)]
        if not ready:
            cycle = {name: sorted(deps[name] - set(order)) for name in remaining}
            raise ValueError(f"the stages' declared tables form a cycle: {cycle}")
        order.append(ready[0])
        remaining.remove(ready[0])
    return order


def pipeline_stages() -> list[str]:
    """The stages of ``medcorpus run``, in order."""
    return stage_order(tuple(cls for cls in STAGE_CLASSES if cls.in_pipeline))


def run_stage(ctx: RunContext, stage: str, /, **params: Any) -> StageReport:
    """Run one stage by name (``params``: the stage's own arguments, e.g. ingest's ``sources``, release's ``name``)."""
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return STAGES[stage](ctx, **params).run()


def job_script(name: str) -> str:
    """The text of ``jobs/<name>.py``, the spark-submit entry point of a stage or command."""
    return (f'"""spark-submit entry point: `spark-submit jobs/{name.replace("-", "_")}.py [args]` == '
            f'`medcorpus {name} [args]`."""\n\nimport sys\n\nfrom medcorpus.cli import main\n\n'
            f'if __name__ == "__main__":\n    sys.exit(main(["{name}", *sys.argv[1:]]))\n')
