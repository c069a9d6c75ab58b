"""annotate: clean_documents -> annotations, labelled_domain, labelled_quality (two LLM rounds per document,
kept where they agree: CareBot's agreement filter)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import KEPT, REMOVED, Ledger
from medcorpus.llm import engine
from medcorpus.llm import tasks as T
from medcorpus.llm.stage import LlmStage
from medcorpus.text.pii import redact_columns


class Annotate(LlmStage):
    name = "annotate"
    help = "LLM labels (domain, quality 0-5) for a sample of clean_documents, two rounds (needs llm.base_url)"
    inputs = ("clean_documents",)
    outputs = ("annotations", "labelled_domain", "labelled_quality")
    persist_pending = True

    def pending(self) -> DataFrame:
        cfg = self.ctx.config.llm.annotate
        done = self.ctx.warehouse.read_or_empty("annotations").select("doc_id")
        docs = T.deterministic_limit(
            self.ctx.warehouse.read("clean_documents").filter(F.length("text") >= cfg.min_chars)
            .join(done, on="doc_id", how="left_anti"),
            "doc_id", cfg.sample_size,
        ).select("doc_id", F.substring("text", 1, cfg.max_input_chars).alias("text"))
        # the text is copied into annotations and labelled_*: redacted again in case an older table was not
        return redact_columns(docs, ("text",), self.ctx.config)

    def transform(self, pending: DataFrame) -> DataFrame:
        cfg = self.ctx.config.llm.annotate
        self.template = engine.template_for(self.ctx.config, cfg.template)
        answers = self.ask(self.template, T.annotation_requests(pending, cfg.max_input_chars),
                           {"domain_labels": list(cfg.domain_labels)})
        decided = T.decide_annotations(answers.replies, pending, self.ctx.config.classify.max_score_gap).drop("text")
        failures = answers.failures.withColumn("doc_id", T.annotation_doc_id(F.col("item_id")))
        rows = pending.join(decided.withColumn("_decided", F.lit(True)), on="doc_id", how="left")
        rows = T.tag_answered(rows, "doc_id", failures, F.coalesce(F.col("_decided"), F.lit(False)))
        why = (F.when(F.col("label").isNull(), F.lit("domain_disagreement"))
               .when(F.col("score").isNull(), F.lit("quality_disagreement")))
        answered = F.col("_outcome") == KEPT
        return rows.withColumn("_reason", F.when(answered, why).otherwise(F.col("_reason"))).withColumn(
            "_outcome", F.when(answered & why.isNotNull(), F.lit(REMOVED)).otherwise(F.col("_outcome"))
        ).drop("_decided")

    def write(self, tagged: DataFrame) -> int:
        decided = tagged.filter(F.col("_outcome") != "quarantined")
        stamp = [F.lit(self.ctx.config.llm.model).alias("model"), F.lit(self.template.ref).alias("template"),
                 F.lit(self.ctx.run_id).alias("run_id")]
        written = self.merge("annotations", decided.select("*", *stamp, F.current_timestamp().alias("annotated_at")))
        self.merge("labelled_domain", decided.filter(F.col("label").isNotNull())
                   .select("doc_id", "text", "label", "is_medical", F.lit(self.ctx.run_id).alias("run_id")))
        self.merge("labelled_quality", decided.filter(F.col("score").isNotNull())
                   .select("doc_id", "text", "score", F.lit(self.ctx.run_id).alias("run_id")))
        return written

    def expected_written(self, ledger: Ledger) -> int:
        return ledger.kept + ledger.removed  # every answered document is recorded, agreeing or not



