"""Stage accounting: one ``run_log`` row per stage per run.

Every stage reports rows_in = rows_out + rows_quarantined + rows_removed; ``StageReport.check`` refuses
a report that does not reconcile, so a stage cannot lose rows silently.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from medcorpus.core.warehouse import Warehouse, table_spec

log = logging.getLogger(__name__)


class ReconciliationError(AssertionError):
    pass


@dataclass
class StageReport:
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    rows_removed: int = 0
    removed_by_reason: dict[str, int] = field(default_factory=dict)
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    seconds: float = 0.0
    table_version: int | None = None
    note: str | None = None
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def finish(self) -> StageReport:
        self.seconds = round(time.perf_counter() - self._t0, 3)
        return self

    def check(self) -> None:
        if self.rows_in != self.rows_out + self.rows_quarantined + self.rows_removed:
            raise ReconciliationError(
                f"stage {self.stage}: rows_in={self.rows_in} != rows_out={self.rows_out} + "
                f"rows_quarantined={self.rows_quarantined} + rows_removed={self.rows_removed}"
            )
        by_reason = sum(self.removed_by_reason.values())
        if by_reason != self.rows_quarantined + self.rows_removed:
            raise ReconciliationError(
                f"stage {self.stage}: removed_by_reason sums to {by_reason}, expected "
                f"{self.rows_quarantined + self.rows_removed}"
            )

    def summary(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.removed_by_reason.items())) or "-"
        return (
            f"[{self.stage}] in={self.rows_in:,} out={self.rows_out:,} quarantined={self.rows_quarantined:,} "
            f"removed={self.rows_removed:,} ({reasons}) in {self.seconds:.1f}s"
            + (f" — {self.note}" if self.note else "")
        )


def write_report(spark: SparkSession, warehouse: Warehouse, report: StageReport) -> None:
    report.check()
    schema = table_spec("run_log").schema
    row = (
        warehouse.run_id,
        report.stage,
        report.rows_in,
        report.rows_out,
        report.rows_quarantined,
        report.rows_removed,
        {k: int(v) for k, v in report.removed_by_reason.items()},
        float(report.seconds),
        report.started_at.replace(tzinfo=None),
        warehouse.config_hash,
        report.table_version,
        report.note,
    )
    warehouse.append_rows("run_log", spark.createDataFrame([row], schema), stage=report.stage)
    log.info(report.summary())


def count_by(df: DataFrame, column: str) -> dict[str, int]:
    """Counts per value of one column in a single aggregation (small result: one row per reason)."""
    return {
        (r[column] if r[column] is not None else "null"): int(r["n"])
        for r in df.groupBy(column).agg(F.count(F.lit(1)).alias("n")).collect()
    }
