"""sft: the configured SFT sources (+ generated_qa) -> sft, a materialized view (overwritten whole each run).

Bad records are quarantined; rejected ones (shape, scores, ConFilter, benchmark overlap) removed.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import QUARANTINED, Ledger, Stage, is_kept, is_quarantined, tag, untagged
from medcorpus.datasets import confilter as cf_mod
from medcorpus.datasets import sft as sft_mod
from medcorpus.datasets.candidates import generated_candidates, quarantine_rows, redact_sft
from medcorpus.datasets.decontamination import contaminated_ids, flag_contaminated
from medcorpus.readers.formats import import_sources

log = logging.getLogger(__name__)


class Sft(Stage):
    name = "sft"
    help = "SFT sources (+ generated_qa) -> sft (Deita scores, ConFilter, decontamination)"
    inputs = ()
    outputs = ("sft", "quarantine")
    persist_pending = True

    def pending(self) -> DataFrame:
        candidates, skipped = import_sources(self.ctx.spark, self.ctx.config.datasets.sft_sources)
        if skipped:
            self.notes.append(f"skipped missing sources: {', '.join(skipped)}")
        generated = generated_candidates(self.ctx)
        if generated is not None:
            candidates = candidates.unionByName(generated)
            self.notes.append("with generated_qa rows")
        return redact_sft(candidates, self.ctx.config)

    def transform(self, pending: DataFrame) -> DataFrame:
        cfg = self.ctx.config.datasets
        errors = tag(pending.filter(F.col("error").isNotNull()), QUARANTINED, F.col("error"))
        scored = sft_mod.with_scores(pending.filter(F.col("error").isNull()), self.ctx.config.normalize)
        flagged = self.persist(sft_mod.with_reject_reason(confilter_scored(self.ctx, scored), cfg)
                               .withColumn("all_text", sft_mod.all_text()))
        self.flagged = flagged
        ids, note = contaminated_ids(self.ctx, flagged.filter(F.col("reject_reason").isNull()), "sample_id",
                                     ("all_text",), "sft")
        self.notes.append(note)
        reason = F.coalesce(F.col("reject_reason"), F.when(F.col("_contaminated"), F.lit("contaminated")))
        rows = flag_contaminated(flagged, ids, "sample_id")
        decided = tag(rows, F.when(reason.isNull(), F.lit("kept")).otherwise(F.lit("removed")), reason)
        return decided.drop("_contaminated").unionByName(errors, allowMissingColumns=True)

    def write(self, tagged: DataFrame) -> int:
        written = self.overwrite("sft", sft_mod.to_sft_rows(untagged(tagged.filter(is_kept())), self.ctx.run_id))
        errors = tagged.filter(is_quarantined())
        if not errors.isEmpty():
            self.quarantine(quarantine_rows(errors))
        return written

    def write_nothing(self) -> None:
        self.clear("sft")

    def finish(self, ledger: Ledger) -> None:
        if not ledger.total:
            return
        cf = self.flagged.filter(F.col("confilter").isNotNull()).agg(
            F.count(F.lit(1)).alias("n"), F.expr("percentile_approx(confilter, array(0.05, 0.5, 0.95))").alias("q")
        ).first()
        if cf and cf["n"]:
            self.notes.append(f"confilter scored {cf['n']} dialogues, CF p5/p50/p95 = "
                              + "/".join(f"{x:.3f}" for x in cf["q"]))


def confilter_scored(ctx, scored: DataFrame) -> DataFrame:  # type: ignore[no-untyped-def]
    """Train the n-gram LM on (a hash sample of) the corpus, score multi-turn rows, null elsewhere."""
    cfg = ctx.config.datasets
    # a seeded hash order picks the training sample: the same rows every run
    train = (
        scored.orderBy(F.xxhash64(F.lit(cfg.seed), "sample_id"), "sample_id")
        .limit(cfg.confilter_train_rows)
        .select(F.substring(sft_mod.all_text(), 1, cfg.confilter_train_chars).alias("text"))
    )
    counts = cf_mod.train_counts(train, cfg.confilter_ngram_order, cfg.confilter_min_count, cfg.confilter_max_ngrams)
    log.info("confilter: %d-gram model with %d n-grams", cfg.confilter_ngram_order, len(counts))
    bc = ctx.spark.sparkContext.broadcast(counts)
    multi = scored.filter(F.col("type") == "multi_turn")
    multi = cf_mod.score_dialogues(multi, bc, cfg.confilter_ngram_order, cfg.confilter_cache_weight,
                                   cfg.confilter_max_turn_chars)
    rest = scored.filter(F.col("type") != "multi_turn").withColumn("confilter", F.lit(None).cast("double"))
    return multi.unionByName(rest)
