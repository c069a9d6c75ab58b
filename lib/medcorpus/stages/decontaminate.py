"""decontaminate: unique_documents overlapping a benchmark item -> contamination_hits, and deleted from
unique_documents (a Delta merge-delete on doc_id), so every later output is clean.

Every run checks every document of unique_documents: a benchmark added since the last run must be found in
documents an earlier run already passed.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import Ledger, Stage, is_removed, tag
from medcorpus.dedup import decontaminate as decon

log = logging.getLogger(__name__)


class Decontaminate(Stage):
    name = "decontaminate"
    help = "unique_documents overlapping benchmark test items -> contamination_hits (and removed)"
    inputs = ("unique_documents",)
    outputs = ("contamination_hits", "unique_documents")

    def pending(self) -> DataFrame:
        self.index = decon.load_index(self.ctx.spark, self.ctx.config.decontaminate)  # fails when absent
        return self.ctx.warehouse.read("unique_documents")

    def transform(self, pending: DataFrame) -> DataFrame:
        cfg = self.ctx.config.decontaminate
        self.hits = self.persist(decon.find_contamination(pending, self.index, cfg)
                                 .withColumn("run_id", F.lit(self.ctx.run_id)))
        bad = self.hits.select(F.col("item_id").alias("doc_id"), F.lit(True).alias("_hit")).distinct()
        flagged = pending.select("doc_id").join(bad, on="doc_id", how="left")
        return tag(flagged, F.when(F.col("_hit"), F.lit("removed")).otherwise(F.lit("kept")),
                   F.when(F.col("_hit"), F.lit("benchmark_overlap")))

    def write(self, tagged: DataFrame) -> int:
        wh = self.ctx.warehouse
        wh.merge_new_rows("contamination_hits", self.hits, stage=self.name)
        bad = tagged.filter(is_removed()).select("doc_id")
        if bad.isEmpty():
            return 0
        wh._commit_metadata(self.name)
        from delta.tables import DeltaTable

        (DeltaTable.forPath(wh.spark, wh.path("unique_documents")).alias("t")
         .merge(bad.alias("s"), "t.doc_id = s.doc_id").whenMatchedDelete().execute())
        return int(wh.last_operation_metrics("unique_documents").get("numTargetRowsDeleted", 0))

    def expected_written(self, ledger: Ledger) -> int:
        return ledger.removed  # the rows deleted from unique_documents

    def finish(self, ledger: Ledger) -> None:
        if ledger.total:
            for r in self.hits.groupBy("benchmark").agg(F.countDistinct("item_id").alias("n")).collect():
                log.info("decontaminate: %d documents overlap %s", r["n"], r["benchmark"])
        self.notes.append(f"{self.index.items} benchmark items from {decon.benchmarks_root(self.ctx.config.decontaminate)}")
