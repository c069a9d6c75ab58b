"""The stage contract: one registry, a DAG of declared tables, a ledger counted from the rows."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from medcorpus.cli import build_parser
from medcorpus.core.runlog import ReconciliationError
from medcorpus.core.stage import KEPT, REGISTRY, Ledger, Stage, StageInputMissing, tag
from medcorpus.stages import STAGE_CLASSES, STAGES, job_script, pipeline_stages, run_stage, stage_order
from medcorpus.stages.normalize import Normalize

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "lib"


# ---------------------------------------------------------------------------------------------------
# registry, order, CLI, jobs
# ---------------------------------------------------------------------------------------------------
def test_the_pipeline_order_comes_from_the_declared_tables():
    assert pipeline_stages() == ["ingest", "normalize", "filter", "classify", "dedup", "decontaminate", "sft",
                                 "preference", "pretrain", "release"]
    order = stage_order(STAGE_CLASSES)
    for cls in STAGE_CLASSES:  # every stage runs after the writers of the tables it reads
        for other in STAGE_CLASSES:
            if other is not cls and set(cls.inputs) & set(other.outputs):
                assert order.index(other.name) < order.index(cls.name), (other.name, cls.name)


def test_a_cycle_in_the_declared_tables_is_refused():
    class A(Stage):
        inputs, outputs = ("t_b",), ("t_a",)

    class B(Stage):
        inputs, outputs = ("t_a",), ("t_b",)

    A.name, B.name = "cyc-a", "cyc-b"  # not registered: set after class creation
    with pytest.raises(ValueError, match="cycle"):
        stage_order((A, B))


def test_every_stage_is_a_cli_subcommand_with_its_help_and_a_job():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, cls in STAGES.items():
        assert name in sub.choices, name
        assert sub.choices[name].description == cls.help
        job = REPO / "jobs" / f"{name.replace('-', '_')}.py"
        assert job.read_text(encoding="utf-8") == job_script(name), f"{job} is stale: python -m medcorpus.stages jobs"
    assert set(REGISTRY) == set(STAGES)


def _module_imports(path: Path, package: str) -> set[str]:
    """medcorpus modules imported at module level (not inside functions or TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medcorpus"):
            base = node.module
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                out.add(candidate if (LIB / (candidate.replace(".", "/") + ".py")).exists()
                        or (LIB / candidate.replace(".", "/")).is_dir() else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("medcorpus"))
    return out


def test_no_import_cycle_in_lib():
    modules = {}
    for path in (LIB / "medcorpus").rglob("*.py"):
        name = ".".join(path.relative_to(LIB).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {m: {i for i in _module_imports(p, m) if i in modules and i != m} for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


# ---------------------------------------------------------------------------------------------------
# the ledger
# ---------------------------------------------------------------------------------------------------
def test_the_ledger_comes_from_one_aggregation_over_the_tags(spark):
    rows = spark.createDataFrame([(1, None), (2, "short"), (3, "short"), (4, None)], "id int, why string")
    tagged = tag(rows, F.when(F.col("why").isNull(), F.lit(KEPT)).otherwise(F.lit("removed")), F.col("why"))
    ledger = Ledger.of(tagged)
    assert (ledger.total, ledger.kept, ledger.removed, ledger.quarantined) == (4, 2, 2, 0)
    assert ledger.reasons() == {"short": 2}
    ledger.check("t", rows_in=4, written=2, expected_written=2)
    with pytest.raises(ReconciliationError, match="lost 1 rows"):
        ledger.check("t", rows_in=5, written=2, expected_written=2)
    with pytest.raises(ReconciliationError, match="wrote 1 rows"):
        ledger.check("t", rows_in=4, written=1, expected_written=2)
    with pytest.raises(ReconciliationError, match="without a reason"):
        Ledger.of(tag(rows, "removed")).reasons()


def _raw_documents(ctx, n: int) -> None:
    from tests.conftest import as_table

    df = ctx.spark.createDataFrame([(f"d{i}", f"第{i}篇文档：高血压患者应低盐饮食。") for i in range(n)],
                                   "doc_id string, text string")
    ctx.warehouse.merge_new_rows("raw_documents", as_table(df.withColumn("byte_size", F.length("text")), "raw_documents"),
                                 "ingest")


def test_a_transform_that_drops_a_row_silently_fails_its_run(ctx):
    _raw_documents(ctx, 5)

    class LossyNormalize(Normalize):
        def transform(self, pending):
            return super().transform(pending).filter(F.col("doc_id") != "d3")  # a silent drop

    with pytest.raises(ReconciliationError, match="5 input rows but 4 rows tagged"):
        LossyNormalize(ctx).run()
    logged = ctx.warehouse.read_or_empty("run_log").filter(F.col("stage") == "normalize").count()
    assert logged == 0  # a run whose rows do not reconcile writes no run_log row
    assert ctx.warehouse.read_or_empty("documents").count() == 0  # nor any output

    class LossyWrite(Normalize):
        def write(self, tagged):
            return super().write(tagged.filter(F.col("doc_id") != "d1"))

    with pytest.raises(ReconciliationError, match="wrote 4 rows to its main table, expected 5"):
        LossyWrite(ctx).run()

    assert not ctx.warehouse.read("documents").filter(F.col("doc_id") == "d1").count()
    report = run_stage(ctx, "normalize")  # the honest stage: only d1 is still pending
    assert (report.rows_in, report.rows_out) == (1, 1)
    assert ctx.warehouse.read("documents").count() == 5


def test_a_stage_whose_input_is_absent_names_the_stage_to_run_first(ctx):
    with pytest.raises(StageInputMissing, match=r"reads table 'clean_documents'.*run `medcorpus filter` first"):
        run_stage(ctx, "classify")
    with pytest.raises(StageInputMissing, match=r"run `medcorpus normalize` first"):
        run_stage(ctx, "filter")


def test_decontamination_of_sft_fails_without_a_benchmark_index_unless_turned_off(spark, make_config, tmp_path):
    from medcorpus.core.context import RunContext
    from medcorpus.datasets.decontamination import DecontaminationUnavailable, contaminated_ids

    df = spark.createDataFrame([("s1", "高血压的一线用药是什么？")], "sample_id string, all_text string")
    missing = RunContext.create(spark, make_config(f"decontaminate.benchmarks_dir={tmp_path / 'none'}"))
    with pytest.raises(DecontaminationUnavailable, match="datasets.decontaminate=false"):
        contaminated_ids(missing, df, "sample_id", ("all_text",), "sft")
    off = RunContext.create(spark, make_config(f"decontaminate.benchmarks_dir={tmp_path / 'none'}",
                                               "datasets.decontaminate=false"))
    ids, note = contaminated_ids(off, df, "sample_id", ("all_text",), "sft")
    assert ids is None and "off" in note


def test_run_log_rows_carry_the_ledger(ctx):
    _raw_documents(ctx, 3)
    report = run_stage(ctx, "normalize")
    row = ctx.warehouse.read("run_log").filter(F.col("stage") == "normalize").first()
    assert (row["rows_in"], row["rows_out"], row["rows_quarantined"], row["rows_removed"]) == (3, 3, 0, 0)
    assert report.table_version == ctx.warehouse.version("documents")
    assert json.loads(json.dumps(row["removed_by_reason"])) == {}
