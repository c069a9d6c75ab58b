"""Stage runners of the dataset tables: ``sft``, ``preference``, ``pretrain``.

The only layer here that touches tables (through ``ctx.warehouse``); the transforms live in
``sft_import``, ``sft``, ``confilter``, ``preference`` and ``pretrain``. Each dataset table is a
materialized view of its inputs and the config: a run overwrites it whole (same rows for the same inputs),
so a changed threshold removes what it no longer selects, and Delta keeps every earlier version for the
releases that point at it.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.datasets import confilter as cf_mod
from medcorpus.datasets import preference as pref_mod
from medcorpus.datasets import pretrain as pt_mod
from medcorpus.datasets import sft as sft_mod
from medcorpus.core.errors import MedcorpusError, TableMissingError
from medcorpus.text.pii import redact_columns, redact_struct_arrays
from medcorpus.core.warehouse import table_spec
from medcorpus.core.runlog import StageReport, count_by, write_report
from medcorpus.readers.formats import RAW_CHARS, import_sources

log = logging.getLogger(__name__)

DOCUMENT_TABLES = ("unique_documents", "scored_documents", "clean_documents", "documents")

# The text of SFT candidates and preference pairs that the PII policy (medcorpus.text.pii) covers.
SFT_TEXT_COLUMNS = ("question", "answer", "explanation", "raw")
SFT_TEXT_ARRAYS = {"messages": ("content",), "options": ("text",), "responses": ("content",)}
PREFERENCE_TEXT_COLUMNS = ("prompt", "chosen", "rejected")


def redact_sft(candidates: DataFrame, config: Any) -> DataFrame:
    """SFT candidates with every text field PII-redacted: messages, options, responses, question, answer,
    explanation and the raw payload of records the importer rejected (quarantine)."""
    return redact_struct_arrays(redact_columns(candidates, SFT_TEXT_COLUMNS, config), SFT_TEXT_ARRAYS, config)


def _table_exists(ctx: Any, name: str) -> bool:
    try:
        table_spec(name)
    except KeyError:
        return False  # not registered yet (its stage is not in this checkout)
    return bool(ctx.warehouse.exists(name))


def _registered(name: str) -> bool:
    try:
        table_spec(name)
    except KeyError:
        return False
    return True


def newest_document_table(ctx: Any) -> str:
    """unique_documents > scored_documents > clean_documents > documents: the first that exists."""
    for name in DOCUMENT_TABLES:
        if _table_exists(ctx, name):
            return name
    raise TableMissingError("no document table exists (documents ... unique_documents); run ingest and normalize")


# ---------------------------------------------------------------------------------------------------
# decontamination (lib/medcorpus/dedup/decontaminate.py, the decontaminate stage's module)
# ---------------------------------------------------------------------------------------------------
def apply_decontamination(ctx: Any, df: DataFrame, id_col: str, text_cols: tuple[str, ...], kind: str
                          ) -> tuple[DataFrame, str]:
    """``df`` without the rows overlapping a benchmark item, using decontaminate's index and matcher.

    The hits are merged into ``contamination_hits`` (kind = sft | preference) for audit. Degrades with a
    logged message when the module, its functions or the benchmark files are absent, or when
    ``datasets.decontaminate`` is false.
    """
    if not ctx.config.datasets.decontaminate:
        return df, f"{kind}: decontamination off (datasets.decontaminate=false)"
    try:
        mod = importlib.import_module("medcorpus.dedup.decontaminate")
        load_index, find = mod.load_index, mod.find_contamination
    except (ImportError, AttributeError):
        msg = f"{kind}: medcorpus.dedup.decontaminate (load_index, find_contamination) not available: NOT decontaminated"
        log.warning(msg)
        return df, msg
    cfg = ctx.config.decontaminate
    try:
        index = load_index(ctx.spark, cfg)
    except MedcorpusError as err:
        msg = f"{kind}: benchmark index unavailable ({err}): NOT decontaminated"
        log.warning(msg)
        return df, msg
    hits = find(df, index, cfg, id_col=id_col, text_cols=text_cols, kind=kind).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if _registered("contamination_hits"):
            ctx.warehouse.merge_new_rows("contamination_hits", hits.withColumn("run_id", F.lit(ctx.run_id)), kind)
        bad = hits.select(F.col("item_id").alias(id_col)).distinct()
        kept = df.join(bad, on=id_col, how="left_anti")
        n = bad.count()
    finally:
        hits.unpersist()
    return kept, f"{kind}: decontaminated against {index.items} benchmark items ({n} rows overlap)"


def _quarantine_rows(errors: DataFrame) -> DataFrame:
    return errors.select(
        F.col("sample_id").alias("doc_id"),
        "source",
        "source_file",
        F.col("position").cast("long").alias("position"),
        F.col("error").alias("reason"),
        F.concat(F.lit("sft importer could not use the record: "), F.col("error")).alias("detail"),
        F.substring("raw", 1, RAW_CHARS).alias("raw"),  # cut only now, after redaction (no half-visible number)
    )


# ---------------------------------------------------------------------------------------------------
# sft
# ---------------------------------------------------------------------------------------------------
def _confilter_scored(ctx: Any, scored: DataFrame) -> DataFrame:
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


def generated_candidates(ctx: Any) -> DataFrame | None:
    """Rows of ``generated_qa`` (the LLM QA-generation stage) as SFT candidates, when that table exists."""
    if not _table_exists(ctx, "generated_qa"):
        return None
    from medcorpus.readers.formats import CANDIDATE_SCHEMA

    gen = ctx.warehouse.read("generated_qa")
    cols = {f.name: F.lit(None).cast(f.dataType) for f in CANDIDATE_SCHEMA.fields}
    cols.update(
        sample_id=F.col("qa_id"), source=F.lit("generated_qa"), source_file=F.col("source_doc_id"),
        position=F.col("pair_index").cast("long"), type=F.col("type"), language=F.col("language"),
        messages=F.col("messages"),
    )
    return gen.select([cols[f.name].cast(f.dataType).alias(f.name) for f in CANDIDATE_SCHEMA.fields])


def run_sft(ctx: Any) -> StageReport:
    report = StageReport("sft")
    cfg = ctx.config.datasets
    candidates, skipped = import_sources(ctx.spark, cfg.sft_sources)
    notes = [f"skipped missing sources: {', '.join(skipped)}"] if skipped else []
    generated = generated_candidates(ctx)
    if generated is not None:
        candidates = candidates.unionByName(generated)
        notes.append("with generated_qa rows")
    candidates = redact_sft(candidates, ctx.config).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        errors = candidates.filter(F.col("error").isNotNull())
        scored = sft_mod.with_scores(candidates.filter(F.col("error").isNull()), ctx.config.normalize)
        flagged = sft_mod.with_reject_reason(_confilter_scored(ctx, scored), cfg).persist(StorageLevel.MEMORY_AND_DISK)
        reasons = count_by(flagged, "reject_reason")
        kept = flagged.filter(F.col("reject_reason").isNull())
        kept_n = reasons.pop("null", 0)
        kept = kept.withColumn("all_text", sft_mod.all_text())
        kept, note = apply_decontamination(ctx, kept, "sample_id", ("all_text",), "sft")
        notes.append(note)
        out = sft_mod.to_sft_rows(kept, ctx.run_id)
        ctx.warehouse.overwrite_rows("sft", out, stage="sft")
        written = ctx.warehouse.read("sft").count()
        if kept_n - written:
            reasons["contaminated"] = kept_n - written
        quarantined = count_by(errors, "error")
        if quarantined:
            ctx.warehouse.merge_new_rows("quarantine", _stage_quarantine(_quarantine_rows(errors), "sft", ctx.run_id), "sft")
        report.rows_in = candidates.count()
        report.rows_out = written
        report.rows_quarantined = sum(quarantined.values())
        report.rows_removed = report.rows_in - report.rows_out - report.rows_quarantined
        report.removed_by_reason = {**reasons, **quarantined}
        cf_stats = flagged.filter(F.col("confilter").isNotNull()).agg(
            F.count(F.lit(1)).alias("n"), F.expr("percentile_approx(confilter, array(0.05, 0.5, 0.95))").alias("q")
        ).first()
        if cf_stats and cf_stats["n"]:
            notes.append(f"confilter scored {cf_stats['n']} dialogues, CF p5/p50/p95 = "
                         + "/".join(f"{x:.3f}" for x in cf_stats["q"]))
    finally:
        candidates.unpersist()
    report.table_version = ctx.warehouse.version("sft")
    report.note = "; ".join(notes) or None
    write_report(ctx.spark, ctx.warehouse, report.finish())
    return report


def _stage_quarantine(rows: DataFrame, stage: str, run_id: str) -> DataFrame:
    from medcorpus.core.pipeline import stage_quarantine

    return stage_quarantine(rows, stage, run_id)


# ---------------------------------------------------------------------------------------------------
# preference
# ---------------------------------------------------------------------------------------------------
def run_preference(ctx: Any) -> StageReport:
    report = StageReport("preference")
    cfg = ctx.config.datasets
    if not ctx.warehouse.exists("sft"):
        raise TableMissingError("table 'sft' does not exist; run the sft stage first (medcorpus sft)")
    sft = ctx.warehouse.read("sft")
    pairs = pref_mod.objective_pairs(sft, cfg.seed).unionByName(pref_mod.subjective_pairs(sft))
    if _table_exists(ctx, "judged_preferences"):  # the LLM judge's pairs (subjective, CareBot-style)
        pairs = pairs.unionByName(pref_mod.judged_pairs(ctx.warehouse.read("judged_preferences")))
    # sft is redacted already; judged pairs carry model text: the policy runs on every pair
    pairs = redact_columns(pairs, PREFERENCE_TEXT_COLUMNS, ctx.config).persist(StorageLevel.MEMORY_AND_DISK)
    notes = []
    try:
        reasons = count_by(pairs, "reject_reason")
        kept_n = reasons.pop("null", 0)
        kept = pairs.filter(F.col("reject_reason").isNull())
        kept = pref_mod.to_preference_rows(kept, ctx.config.normalize, ctx.run_id)
        kept, note = apply_decontamination(ctx, kept, "pair_id", ("prompt", "chosen", "rejected"), "preference")
        notes.append(note)
        ctx.warehouse.overwrite_rows("preference", kept, stage="preference")
        stats = {r["kind"]: int(r["n"]) for r in ctx.warehouse.read("preference").groupBy("kind")
                 .agg(F.count(F.lit(1)).alias("n")).collect()}
        written = sum(stats.values())
        if kept_n - written:
            reasons["contaminated"] = kept_n - written
        report.rows_in = kept_n + sum(reasons.values()) - reasons.get("contaminated", 0)
        report.rows_out = written
        report.rows_removed = report.rows_in - written
        report.removed_by_reason = reasons
        notes.append(", ".join(f"{k} pairs={v}" for k, v in sorted(stats.items())) or "no pairs")
    finally:
        pairs.unpersist()
    report.table_version = ctx.warehouse.version("preference")
    report.note = "; ".join(notes)
    write_report(ctx.spark, ctx.warehouse, report.finish())
    return report


# ---------------------------------------------------------------------------------------------------
# pretrain
# ---------------------------------------------------------------------------------------------------
def _available_tokens(eligible: DataFrame) -> dict[tuple[str, str], int]:
    rows = eligible.groupBy("component", "lang").agg(F.sum("token_estimate").alias("t")).collect()
    return {(r["component"], r["lang"]): int(r["t"] or 0) for r in rows}


def build_mixture(pool: DataFrame, name: str, mix: Any, seed: int) -> tuple[DataFrame, pt_mod.MixtureResult,
                                                                          dict[str, int]]:
    """One mixture: eligibility, plan, deterministic sample, tolerance check. Returns (eligible rows with
    ``sampled``, persisted: the caller unpersists; the result; removed-by-reason counts over the pool)."""
    cutoffs = pt_mod.quality_cutoffs(pool, mix)
    if mix.medical_top_fraction < 1.0:
        log.info("mixture %s: top %.0f%% of medical documents per language -> quality_score >= %s", name,
                 100 * mix.medical_top_fraction, ", ".join(f"{k}: {v:.3f}" for k, v in sorted(cutoffs.items())))
    flagged = pt_mod.with_eligibility(pool, mix, cutoffs)
    eligible = flagged.filter(F.col("reason").isNull())
    plan = pt_mod.plan_mixture(name, mix, _available_tokens(eligible))
    sampled = pt_mod.sample_cells(eligible, plan, seed).persist(StorageLevel.MEMORY_AND_DISK)
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
    removed = count_by(flagged.filter(F.col("reason").isNotNull()), "reason")
    not_sampled = sampled.filter(~F.col("sampled")).count()
    if not_sampled:
        removed["not_sampled"] = not_sampled
    return sampled, result, removed


def run_pretrain(ctx: Any) -> StageReport:
    report = StageReport("pretrain")
    cfg = ctx.config.datasets
    for name, mix in cfg.mixtures.items():
        pt_mod.validate_mixture(name, mix)
    source_table = newest_document_table(ctx)
    docs_pool, notes = pt_mod.document_pool(ctx.warehouse.read(source_table))
    notes.insert(0, f"documents from {source_table}")
    for n in notes:
        log.info("pretrain: %s", n)
    needs_sft = any("sft" in mix.components for mix in cfg.mixtures.values())
    pool = docs_pool
    if needs_sft:
        if ctx.warehouse.exists("sft"):
            pool = docs_pool.unionByName(pt_mod.sft_pool(ctx.warehouse.read("sft")))
        else:
            notes.append("table sft missing: mixtures with an sft component will fail")
    pool = pool.persist(StorageLevel.MEMORY_AND_DISK)
    outputs, summaries, removed, persisted = [], [], {}, []
    try:
        docs_only = pool.filter(F.col("component").isNull() | (F.col("component") != "sft"))
        pool_all, pool_docs = pool.count(), docs_only.count()
        for name, mix in cfg.mixtures.items():
            part = pool if "sft" in mix.components else docs_only
            sampled, result, reasons = build_mixture(part, name, mix, cfg.seed)
            persisted.append(sampled)
            rows = sampled.filter("sampled").drop("sampled", "reason")
            report.rows_in += pool_all if "sft" in mix.components else pool_docs
            for k, v in reasons.items():
                removed[f"{name}:{k}"] = v
            outputs.append(rows.withColumn("mixture", F.lit(name)))
            summaries.append(result.summary())
        combined = outputs[0]
        for o in outputs[1:]:
            combined = combined.unionByName(o)
        ctx.warehouse.overwrite_rows("pretrain", combined.withColumn("run_id", F.lit(ctx.run_id)), stage="pretrain")
    finally:
        for frame in persisted:
            frame.unpersist()
        pool.unpersist()
    report.rows_out = ctx.warehouse.read("pretrain").count()
    report.rows_removed = report.rows_in - report.rows_out
    report.removed_by_reason = removed
    report.table_version = ctx.warehouse.version("pretrain")
    report.note = "; ".join(notes + summaries)
    write_report(ctx.spark, ctx.warehouse, report.finish())
    return report
