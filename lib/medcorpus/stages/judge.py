"""judge: sft answers vs an LLM's answers, judged by an LLM -> judged_preferences (CareBot's subjective pairs)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import KEPT, REMOVED, is_kept
from medcorpus.llm import engine
from medcorpus.llm import tasks as T
from medcorpus.llm.stage import LlmStage


class Judge(LlmStage):
    name = "judge"
    help = "sft answers vs a generated answer, judged -> judged_preferences (needs llm.base_url)"
    inputs = ("sft",)
    outputs = ("judged_preferences",)
    persist_pending = True

    def pending(self) -> DataFrame:
        done = self.ctx.warehouse.read_or_empty("judged_preferences").select("pair_id")
        items = T.judge_inputs(self.ctx.warehouse.read("sft")).join(done, on="pair_id", how="left_anti")
        return T.deterministic_limit(items, "pair_id", self.ctx.config.llm.judge.max_items)

    def transform(self, pending: DataFrame) -> DataFrame:
        cfg = self.ctx.config.llm.judge
        answer_template = engine.template_for(self.ctx.config, cfg.answer_template)
        self.template = engine.template_for(self.ctx.config, cfg.template)
        # 1) the competing answer, written "as a professional and helpful doctor"
        generated = self.ask(answer_template, pending.select(
            F.col("pair_id").alias("item_id"), F.to_json(F.struct(F.col("prompt").alias("question"))).alias("vars_json")))
        both = pending.join(
            generated.replies.select(F.col("item_id").alias("pair_id"),
                                     F.get_json_object("parsed", "$.answer").alias("generated")),
            on="pair_id", how="inner",
        ).withColumn("swapped", F.pmod(F.xxhash64("pair_id"), F.lit(2)) == 1)  # order bias: show half reversed
        # 2) the judge sees both answers, in a deterministic per-pair order
        response_a = F.when(F.col("swapped"), F.col("generated")).otherwise(F.col("original"))
        response_b = F.when(F.col("swapped"), F.col("original")).otherwise(F.col("generated"))
        judged = self.ask(self.template, both.select(
            F.col("pair_id").alias("item_id"),
            F.to_json(F.struct(F.col("prompt").alias("question"), response_a.alias("response_a"),
                               response_b.alias("response_b"))).alias("vars_json")))
        decided = T.decide_preferences(
            both.join(judged.replies.select(F.col("item_id").alias("pair_id"), "parsed",
                                            F.from_json("parsed", T.JUDGE_SCHEMA).alias("s")),
                      on="pair_id", how="inner"),
            cfg.min_margin,
        ).drop("prompt", "original", "sample_id", "language").withColumn("_answered", F.lit(True))
        rows = pending.join(decided, on="pair_id", how="left")
        failures = generated.failures.unionByName(judged.failures).withColumnRenamed("item_id", "pair_id")
        tagged = T.tag_answered(rows, "pair_id", failures, F.coalesce(F.col("_answered"), F.lit(False)))
        tie = (F.col("_outcome") == KEPT) & F.col("is_tie")
        return (tagged.withColumn("_reason", F.when(tie, F.lit("tie")).otherwise(F.col("_reason")))
                .withColumn("_outcome", F.when(tie, F.lit(REMOVED)).otherwise(F.col("_outcome"))).drop("_answered"))

    def write(self, tagged: DataFrame) -> int:
        return self.merge("judged_preferences", tagged.filter(is_kept()).select(
            "pair_id", "prompt", "chosen", "rejected", F.lit("subjective").alias("kind"),
            F.lit("llm_judge:sft").alias("source"), "language", "sample_id", "chosen_origin", "chosen_score",
            "rejected_score", F.col("parsed").alias("scores"), F.lit(self.ctx.config.llm.model).alias("model"),
            F.lit(self.template.ref).alias("template"), F.lit(self.ctx.run_id).alias("run_id"),
            F.current_timestamp().alias("judged_at"),
        ))
