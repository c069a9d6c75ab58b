"""dedup: scored_documents -> dedup_clusters + unique_documents (exact and MinHash LSH near duplicates).

Incremental: documents already in dedup_clusters are not reprocessed; the new batch is compared with itself
and with the kept documents of earlier runs through their stored signatures.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import Ledger, Stage, is_kept, tag
from medcorpus.dedup import minhash

KEEPER_REASONS = ("keeper", "unique")


class Dedup(Stage):
    name = "dedup"
    help = "scored_documents -> dedup_clusters + unique_documents (exact + MinHash LSH)"
    inputs = ("scored_documents",)
    outputs = ("dedup_clusters", "unique_documents", "dedup_signatures", "dedup_stats")
    persist_pending = True

    def pending(self) -> DataFrame:
        minhash.check_banding(self.ctx.config.dedup)
        docs = self.ctx.warehouse.read(self.inputs[0])
        return docs.join(self.ctx.warehouse.read_or_empty("dedup_clusters").select("doc_id"), on="doc_id",
                         how="left_anti")

    def transform(self, pending: DataFrame) -> DataFrame:
        cfg, wh = self.ctx.config.dedup, self.ctx.warehouse
        self.docs = pending
        params = minhash.signature_params(cfg)
        kept = wh.read_or_empty("unique_documents").select("doc_id", "text", "lang")
        previous = (
            wh.read_or_empty("dedup_signatures")
            .filter(F.col("signature_params") == params)
            .join(kept, on="doc_id", how="inner")
            # a run killed after writing this batch's signatures and keepers (but before dedup_clusters)
            # left them behind: the batch is redone from scratch, never compared with itself
            .join(pending.select("doc_id"), on="doc_id", how="left_anti")
        )
        self.notes.append(minhash.previous_note(previous))
        result = minhash.dedup_documents(pending, cfg, previous)
        clusters = minhash.mark_singletons(result.assignments).join(
            pending.select("doc_id", F.col("source")), on="doc_id", how="inner"
        ).withColumn("dedup_run_id", F.lit(self.ctx.run_id))
        # materialised before any write: the computation reads dedup_signatures/unique_documents, which
        # the writes change
        self.signatures = minhash._checkpoint(
            result.signatures.withColumn("signature_params", F.lit(params))
            .withColumn("dedup_run_id", F.lit(self.ctx.run_id))
        )
        self.giant_buckets = result.giant_buckets
        keep = F.col("reason").isin(*KEEPER_REASONS)
        return tag(minhash._checkpoint(clusters), F.when(keep, F.lit("kept")).otherwise(F.lit("removed")),
                   F.when(~keep, F.col("reason")))

    def write(self, tagged: DataFrame) -> int:
        wh = self.ctx.warehouse
        clusters = tagged.drop("_outcome", "_reason")
        # dedup_clusters is written last: its rows mark the batch done, so a run killed between these
        # commits reprocesses the batch, and the merges (on the table keys) add only what is missing
        wh.merge_new_rows("dedup_signatures", self.signatures, stage=self.name)
        keepers = (
            minhash.with_optional_columns(self.docs, wh)
            .join(tagged.filter(is_kept()).select("doc_id", "cluster_size"), on="doc_id", how="inner")
            .withColumn("dedup_run_id", F.lit(self.ctx.run_id))
        )
        # keepers a killed run already wrote are counted from the rows, not assumed
        present = keepers.join(wh.read_or_empty("unique_documents").select("doc_id"), "doc_id", "left_semi").count()
        inserted = self.merge("unique_documents", keepers)
        stats = minhash.dedup_stats(clusters, self.docs.select("doc_id", "text"), self.giant_buckets,
                                    self.ctx.config.dedup).withColumn("run_id", F.lit(self.ctx.run_id))
        wh.merge_new_rows("dedup_stats", stats, stage=self.name)
        wh.merge_new_rows("dedup_clusters", clusters, stage=self.name)
        minhash._log_stats(stats)
        return inserted + present

    def write_nothing(self) -> None:
        super().write_nothing()
        self.ctx.warehouse.mark_run("dedup_clusters", self.name)

    def finish(self, ledger: Ledger) -> None:
        self.notes.insert(0, f"input {self.inputs[0]}")
