"""What the LLM-backed stages (``annotate``, ``translate``, ``generate-qa``, ``judge``; in ``medcorpus.stages``)
compute, as DataFrame transforms.

Each stage reads its input table, builds one prompt row per item with Spark built-ins, lets
:func:`medcorpus.llm.engine.answer` fill them from ``llm_cache`` or the endpoint, turns the validated JSON
replies into typed columns (``from_json``) and merges the result on its key, so reruns are idempotent and
free. Items without a valid reply are counted as quarantined (reason ``llm_failed:<reason>``), listed in
``llm_failures`` with the raw reply, and retried by the next run.

They are not part of ``medcorpus run`` (they need an endpoint): ``medcorpus annotate|translate|
generate-qa|judge --set llm.base_url=...``.
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import KEPT, QUARANTINED, tag
from medcorpus.llm import engine
from medcorpus.llm.client import ClientSettings

log = logging.getLogger(__name__)

CLASSICAL_PARTICLES = "之乎者也矣焉哉曰兮其"


def deterministic_limit(df: DataFrame, key: str, n: int) -> DataFrame:
    """The first ``n`` rows in a hash order of ``key`` (a stable sample; 0 = no limit)."""
    if n <= 0:
        return df
    return df.orderBy(F.xxhash64(key), F.col(key)).limit(n)


def failure_reasons(failures: DataFrame, id_col: str) -> dict[str, int]:
    """Items (distinct ``id_col``) without a valid reply, per reason (a small aggregate)."""
    per_item = failures.groupBy(id_col).agg(F.min("reason").alias("reason"))
    return {
        f"llm_failed:{r['reason']}": int(r["n"])
        for r in per_item.groupBy("reason").agg(F.count(F.lit(1)).alias("n")).collect()
    }


def failed_items(failures: DataFrame, id_col: str) -> DataFrame:
    """(``id_col``, ``failed``): one row per item without a valid reply, reason ``llm_failed:<first reason>``."""
    return failures.groupBy(id_col).agg(F.concat(F.lit("llm_failed:"), F.min("reason")).alias("failed"))


def tag_answered(items: DataFrame, id_col: str, failures: DataFrame, answered: Column) -> DataFrame:
    """Items with the outcome columns: quarantined with ``llm_failed:<reason>`` unless ``answered``."""
    flagged = items.join(failed_items(failures, id_col), on=id_col, how="left")
    return tag(flagged, F.when(answered, F.lit(KEPT)).otherwise(F.lit(QUARANTINED)),
               F.when(~answered, F.coalesce(F.col("failed"), F.lit("llm_failed:no_reply")))).drop("failed")


def require_endpoint(ctx) -> None:
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


def decide_annotations(replies: DataFrame, docs: DataFrame, max_score_gap: float) -> DataFrame:
    """Join the two rounds per document; keep a label only where the rounds agree (CareBot): the same
    domain, and quality scores less than ``max_score_gap`` (``classify.max_score_gap``) apart."""
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
    quality_agrees = F.abs(F.col("quality_round1") - F.col("quality_round2")) < max_score_gap
    return (
        docs.join(r1, on="doc_id", how="inner")
        .join(r2, on="doc_id", how="inner")
        .withColumn("label", F.when(domain_agrees, F.col("domain_round1")))
        .withColumn("is_medical", F.when(domain_agrees, F.col("label") != F.lit("general")))
        .withColumn(
            "score", F.when(quality_agrees, (F.col("quality_round1") + F.col("quality_round2")) / F.lit(2.0))
        )
    )


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


# ---------------------------------------------------------------------------------------------------
# judge
# ---------------------------------------------------------------------------------------------------
JUDGE_SCHEMA = (
    "a struct<fluency:double,relevance:double,completeness:double,proficiency:double>, "
    "b struct<fluency:double,relevance:double,completeness:double,proficiency:double>"
)


def _first(messages: Column, role: str) -> Column:
    return F.filter(messages, lambda m: m["role"] == role).getItem(0).getField("content")


def judge_inputs(df: DataFrame) -> DataFrame:
    """(pair_id, sample_id, prompt, original, language) of each distinct (prompt, answer) of an sft-shaped table."""
    sample_id = F.col("sample_id") if "sample_id" in df.columns else F.col("qa_id")
    lang = F.col("language") if "language" in df.columns else F.lit(None).cast("string")
    rows = df.select(
        sample_id.alias("sample_id"),
        _first(F.col("messages"), "user").alias("prompt"),
        _first(F.col("messages"), "assistant").alias("original"),
        lang.alias("language"),
    ).filter(F.col("prompt").isNotNull() & F.col("original").isNotNull())
    pair_id = F.sha2(F.concat_ws("\u001f", "prompt", "original"), 256)
    return rows.withColumn("pair_id", pair_id).dropDuplicates(["pair_id"])


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
