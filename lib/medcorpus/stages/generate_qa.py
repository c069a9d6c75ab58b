"""generate-qa: medical documents of unique_documents -> generated_qa (QA pairs written by an LLM)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import Ledger, is_kept
from medcorpus.llm import engine
from medcorpus.llm import tasks as T
from medcorpus.llm.stage import LlmStage


class GenerateQa(LlmStage):
    name = "generate-qa"
    help = "QA pairs from medical documents of unique_documents -> generated_qa (needs llm.base_url)"
    inputs = ("unique_documents",)
    outputs = ("generated_qa",)
    persist_pending = True

    def pending(self) -> DataFrame:
        cfg = self.ctx.config.llm.generate_qa
        source = self.ctx.warehouse.read("unique_documents")
        if cfg.medical_only:
            source = source.filter(F.col("domain") == "medical")
        done = self.ctx.warehouse.read_or_empty("generated_qa").select(F.col("source_doc_id").alias("doc_id")).distinct()
        return T.deterministic_limit(
            source.filter(F.length("text") >= cfg.min_chars).join(done, on="doc_id", how="left_anti"),
            "doc_id", cfg.max_docs,
        ).select("doc_id", F.substring("text", 1, cfg.max_input_chars).alias("text"), "source",
                 F.col("lang").alias("language"))

    def transform(self, pending: DataFrame) -> DataFrame:
        cfg = self.ctx.config.llm.generate_qa
        self.template = engine.template_for(self.ctx.config, cfg.template)
        requests = pending.select(
            F.col("doc_id").alias("item_id"),
            F.to_json(F.struct("text", F.lit(cfg.pairs_per_doc).alias("pairs"))).alias("vars_json"),
        )
        answers = self.ask(self.template, requests, {"pairs": cfg.pairs_per_doc})
        self.replies = answers.replies
        answered = answers.replies.select(F.col("item_id").alias("doc_id"), F.lit(True).alias("_answered"))
        rows = pending.join(answered, on="doc_id", how="left")
        failures = answers.failures.withColumnRenamed("item_id", "doc_id")
        return T.tag_answered(rows, "doc_id", failures, F.coalesce(F.col("_answered"), F.lit(False)))

    def write(self, tagged: DataFrame) -> int:
        docs = tagged.filter(is_kept()).select("doc_id", "source", "language")
        rows = T.qa_rows(self.replies, docs).select(
            "*", F.lit(self.ctx.config.llm.model).alias("model"), F.lit(self.template.ref).alias("template"),
            F.lit(self.ctx.run_id).alias("run_id"), F.current_timestamp().alias("created_at"),
        )
        self.pairs = rows.count()
        return self.merge("generated_qa", rows)

    def expected_written(self, ledger: Ledger) -> int:
        return self.pairs  # QA pairs of the answered documents, counted before the merge

    def finish(self, ledger: Ledger) -> None:
        if ledger.total:
            self.notes.append(f"{self.pairs} QA pairs written")
        super().finish(ledger)
