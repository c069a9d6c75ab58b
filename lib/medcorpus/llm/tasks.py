"""The LLM-backed stages: ``annotate``, ``translate``, ``generate-qa`` and ``judge``.

Each ``run_<stage>(ctx)`` reads its input table, builds one prompt row per item with Spark built-ins, lets
:func:`medcorpus.llm.engine.answer` fill them from ``llm_cache`` or the endpoint, turns the validated JSON
replies into typed columns (``from_json``) and merges the result on its key, so reruns are idempotent and
free. Items without a valid reply are counted as quarantined (reason ``llm_failed:<reason>``), listed in
``llm_failures`` with the raw reply, and retried by the next run.

They are not part of ``medcorpus run`` (they need an endpoint): ``medcorpus annotate|translate|
generate-qa|judge --set llm.base_url=...``.
"""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from medcorpus.core.errors import TableMissingError
from medcorpus.llm import engine
from medcorpus.llm.client import ClientSettings
from medcorpus.text.pii import redact_columns
from medcorpus.core.runlog import StageReport, write_report

log = logging.getLogger(__name__)

# Newest first: a stage reads the most refined table that exists.
DOCUMENT_TABLES = ("unique_documents", "scored_documents", "clean_documents", "documents")
CLASSICAL_PARTICLES = "之乎者也矣焉哉曰兮其"


def newest_table(ctx, candidates: tuple[str, ...]) -> str:
    for name in candidates:
        if ctx.warehouse.exists(name):
            return name
    raise TableMissingError(f"none of {', '.join(candidates)} exists; run ingest and normalize first")


def _read_input(ctx, stage: str, candidates: tuple[str, ...] = DOCUMENT_TABLES) -> DataFrame:
    name = newest_table(ctx, candidates)
    log.info("%s reads table %s", stage, name)
    return ctx.warehouse.read(name)


def _deterministic_limit(df: DataFrame, key: str, n: int) -> DataFrame:
    """The first ``n`` rows in a hash order of ``key`` (a stable sample; 0 = no limit)."""
    if n <= 0:
        return df
    return df.orderBy(F.xxhash64(key), F.col(key)).limit(n)


def _failure_reasons(failures: DataFrame, id_col: str) -> dict[str, int]:
    """Items (distinct ``id_col``) without a valid reply, per reason (a small aggregate)."""
    per_item = failures.groupBy(id_col).agg(F.min("reason").alias("reason"))
    return {
        f"llm_failed:{r['reason']}": int(r["n"])
        for r in per_item.groupBy("reason").agg(F.count(F.lit(1)).alias("n")).collect()
    }


def _finish(ctx, report: StageReport, usages: list[engine.Usage], table: str) -> StageReport:
    note = engine.write_usage(ctx, report.stage, usages)
    report.note = note if not report.note else f"{report.note}; {note}"
    report.table_version = ctx.warehouse.version(table)
    write_report(ctx.spark, ctx.warehouse, report.finish())
    return report


def _nothing_to_do(ctx, report: StageReport, tables: tuple[str, ...]) -> StageReport:
    """No pending input: make sure the outputs exist, log the run, send nothing."""
    for name in tables:
        ctx.warehouse.ensure(name)
    report.note = "no new input: skipped"
    report.table_version = ctx.warehouse.version(tables[0])
    write_report(ctx.spark, ctx.warehouse, report.finish())
    return report


def _require_endpoint(ctx) -> None:
    ClientSettings.from_config(ctx.config.llm)  # fails fast, before any Spark work, when base_url is unset


# ---------------------------------------------------------------------------------------------------
# annotate
# ---------------------------------------------------------------------------------------------------
ANNOTATE_SCHEMA = "domain string, quality int"


ITEM_ROUND = r"^(.*):(\d+)$"


def annotation_doc_id(item_id: Column) -> Column:
    """``<doc_id>:<round>`` -> doc_id (a doc_id may itself contain ':')."""
    return F.regexp_extract(item_id, ITEM_ROUND, 1)


def annotation_requests(docs: DataFrame, max_chars: int) -> DataFrame:
    """Two prompt rows per document (rounds 1 and 2; the round is the request seed and part of the key)."""
    rounds = F.explode(F.array(F.lit(1), F.lit(2))).alias("round")
    return docs.select("doc_id", F.substring("text", 1, max_chars).alias("text"), rounds).select(
        F.concat_ws(":", "doc_id", F.col("round").cast("string")).alias("item_id"),
        F.to_json(F.struct("text")).alias("vars_json"),
        F.col("round").alias("seed"),
    )


def decide_annotations(replies: DataFrame, docs: DataFrame, quality_max_diff: int) -> DataFrame:
    """Join the two rounds per document; keep a label only where the rounds agree (CareBot)."""
    parsed = replies.select(
        annotation_doc_id(F.col("item_id")).alias("doc_id"),
        F.regexp_extract("item_id", ITEM_ROUND, 2).cast("int").alias("round"),
        F.from_json("parsed", ANNOTATE_SCHEMA).alias("r"),
    )
    r1 = parsed.filter(F.col("round") == 1).select(
        "doc_id", F.col("r.domain").alias("domain_round1"), F.col("r.quality").alias("quality_round1")
    )
    r2 = parsed.filter(F.col("round") == 2).select(
        "doc_id", F.col("r.domain").alias("domain_round2"), F.col("r.quality").alias("quality_round2")
    )
    domain_agrees = F.col("domain_round1") == F.col("domain_round2")
    quality_agrees = F.abs(F.col("quality_round1") - F.col("quality_round2")) < quality_max_diff
    return (
        docs.join(r1, on="doc_id", how="inner")
        .join(r2, on="doc_id", how="inner")
        .withColumn("label", F.when(domain_agrees, F.col("domain_round1")))
        .withColumn("is_medical", F.when(domain_agrees, F.col("label") != F.lit("general")))
        .withColumn(
            "score", F.when(quality_agrees, (F.col("quality_round1") + F.col("quality_round2")) / F.lit(2.0))
        )
    )


def run_annotate(ctx) -> StageReport:
    _require_endpoint(ctx)
    cfg = ctx.config.llm.annotate
    report = StageReport("annotate")
    template = engine.template_for(ctx.config, cfg.template)
    source = _read_input(ctx, "annotate", ("clean_documents", "documents"))
    done = ctx.warehouse.read_or_empty("annotations").select("doc_id")
    docs = _deterministic_limit(
        source.filter(F.length("text") >= cfg.min_chars).join(done, on="doc_id", how="left_anti"),
        "doc_id",
        cfg.sample_size,
    ).select("doc_id", F.substring("text", 1, cfg.max_input_chars).alias("text"))
    # documents written by normalize are redacted already; a table from an older run may not be, and this
    # text is copied into annotations and labelled_* (prompts are redacted again right before sending)
    docs = redact_columns(docs, ("text",), ctx.config).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        report.rows_in = docs.count()
        if report.rows_in == 0:
            return _nothing_to_do(ctx, report, ("annotations", "labelled_domain", "labelled_quality"))
        answers = engine.answer(
            ctx, "annotate", template, annotation_requests(docs, cfg.max_input_chars),
            {"domain_labels": list(cfg.domain_labels)},
        )
        decided = decide_annotations(answers.replies, docs, cfg.quality_max_diff).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        outcome = {
            (r["has_label"], r["has_score"]): int(r["n"])
            for r in decided.groupBy(
                F.col("label").isNotNull().alias("has_label"), F.col("score").isNotNull().alias("has_score")
            ).agg(F.count(F.lit(1)).alias("n")).collect()
        }
        stamp = [F.lit(ctx.config.llm.model).alias("model"), F.lit(template.ref).alias("template"),
                 F.lit(ctx.run_id).alias("run_id")]
        ctx.warehouse.merge_new_rows(
            "annotations", decided.select("*", *stamp, F.current_timestamp().alias("annotated_at")), "annotate"
        )
        ctx.warehouse.merge_new_rows(
            "labelled_domain",
            decided.filter(F.col("label").isNotNull()).select("doc_id", "text", "label", "is_medical",
                                                              F.lit(ctx.run_id).alias("run_id")),
            "annotate",
        )
        ctx.warehouse.merge_new_rows(
            "labelled_quality",
            decided.filter(F.col("score").isNotNull()).select("doc_id", "text", "score",
                                                              F.lit(ctx.run_id).alias("run_id")),
            "annotate",
        )
        failed = _failure_reasons(
            answers.failures.withColumn("doc_id", annotation_doc_id(F.col("item_id"))), "doc_id"
        )
        decided.unpersist()
        answers.release()
    finally:
        docs.unpersist()
    report.rows_out = outcome.get((True, True), 0)
    report.rows_quarantined = sum(failed.values())
    reasons = dict(failed)
    reasons["domain_disagreement"] = outcome.get((False, True), 0) + outcome.get((False, False), 0)
    reasons["quality_disagreement"] = outcome.get((True, False), 0)
    report.removed_by_reason = {k: v for k, v in reasons.items() if v}
    report.rows_removed = reasons["domain_disagreement"] + reasons["quality_disagreement"]
    return _finish(ctx, report, [answers.usage], "annotations")


# ---------------------------------------------------------------------------------------------------
# translate
# ---------------------------------------------------------------------------------------------------
def classical_particle_ratio(text: Column) -> Column:
    """Share of classical function characters among non-space characters (a cheap classical-text signal)."""
    compact = F.regexp_replace(text, r"\s+", "")
    particles = F.length(compact) - F.length(F.regexp_replace(compact, f"[{CLASSICAL_PARTICLES}]", ""))
    return F.when(F.length(compact) > 0, particles / F.length(compact)).otherwise(F.lit(0.0))


def classical_documents(docs: DataFrame, column: str, min_ratio: float) -> DataFrame:
    """Documents marked classical by the classifier's column, or by the particle ratio when it is absent."""
    if column in docs.columns:
        return docs.filter(F.col(column))
    lang_zh = F.col("lang") == "zh" if "lang" in docs.columns else F.lit(True)
    return docs.filter(lang_zh & (classical_particle_ratio(F.col("text")) >= min_ratio))


def paragraphs(docs: DataFrame, min_chars: int) -> DataFrame:
    """(doc_id, paragraph_index, source_text): the text split on newlines, blank/short lines dropped."""
    return (
        docs.select("doc_id", F.posexplode(F.split("text", r"\r?\n")).alias("paragraph_index", "source_text"))
        .withColumn("source_text", F.trim("source_text"))
        .filter(F.length("source_text") >= min_chars)
        .withColumn("paragraph_index", F.col("paragraph_index").cast("int"))
    )


def run_translate(ctx) -> StageReport:
    _require_endpoint(ctx)
    cfg = ctx.config.llm.translate
    report = StageReport("translate")
    template = engine.template_for(ctx.config, cfg.template)
    source = _read_input(ctx, "translate")
    docs = _deterministic_limit(
        classical_documents(source, cfg.classical_column, cfg.classical_particle_ratio), "doc_id", cfg.max_docs
    )
    done = ctx.warehouse.read_or_empty("translations").select("doc_id", "paragraph_index")
    todo = (
        paragraphs(docs, cfg.min_paragraph_chars)
        .join(done, on=["doc_id", "paragraph_index"], how="left_anti")
        .withColumn("item_id", F.concat_ws(":", "doc_id", F.col("paragraph_index").cast("string")))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        stats = todo.agg(F.count(F.lit(1)).alias("n"), F.countDistinct("doc_id").alias("docs")).first()
        report.rows_in = int(stats["n"]) if stats else 0
        if report.rows_in == 0:
            return _nothing_to_do(ctx, report, ("translations",))
        answers = engine.answer(
            ctx, "translate", template,
            todo.select("item_id", F.to_json(F.struct(F.col("source_text").alias("text"))).alias("vars_json")),
        )
        translated = todo.join(answers.replies, on="item_id", how="inner").select(
            "doc_id",
            "paragraph_index",
            "source_text",
            F.get_json_object("parsed", "$.translation").alias("translation"),
            F.lit(ctx.config.llm.model).alias("model"),
            F.lit(template.ref).alias("template"),
            F.lit(ctx.run_id).alias("run_id"),
            F.current_timestamp().alias("translated_at"),
        )
        metrics = ctx.warehouse.merge_new_rows("translations", translated, "translate")
        failed = _failure_reasons(answers.failures, "item_id")
        answers.release()
    finally:
        todo.unpersist()
    report.rows_quarantined = sum(failed.values())
    report.rows_out = report.rows_in - report.rows_quarantined
    report.removed_by_reason = failed
    inserted = metrics.get("numTargetRowsInserted", 0)
    report.note = f"{int(stats['docs']) if stats else 0} classical documents, {inserted} paragraphs written"
    return _finish(ctx, report, [answers.usage], "translations")


# ---------------------------------------------------------------------------------------------------
# generate-qa
# ---------------------------------------------------------------------------------------------------
QA_SCHEMA = "qa array<struct<question:string,answer:string>>"


def qa_rows(replies: DataFrame, docs: DataFrame) -> DataFrame:
    """Validated QA replies -> one sft-style row per pair (messages = [user question, assistant answer])."""
    pairs = replies.select(
        F.col("item_id").alias("doc_id"),
        F.posexplode(F.from_json("parsed", QA_SCHEMA).getField("qa")).alias("pair_index", "pair"),
    )
    message = "struct<role:string,content:string>"
    return pairs.join(docs, on="doc_id", how="inner").select(
        F.sha2(F.concat_ws("#", "doc_id", F.col("pair_index").cast("string")), 256).alias("qa_id"),
        F.array(
            F.struct(F.lit("user").alias("role"), F.col("pair.question").alias("content")).cast(message),
            F.struct(F.lit("assistant").alias("role"), F.col("pair.answer").alias("content")).cast(message),
        ).alias("messages"),
        F.col("doc_id").alias("source_doc_id"),
        "source",
        F.lit("single_turn").alias("type"),
        F.col("language"),
        F.col("pair_index").cast("int").alias("pair_index"),
    )


def run_generate_qa(ctx) -> StageReport:
    _require_endpoint(ctx)
    cfg = ctx.config.llm.generate_qa
    report = StageReport("generate-qa")
    template = engine.template_for(ctx.config, cfg.template)
    source = _read_input(ctx, "generate-qa")
    if cfg.medical_only and "domain" in source.columns:
        source = source.filter(F.col("domain") == "medical")
    done = ctx.warehouse.read_or_empty("generated_qa").select(F.col("source_doc_id").alias("doc_id")).distinct()
    lang = F.col("lang") if "lang" in source.columns else F.lit(None).cast("string")
    src = F.col("source") if "source" in source.columns else F.lit(None).cast("string")
    docs = _deterministic_limit(
        source.filter(F.length("text") >= cfg.min_chars).join(done, on="doc_id", how="left_anti"),
        "doc_id",
        cfg.max_docs,
    ).select("doc_id", F.substring("text", 1, cfg.max_input_chars).alias("text"), src.alias("source"),
             lang.alias("language"))
    docs = docs.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        report.rows_in = docs.count()
        if report.rows_in == 0:
            return _nothing_to_do(ctx, report, ("generated_qa",))
        requests = docs.select(
            F.col("doc_id").alias("item_id"),
            F.to_json(F.struct("text", F.lit(cfg.pairs_per_doc).alias("pairs"))).alias("vars_json"),
        )
        answers = engine.answer(ctx, "generate-qa", template, requests, {"pairs": cfg.pairs_per_doc})
        rows = qa_rows(answers.replies, docs.select("doc_id", "source", "language")).select(
            "*",
            F.lit(ctx.config.llm.model).alias("model"),
            F.lit(template.ref).alias("template"),
            F.lit(ctx.run_id).alias("run_id"),
            F.current_timestamp().alias("created_at"),
        )
        metrics = ctx.warehouse.merge_new_rows("generated_qa", rows, "generate-qa")
        failed = _failure_reasons(answers.failures, "item_id")
        answers.release()
    finally:
        docs.unpersist()
    report.rows_quarantined = sum(failed.values())
    report.rows_out = report.rows_in - report.rows_quarantined
    report.removed_by_reason = failed
    report.note = f"{metrics.get('numTargetRowsInserted', 0)} QA pairs written"
    return _finish(ctx, report, [answers.usage], "generated_qa")


# ---------------------------------------------------------------------------------------------------
# judge
# ---------------------------------------------------------------------------------------------------
JUDGE_SCHEMA = (
    "a struct<fluency:double,relevance:double,completeness:double,proficiency:double>, "
    "b struct<fluency:double,relevance:double,completeness:double,proficiency:double>"
)


def _first(messages: Column, role: str) -> Column:
    return F.filter(messages, lambda m: m["role"] == role).getItem(0).getField("content")


def judge_inputs(ctx) -> tuple[str, DataFrame]:
    """(pair_id, sample_id, prompt, original, language) from ``sft`` when it exists, else ``generated_qa``."""
    name = newest_table(ctx, ("sft", "generated_qa"))
    df = ctx.warehouse.read(name)
    sample_id = F.col("sample_id") if "sample_id" in df.columns else F.col("qa_id")
    lang = F.col("language") if "language" in df.columns else F.lit(None).cast("string")
    rows = df.select(
        sample_id.alias("sample_id"),
        _first(F.col("messages"), "user").alias("prompt"),
        _first(F.col("messages"), "assistant").alias("original"),
        lang.alias("language"),
    ).filter(F.col("prompt").isNotNull() & F.col("original").isNotNull())
    pair_id = F.sha2(F.concat_ws("\u001f", "prompt", "original"), 256)
    return name, rows.withColumn("pair_id", pair_id).dropDuplicates(["pair_id"])


def decide_preferences(judged: DataFrame, min_margin: float) -> DataFrame:
    """Scores -> chosen/rejected; ``swapped`` means the generated answer was shown as response A."""
    total = lambda side: sum(F.col(f"s.{side}.{k}") for k in ("fluency", "relevance", "completeness", "proficiency"))  # noqa: E731
    original_score = F.when(F.col("swapped"), total("b")).otherwise(total("a"))
    generated_score = F.when(F.col("swapped"), total("a")).otherwise(total("b"))
    with_scores = judged.withColumn("original_score", original_score).withColumn("generated_score", generated_score)
    original_wins = F.col("original_score") >= F.col("generated_score")
    margin = F.abs(F.col("original_score") - F.col("generated_score"))
    return with_scores.withColumn("is_tie", margin < F.lit(min_margin)).select(
        "*",
        F.when(original_wins, F.col("original")).otherwise(F.col("generated")).alias("chosen"),
        F.when(original_wins, F.col("generated")).otherwise(F.col("original")).alias("rejected"),
        F.when(original_wins, F.lit("original")).otherwise(F.lit("generated")).alias("chosen_origin"),
        F.greatest("original_score", "generated_score").alias("chosen_score"),
        F.least("original_score", "generated_score").alias("rejected_score"),
    )


def run_judge(ctx) -> StageReport:
    _require_endpoint(ctx)
    cfg = ctx.config.llm.judge
    report = StageReport("judge")
    answer_template = engine.template_for(ctx.config, cfg.answer_template)
    template = engine.template_for(ctx.config, cfg.template)
    input_name, inputs = judge_inputs(ctx)
    log.info("judge reads table %s", input_name)
    done = ctx.warehouse.read_or_empty("judged_preferences").select("pair_id")
    items = _deterministic_limit(inputs.join(done, on="pair_id", how="left_anti"), "pair_id", cfg.max_items)
    items = items.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        report.rows_in = items.count()
        if report.rows_in == 0:
            return _nothing_to_do(ctx, report, ("judged_preferences",))
        # 1) the competing answer, written "as a professional and helpful doctor"
        generated = engine.answer(
            ctx, "judge", answer_template,
            items.select(F.col("pair_id").alias("item_id"),
                         F.to_json(F.struct(F.col("prompt").alias("question"))).alias("vars_json")),
        )
        both = items.join(
            generated.replies.select(F.col("item_id").alias("pair_id"),
                                     F.get_json_object("parsed", "$.answer").alias("generated")),
            on="pair_id", how="inner",
        ).withColumn("swapped", F.pmod(F.xxhash64("pair_id"), F.lit(2)) == 1)  # order bias: show half reversed
        # 2) the judge sees both answers, in a deterministic per-pair order
        response_a = F.when(F.col("swapped"), F.col("generated")).otherwise(F.col("original"))
        response_b = F.when(F.col("swapped"), F.col("original")).otherwise(F.col("generated"))
        judged = engine.answer(
            ctx, "judge", template,
            both.select(F.col("pair_id").alias("item_id"),
                        F.to_json(F.struct(F.col("prompt").alias("question"), response_a.alias("response_a"),
                                           response_b.alias("response_b"))).alias("vars_json")),
        )
        decided = decide_preferences(
            both.join(
                judged.replies.select(F.col("item_id").alias("pair_id"), "parsed",
                                      F.from_json("parsed", JUDGE_SCHEMA).alias("s")),
                on="pair_id", how="inner",
            ),
            cfg.min_margin,
        ).persist(StorageLevel.MEMORY_AND_DISK)
        ties = decided.filter(F.col("is_tie")).count()
        ctx.warehouse.merge_new_rows(
            "judged_preferences",
            decided.filter(~F.col("is_tie")).select(
                "pair_id", "prompt", "chosen", "rejected",
                F.lit("subjective").alias("kind"),
                F.lit(f"llm_judge:{input_name}").alias("source"),
                "language", "sample_id", "chosen_origin", "chosen_score", "rejected_score",
                F.col("parsed").alias("scores"),
                F.lit(ctx.config.llm.model).alias("model"),
                F.lit(template.ref).alias("template"),
                F.lit(ctx.run_id).alias("run_id"),
                F.current_timestamp().alias("judged_at"),
            ),
            "judge",
        )
        failed = _failure_reasons(
            generated.failures.unionByName(judged.failures).withColumnRenamed("item_id", "pair_id"), "pair_id"
        )
        decided.unpersist()
        generated.release()
        judged.release()
    finally:
        items.unpersist()
    report.rows_quarantined = sum(failed.values())
    report.rows_removed = ties
    report.rows_out = report.rows_in - report.rows_quarantined - ties
    report.removed_by_reason = {**failed, **({"tie": ties} if ties else {})}
    return _finish(ctx, report, [generated.usage, judged.usage], "judged_preferences")


LLM_STAGES = {
    "annotate": run_annotate,
    "translate": run_translate,
    "generate-qa": run_generate_qa,
    "judge": run_judge,
}


def check_llm_ready(config, stage: str) -> None:
    """Fail fast (before Spark) on a missing endpoint or prompt template."""
    ClientSettings.from_config(config.llm)
    cfg = config.llm
    refs = {
        "annotate": [cfg.annotate.template],
        "translate": [cfg.translate.template],
        "generate-qa": [cfg.generate_qa.template],
        "judge": [cfg.judge.answer_template, cfg.judge.template],
    }[stage]
    for ref in refs:
        engine.template_for(config, ref)
