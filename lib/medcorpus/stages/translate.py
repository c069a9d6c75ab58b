"""translate: classical-Chinese paragraphs of unique_documents -> translations (modern Chinese, by an LLM)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import Ledger, is_kept
from medcorpus.llm import engine
from medcorpus.llm import tasks as T
from medcorpus.llm.stage import LlmStage


class Translate(LlmStage):
    name = "translate"
    help = "classical-Chinese paragraphs of unique_documents -> translations (needs llm.base_url)"
    inputs = ("unique_documents",)
    outputs = ("translations",)
    persist_pending = True

    def pending(self) -> DataFrame:
        cfg = self.ctx.config.llm.translate
        docs = T.deterministic_limit(
            T.classical_documents(self.ctx.warehouse.read("unique_documents"), cfg.classical_column,
                                  cfg.classical_particle_ratio), "doc_id", cfg.max_docs)
        done = self.ctx.warehouse.read_or_empty("translations").select("doc_id", "paragraph_index")
        return (T.paragraphs(docs, cfg.min_paragraph_chars)
                .join(done, on=["doc_id", "paragraph_index"], how="left_anti")
                .withColumn("item_id", F.concat_ws(":", "doc_id", F.col("paragraph_index").cast("string"))))

    def transform(self, pending: DataFrame) -> DataFrame:
        cfg = self.ctx.config.llm.translate
        self.template = engine.template_for(self.ctx.config, cfg.template)
        answers = self.ask(self.template, pending.select(
            "item_id", F.to_json(F.struct(F.col("source_text").alias("text"))).alias("vars_json")))
        replies = answers.replies.select("item_id", F.get_json_object("parsed", "$.translation").alias("translation"),
                                         F.lit(True).alias("_answered"))
        rows = pending.join(replies, on="item_id", how="left")
        return T.tag_answered(rows, "item_id", answers.failures, F.coalesce(F.col("_answered"), F.lit(False)))

    def write(self, tagged: DataFrame) -> int:
        translated = tagged.filter(is_kept()).select(
            "doc_id", "paragraph_index", "source_text", "translation",
            F.lit(self.ctx.config.llm.model).alias("model"), F.lit(self.template.ref).alias("template"),
            F.lit(self.ctx.run_id).alias("run_id"), F.current_timestamp().alias("translated_at"),
        )
        self.docs = tagged.select("doc_id").distinct().count()
        return self.merge("translations", translated)

    def finish(self, ledger: Ledger) -> None:
        if ledger.total:
            self.notes.append(f"{self.docs} classical documents, {ledger.kept} paragraphs written")
        super().finish(ledger)
