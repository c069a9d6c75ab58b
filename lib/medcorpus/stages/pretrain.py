"""pretrain: unique_documents (+ sft) -> pretrain, one sample per configured mixture (token shares per
component and language); a materialized view, overwritten whole each run.

Every mixture sees the whole pool: the ledger counts (mixture, row) pairs, each kept (sampled) or removed
with ``<mixture>:<reason>``.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import Ledger, Stage, StageInputMissing, is_kept, tag, untagged
from medcorpus.datasets import pretrain as pt_mod

log = logging.getLogger(__name__)


def needs_sft(mixtures: dict) -> bool:  # type: ignore[type-arg]
    return any("sft" in mix.components for mix in mixtures.values())


def mixture_pool(pool: DataFrame, mix) -> DataFrame:  # type: ignore[no-untyped-def]
    """The rows a mixture chooses from: documents, plus SFT text when it has an sft component."""
    return pool if "sft" in mix.components else pool.filter(F.col("component").isNull() | (F.col("component") != "sft"))


def tag_mixture(pool: DataFrame, name: str, mix, seed: int) -> tuple[DataFrame, pt_mod.MixtureResult, DataFrame]:  # type: ignore[no-untyped-def]
    """One mixture: eligibility, plan, deterministic sample, tolerance check -> every pool row tagged."""
    cutoffs = pt_mod.quality_cutoffs(pool, mix)
    if mix.medical_top_fraction < 1.0:
        log.info("mixture %s: top %.0f%% of medical documents per language -> quality_score >= %s", name,
                 100 * mix.medical_top_fraction, ", ".join(f"{k}: {v:.3f}" for k, v in sorted(cutoffs.items())))
    flagged = pt_mod.with_eligibility(pool, mix, cutoffs)
    eligible = flagged.filter(F.col("reason").isNull())
    tokens = {(r["component"], r["lang"]): int(r["t"] or 0)
              for r in eligible.groupBy("component", "lang").agg(F.sum("token_estimate").alias("t")).collect()}
    plan = pt_mod.plan_mixture(name, mix, tokens)
    sampled = pt_mod.sample_cells(eligible, plan, seed).persist()
    achieved = {
        (r["component"], r["lang"]): int(r["t"] or 0)
        for r in sampled.filter("sampled").groupBy("component", "lang").agg(F.sum("token_estimate").alias("t")).collect()
    }
    result = pt_mod.MixtureResult(name, achieved, pt_mod.normalized(mix.components), pt_mod.normalized(mix.languages))
    log.info("mixture %s", result.summary())
    try:
        pt_mod.check_tolerance(result, mix.tolerance, plan)
    except pt_mod.MixtureError:
        sampled.unpersist()
        raise
    chosen = tag(sampled, F.when(F.col("sampled"), F.lit("kept")).otherwise(F.lit("removed")),
                 F.when(~F.col("sampled"), F.lit(f"{name}:not_sampled")))
    rejected = tag(flagged.filter(F.col("reason").isNotNull()), "removed", F.concat(F.lit(f"{name}:"), F.col("reason")))
    rows = chosen.drop("sampled").unionByName(rejected, allowMissingColumns=True)
    return rows.drop("reason").withColumn("mixture", F.lit(name)), result, sampled


class Pretrain(Stage):
    name = "pretrain"
    help = "unique_documents (+ sft) -> pretrain (token-share mixtures, e.g. 19:1 medical:general)"
    inputs = ("unique_documents",)
    outputs = ("pretrain",)
    after = ("sft", "preference")  # reads sft when a mixture has an sft component
    persist_pending = True

    def check_inputs(self) -> None:
        super().check_inputs()
        if needs_sft(self.ctx.config.datasets.mixtures) and not self.ctx.warehouse.exists("sft"):
            raise StageInputMissing("stage pretrain: a mixture has an sft component and table 'sft' does not "
                                    "exist; run `medcorpus sft` first")

    def pending(self) -> DataFrame:
        cfg = self.ctx.config.datasets
        for name, mix in cfg.mixtures.items():
            pt_mod.validate_mixture(name, mix)
        pool, notes = pt_mod.document_pool(self.ctx.warehouse.read("unique_documents"))
        self.notes.extend(notes)
        for n in notes:
            log.info("pretrain: %s", n)
        if needs_sft(cfg.mixtures):
            pool = pool.unionByName(pt_mod.sft_pool(self.ctx.warehouse.read("sft")))
        return pool

    def count_input(self, pending: DataFrame) -> int:
        """Each mixture sees its pool: the input is counted once per mixture."""
        return sum(mixture_pool(pending, mix).count() for mix in self.ctx.config.datasets.mixtures.values())

    def transform(self, pending: DataFrame) -> DataFrame:
        cfg = self.ctx.config.datasets
        parts, self.summaries = [], []
        for name, mix in cfg.mixtures.items():
            rows, result, sampled = tag_mixture(mixture_pool(pending, mix), name, mix, cfg.seed)
            self._persisted.append(sampled)
            parts.append(rows)
            self.summaries.append(result.summary())
        combined = parts[0]
        for p in parts[1:]:
            combined = combined.unionByName(p)
        return combined

    def write(self, tagged: DataFrame) -> int:
        return self.overwrite("pretrain", untagged(tagged.filter(is_kept())).withColumn("run_id", F.lit(self.ctx.run_id)))

    def write_nothing(self) -> None:
        self.clear("pretrain")

    def finish(self, ledger: Ledger) -> None:
        self.notes.extend(getattr(self, "summaries", []))
