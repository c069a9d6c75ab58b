"""The stage contract: declared tables, a pure transform that tags every row, and one skeleton.

A stage declares the tables it reads (``inputs``, the first one is its row source) and writes
(``outputs``, the first one is its main table: its Delta version goes into ``run_log``). Its
:meth:`Stage.transform` is pure: it returns every pending row once, tagged with an outcome
(``kept`` / ``removed`` / ``quarantined``) and, for the last two, a reason. :meth:`Stage.run` does the rest,
the same way for every stage:

1. checks that the inputs exist (else: which stage to run first),
2. counts the pending input rows (an action of its own, on the input, not on the transform's output),
3. persists the tagged rows once and builds the ledger from **one** aggregation over the tags,
4. lets the stage write its tables (:meth:`Stage.write` returns how many rows it wrote to the main table),
5. checks the ledger: rows in == rows tagged, and rows written == the rows the ledger says go there.
   No term is a remainder, so a transform that loses a row, or a write that drops one, fails the run.
6. writes the ``run_log`` row (the pipeline's validation gate runs after it).

This is the only place that writes ``run_log`` rows for stages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from medcorpus.core.context import RunContext
from medcorpus.core.errors import TableMissingError
from medcorpus.core.progress import SparkProgress
from medcorpus.core.runlog import ReconciliationError, StageReport, write_report

log = logging.getLogger(__name__)

OUTCOME = "_outcome"
REASON = "_reason"
KEPT, REMOVED, QUARANTINED = "kept", "removed", "quarantined"


# ---------------------------------------------------------------------------------------------------
# tags
# ---------------------------------------------------------------------------------------------------
def tag(df: DataFrame, outcome: Column | str, reason: Column | str | None = None) -> DataFrame:
    """``df`` with the outcome and reason columns (strings are literals)."""
    out = F.lit(outcome) if isinstance(outcome, str) else outcome
    why = F.lit(reason) if isinstance(reason, str) else (reason if reason is not None else F.lit(None))
    return df.withColumn(OUTCOME, out).withColumn(REASON, why.cast("string"))


def tag_by_reason(df: DataFrame, reason: Column, outcome: str = REMOVED) -> DataFrame:
    """Rows whose ``reason`` is null are kept; the others get ``outcome`` with that reason."""
    return tag(df, F.when(reason.isNull(), F.lit(KEPT)).otherwise(F.lit(outcome)), reason)


def is_kept() -> Column:
    return F.col(OUTCOME) == KEPT


def is_quarantined() -> Column:
    return F.col(OUTCOME) == QUARANTINED


def is_removed() -> Column:
    return F.col(OUTCOME) == REMOVED


def untagged(df: DataFrame) -> DataFrame:
    return df.drop(OUTCOME, REASON)


# ---------------------------------------------------------------------------------------------------
# the ledger
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ledger:
    """Row counts per (outcome, reason), from one aggregation over the tagged rows."""

    counts: dict[tuple[str, str | None], int] = field(default_factory=dict)

    @classmethod
    def of(cls, tagged: DataFrame) -> Ledger:
        rows = tagged.groupBy(OUTCOME, REASON).agg(F.count(F.lit(1)).alias("n")).collect()  # one row per reason
        unknown = sorted({r[OUTCOME] for r in rows} - {KEPT, REMOVED, QUARANTINED}, key=str)
        if unknown:
            raise ReconciliationError(f"rows tagged with unknown outcomes {unknown}")
        return cls({(r[OUTCOME], r[REASON]): int(r["n"]) for r in rows})

    def count(self, outcome: str) -> int:
        return sum(n for (o, _), n in self.counts.items() if o == outcome)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def kept(self) -> int:
        return self.count(KEPT)

    @property
    def removed(self) -> int:
        return self.count(REMOVED)

    @property
    def quarantined(self) -> int:
        return self.count(QUARANTINED)

    def reasons(self) -> dict[str, int]:
        """Removed and quarantined rows per reason (a missing reason is an error of the stage)."""
        out: dict[str, int] = {}
        for (outcome, reason), n in self.counts.items():
            if outcome == KEPT:
                continue
            if reason is None:
                raise ReconciliationError(f"{n} rows {outcome} without a reason")
            out[reason] = out.get(reason, 0) + n
        return out

    def check(self, stage: str, rows_in: int, written: int, expected_written: int) -> None:
        self.check_tagged(stage, rows_in)
        self.check_written(stage, written, expected_written)

    def check_tagged(self, stage: str, rows_in: int) -> None:
        """Every input row tagged exactly once (checked before anything is written)."""
        if rows_in != self.total:
            raise ReconciliationError(
                f"stage {stage}: {rows_in} input rows but {self.total} rows tagged "
                f"(kept={self.kept} removed={self.removed} quarantined={self.quarantined}): "
                f"the transform {'lost' if rows_in > self.total else 'invented'} {abs(rows_in - self.total)} rows"
            )

    def check_written(self, stage: str, written: int, expected_written: int) -> None:
        if written != expected_written:
            raise ReconciliationError(
                f"stage {stage}: wrote {written} rows to its main table, expected {expected_written} "
                "(a row was lost or duplicated between the transform and the write)"
            )

    def to_report(self, report: StageReport) -> StageReport:
        report.rows_in = self.total
        report.rows_out = self.kept
        report.rows_removed = self.removed
        report.rows_quarantined = self.quarantined
        report.removed_by_reason = {k: v for k, v in self.reasons().items() if v}
        return report


# ---------------------------------------------------------------------------------------------------
# the base
# ---------------------------------------------------------------------------------------------------
class StageInputMissing(TableMissingError):
    pass


#: every stage class, by name, in definition order (filled by ``Stage.__init_subclass__``)
REGISTRY: dict[str, type[Stage]] = {}


def producer_of(table: str) -> str | None:
    """The stage that creates ``table``: it writes it without reading it (None: written outside the stages)."""
    return next((name for name, cls in REGISTRY.items() if table in cls.outputs and table not in cls.inputs), None)


class Stage:
    """One stage: subclasses set the class attributes and implement :meth:`transform` and :meth:`write`."""

    name: ClassVar[str]
    help: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    #: stages this one runs after although it does not read their tables
    after: ClassVar[tuple[str, ...]] = ()
    #: part of ``medcorpus run`` (the LLM stages need an endpoint and are not)
    in_pipeline: ClassVar[bool] = True
    #: persist the pending rows before counting them (when reading them twice costs more than keeping them)
    persist_pending: ClassVar[bool] = False
    #: the run_log note when nothing was pending
    skip_note: ClassVar[str | None] = "no new input: skipped"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in REGISTRY and REGISTRY[cls.name].__qualname__ != cls.__qualname__:
                raise ValueError(f"two stages named {cls.name!r}: {REGISTRY[cls.name]} and {cls}")
            REGISTRY[cls.name] = cls

    def __init__(self, ctx: RunContext, **params: Any):
        self.ctx = ctx
        self.params = params
        self.notes: list[str] = []
        self._persisted: list[DataFrame] = []

    def persist(self, df: DataFrame) -> DataFrame:
        """Persist an intermediate frame of the transform; the base unpersists it after the write."""
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        self._persisted.append(df)
        return df

    # -- what a stage declares -----------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """The stage's own command-line arguments (``medcorpus <stage> ...``)."""

    @classmethod
    def params_from(cls, args: Any) -> dict[str, Any]:
        """The stage's parameters from parsed command-line arguments."""
        return {}

    def pending(self) -> DataFrame:
        """Rows of the first input not yet in the main output nor quarantined by this stage."""
        return pending_rows(self.ctx, self.inputs[0], self.outputs[0], self.name)

    def transform(self, pending: DataFrame) -> DataFrame:
        raise NotImplementedError

    def write(self, tagged: DataFrame) -> int:
        """Write the outputs from the tagged rows; return the rows written to the main table."""
        raise NotImplementedError

    def expected_written(self, ledger: Ledger) -> int:
        """Rows the main table must have received: the kept rows, unless a stage says otherwise."""
        return ledger.kept

    def write_nothing(self) -> None:
        """No pending input: the outputs exist (empty) and the run shows in the main table's history."""
        for name in self.outputs:
            self.ctx.warehouse.ensure(name)

    def finish(self, ledger: Ledger) -> None:
        """After the write and the ledger check: stage-specific notes and logs."""

    # -- the skeleton ----------------------------------------------------------------------------------
    def check_inputs(self) -> None:
        for name in self.inputs:
            if not self.ctx.warehouse.exists(name):
                first = producer_of(name)
                raise StageInputMissing(
                    f"stage {self.name} reads table '{name}', which does not exist in {self.ctx.warehouse.root}; "
                    + (f"run `medcorpus {first}` first" if first else "it is written outside the pipeline")
                )

    def count_input(self, pending: DataFrame) -> int:
        return pending.count()

    def run(self) -> StageReport:
        with SparkProgress(self.ctx.spark, self.name, every=self.ctx.config.spark.progress_seconds):
            return self._run()

    def _run(self) -> StageReport:
        report = StageReport(self.name)
        self.check_inputs()
        pending = self.pending()
        if self.persist_pending:
            pending = pending.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            rows_in = self.count_input(pending)
            log.info("%s: %d pending rows", self.name, rows_in)
            if rows_in == 0:
                ledger = Ledger()
                self.write_nothing()
                if self.skip_note:
                    self.notes.insert(0, self.skip_note)
                written = expected = 0
            else:
                tagged = self.transform(pending).persist(StorageLevel.MEMORY_AND_DISK)
                try:
                    ledger = Ledger.of(tagged)
                    ledger.check_tagged(self.name, rows_in)  # a lost row fails the run before any write
                    log.info("%s: ledger kept=%d removed=%d quarantined=%d; writing %s", self.name, ledger.kept,
                             ledger.removed, ledger.quarantined, ", ".join(self.outputs))
                    written = self.write(tagged) if ledger.total else self._write_empty()
                    expected = self.expected_written(ledger)
                finally:
                    tagged.unpersist()
            ledger.check_written(self.name, written, expected)
            self.finish(ledger)
        finally:
            for frame in self._persisted:
                frame.unpersist()
            if self.persist_pending:
                pending.unpersist()
        ledger.to_report(report)
        report.table_version = self.ctx.warehouse.version(self.outputs[0]) if self.outputs else None
        report.note = "; ".join(n for n in self.notes if n) or None
        write_report(self.ctx.spark, self.ctx.warehouse, report.finish())
        return report

    def _write_empty(self) -> int:
        self.write_nothing()
        return 0

    # -- helpers for writes ----------------------------------------------------------------------------
    def merge(self, table: str, df: DataFrame) -> int:
        """Insert new rows on the table's key; the rows inserted (Delta's metrics)."""
        metrics = self.ctx.warehouse.merge_new_rows(table, df, stage=self.name)
        return int(metrics.get("numTargetRowsInserted", 0))

    def overwrite(self, table: str, df: DataFrame) -> int:
        self.ctx.warehouse.overwrite_rows(table, df, stage=self.name)
        return int(self.ctx.warehouse.last_operation_metrics(table).get("numOutputRows", 0))

    def clear(self, table: str) -> None:
        """Overwrite ``table`` with no rows (a materialized view whose inputs select nothing)."""
        from medcorpus.core.warehouse import table_spec

        empty = self.ctx.spark.createDataFrame([], table_spec(table).schema)
        self.ctx.warehouse.overwrite_rows(table, empty, stage=self.name)

    def quarantine(self, rows: DataFrame) -> None:
        """(doc_id, source, source_file, position, reason, detail, raw) rows into ``quarantine``."""
        self.ctx.warehouse.merge_new_rows("quarantine", stage_quarantine(rows, self.name, self.ctx.run_id), self.name)


def pending_rows(ctx: RunContext, input_table: str, output_table: str, stage: str, key: str = "doc_id") -> DataFrame:
    """Rows of ``input_table`` not yet in ``output_table`` nor quarantined by ``stage`` (incremental runs)."""
    source = ctx.warehouse.read(input_table)
    done = ctx.warehouse.read_or_empty(output_table).select(key)
    quarantined = (
        ctx.warehouse.read_or_empty("quarantine")
        .filter((F.col("stage") == stage) & F.col("doc_id").isNotNull())
        .select(F.col("doc_id").alias(key))
    )
    return source.join(done.unionByName(quarantined), on=key, how="left_anti")


def stage_quarantine(rows: DataFrame, stage: str, run_id: str) -> DataFrame:
    """Shape (doc_id, source, source_file, position, reason, detail, raw) rows of any stage as quarantine rows."""
    qid = F.substring(F.sha2(F.concat_ws("#", F.lit(stage), F.col("doc_id"), F.col("reason")), 256), 1, 32)
    return (
        rows.withColumn("quarantine_id", qid)
        .withColumn("run_id", F.lit(run_id))
        .withColumn("stage", F.lit(stage))
        .withColumn("quarantined_at", F.current_timestamp())
    )
