"""Stage runners: read the input tables, call the pure transforms, write the output tables, log the run.

This is the only library layer that touches tables (through :class:`~medcorpus.core.warehouse.Warehouse`);
the transforms it calls take and return DataFrames.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from medcorpus.classify import scoring as _classify
from medcorpus.filters import rules as _filters
from medcorpus.readers import ingest as ingest_mod
from medcorpus.text import normalize as normalize_mod
from medcorpus.datasets import stages as _datasets
from medcorpus.dedup import decontaminate as _decontaminate
from medcorpus.dedup import minhash as _dedup
from medcorpus.datasets import release as _release
from medcorpus.core.config import Config
from medcorpus.core.errors import InputError
from medcorpus.text.pii import Policy
from medcorpus.core.warehouse import Warehouse
from medcorpus.core.runlog import StageReport, write_report

log = logging.getLogger(__name__)


def new_run_id() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class RunContext:
    spark: SparkSession
    config: Config
    warehouse: Warehouse

    @property
    def run_id(self) -> str:
        return self.warehouse.run_id

    @classmethod
    def create(cls, spark: SparkSession, config: Config) -> RunContext:
        run_id = config.run_id or new_run_id()
        return cls(spark, config, Warehouse(spark, config.warehouse, run_id=run_id, config_hash=config.hash()))


# ---------------------------------------------------------------------------------------------------
# ingest
# ---------------------------------------------------------------------------------------------------
def run_ingest(ctx: RunContext, sources: list[str], forced_format: str | None = None) -> StageReport:
    report = StageReport("ingest")
    limits = ingest_mod.reader_limits(ctx.config)
    files: list[ingest_mod.SourceFile] = []
    for source in sources:
        files.extend(ingest_mod.list_source_files(ctx.spark, source, limits, forced_format))
    if not files:
        raise InputError(f"no files found under {', '.join(sources)}")

    records = ingest_mod.read_records(ctx.spark, files, limits, ctx.config.ingest.files_per_partition,
                                      Policy.of(ctx.config))
    records = ingest_mod.with_doc_ids(records).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        outcome = {
            (r["status"], r["reason"]): int(r["n"])
            for r in records.groupBy("status", "reason").agg(F.count(F.lit(1)).alias("n")).collect()
        }
        report.rows_in = sum(outcome.values())
        ok_rows = sum(n for (status, _), n in outcome.items() if status == "ok")
        pii = {
            r["key"]: int(r["n"])
            for r in records.select(F.explode(F.from_json("pii", "map<string,int>")))
            .groupBy("key").agg(F.sum("value").alias("n")).collect()
        }
        metrics = ctx.warehouse.merge_new_rows(
            "raw_documents", ingest_mod.documents_of(records, ctx.run_id), stage="ingest"
        )
        inserted = metrics.get("numTargetRowsInserted", 0)
        ctx.warehouse.merge_new_rows(
            "quarantine", ingest_mod.quarantine_of(records, "ingest", ctx.run_id), stage="ingest"
        )
    finally:
        records.unpersist()

    reasons: dict[str, int] = {}
    for (status, reason), n in outcome.items():
        if status != "ok":
            reasons[reason or status] = reasons.get(reason or status, 0) + n
    if ok_rows - inserted:
        reasons["already_ingested"] = ok_rows - inserted
    report.rows_out = inserted
    report.rows_quarantined = sum(n for (status, _), n in outcome.items() if status == "quarantine")
    report.rows_removed = report.rows_in - report.rows_out - report.rows_quarantined
    report.removed_by_reason = reasons
    report.table_version = ctx.warehouse.version("raw_documents")
    report.note = "pii redacted: " + (", ".join(f"{k}={v}" for k, v in sorted(pii.items())) or "none")
    if inserted == 0:
        report.note = "no new records: every record was already ingested or quarantined; " + report.note
    write_report(ctx.spark, ctx.warehouse, report.finish())
    return report


# ---------------------------------------------------------------------------------------------------
# normalize
# ---------------------------------------------------------------------------------------------------
def pending_for_stage(ctx: RunContext, input_table: str, output_table: str, stage: str) -> DataFrame:
    """Rows of ``input_table`` not yet in ``output_table`` nor quarantined by ``stage`` (incremental runs)."""
    source = ctx.warehouse.read(input_table)
    done = ctx.warehouse.read_or_empty(output_table).select("doc_id")
    quarantined = (
        ctx.warehouse.read_or_empty("quarantine")
        .filter((F.col("stage") == stage) & F.col("doc_id").isNotNull())
        .select("doc_id")
    )
    return source.join(done.unionByName(quarantined), on="doc_id", how="left_anti")


def run_normalize(ctx: RunContext) -> StageReport:
    report = StageReport("normalize")
    pending = pending_for_stage(ctx, "raw_documents", "documents", "normalize")
    normalized = normalize_mod.normalize_documents(pending, ctx.config.normalize, ctx.run_id, ctx.config).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        empty = normalize_mod.is_empty_text()
        counts = {
            bool(r["empty"]): int(r["n"])
            for r in normalized.groupBy(empty.alias("empty")).agg(F.count(F.lit(1)).alias("n")).collect()
        }
        report.rows_in = sum(counts.values())
        if report.rows_in:
            metrics = ctx.warehouse.merge_new_rows("documents", normalized.filter(~empty), stage="normalize")
            report.rows_out = metrics.get("numTargetRowsInserted", 0)
            quarantined = (
                normalized.filter(empty)
                .select(
                    "doc_id",
                    "source",
                    "source_file",
                    F.lit(None).cast("long").alias("position"),
                    F.lit("empty_after_normalize").alias("reason"),
                    F.lit("text is empty after removing control/zero-width characters and whitespace").alias("detail"),
                    F.lit(None).cast("string").alias("raw"),
                )
            )
            ctx.warehouse.merge_new_rows("quarantine", stage_quarantine(quarantined, "normalize", ctx.run_id), "normalize")
        else:
            ctx.warehouse.ensure("documents")
    finally:
        normalized.unpersist()
    report.rows_quarantined = counts.get(True, 0)
    report.rows_removed = report.rows_in - report.rows_out - report.rows_quarantined
    report.removed_by_reason = {k: v for k, v in {
        "empty_after_normalize": report.rows_quarantined,
        "already_normalized": report.rows_removed,
    }.items() if v}
    report.table_version = ctx.warehouse.version("documents")
    if report.rows_in == 0:
        report.note = "no new input: skipped"
    write_report(ctx.spark, ctx.warehouse, report.finish())
    return report


def stage_quarantine(rows: DataFrame, stage: str, run_id: str) -> DataFrame:
    """Shape (doc_id, source, source_file, position, reason, detail, raw) rows of any stage as quarantine rows."""
    qid = F.substring(F.sha2(F.concat_ws("#", F.lit(stage), F.col("doc_id"), F.col("reason")), 256), 1, 32)
    return (
        rows.withColumn("quarantine_id", qid)
        .withColumn("run_id", F.lit(run_id))
        .withColumn("stage", F.lit(stage))
        .withColumn("quarantined_at", F.current_timestamp())
    )


# ---------------------------------------------------------------------------------------------------
# the pipeline: stages in order; later issues append theirs
# ---------------------------------------------------------------------------------------------------
StageFn = Callable[[RunContext], StageReport]

PIPELINE_STAGES: list[tuple[str, StageFn]] = [
    ("normalize", run_normalize),
    ("filter", _filters.run_filter),
    ("classify", _classify.run_classify),
    ("dedup", _dedup.run_dedup),
    ("decontaminate", _decontaminate.run_decontaminate),
    ("sft", _datasets.run_sft),
    ("preference", _datasets.run_preference),
    ("pretrain", _datasets.run_pretrain),
    ("release", _release.run_auto_release),
]


def stage_names() -> list[str]:
    return ["ingest", *(name for name, _ in PIPELINE_STAGES)]


def check_until(until: str | None) -> None:
    """``--until`` must name a pipeline stage (checked before Spark starts)."""
    if until is not None and until not in stage_names():
        raise InputError(f"unknown stage {until!r} for --until; stages: {', '.join(stage_names())}")


def run_pipeline(ctx: RunContext, sources: list[str], until: str | None = None) -> list[StageReport]:
    """ingest -> normalize -> every later registered stage, stopping after ``until`` when given."""
    check_until(until)
    from medcorpus.quality.validation import StageGate  # GX: what a stage wrote is validated before the next runs

    gate = StageGate(ctx)
    reports = [run_ingest(ctx, sources)]
    gate.after("ingest")
    if until == "ingest":
        gate.finish()
        return reports
    for name, fn in PIPELINE_STAGES:
        log.info("stage %s ...", name)
        reports.append(fn(ctx))
        gate.after(name)
        if name == until:
            break
    gate.finish()
    return reports
