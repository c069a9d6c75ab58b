"""Preference pairs from the ``sft`` table (CareBot's DPO data). Pure DataFrame -> DataFrame.

- Objective pairs, from multiple-choice items: chosen = the ground truth with its explanation, rejected =
  one wrong option, picked deterministically: ``pmod(xxhash64(seed, sample_id), #wrong)``.
- Subjective pairs, from items with two or more scored responses: chosen = the highest score, rejected =
  the lowest; an item whose best and worst scores tie gives no pair (``tie``).

The prompt is the conversation up to the last assistant turn, rendered as text (for single-turn items:
the user message).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from medcorpus.core.config import NormalizeConfig
from medcorpus.readers.formats import MC_ANSWER
from medcorpus.text.normalize import token_estimate


def prompt_text() -> Column:
    """Every message but the last one; role-prefixed when there is more than one."""
    history = F.slice(F.col("messages"), 1, F.size("messages") - 1)
    rendered = F.transform(history, lambda m: F.concat(m["role"], F.lit(": "), m["content"]))
    return F.when(F.size(history) == 1, history[0]["content"]).otherwise(F.concat_ws("\n\n", rendered))


def _option_text(options: Column, letters: Column, lang: Column) -> Column:
    """'答案：B. 出血部位' / 'Answer: B. ...' for the given letters (no explanation), as mc_answer_text renders it."""
    chosen = F.filter(options, lambda o: F.instr(letters, o["label"]) > 0)
    parts = F.transform(chosen, lambda o: F.concat(o["label"], F.lit(". "), o["text"]))
    zh = F.concat(F.lit(MC_ANSWER["zh"][0]), F.concat_ws("；", parts))
    en = F.concat(F.lit(MC_ANSWER["en"][0]), F.concat_ws("; ", parts))
    return F.when(lang == "zh", zh).otherwise(en)


def objective_pairs(sft: DataFrame, seed: int) -> DataFrame:
    """Multiple-choice rows -> (sample_id, prompt, chosen, rejected, kind, source, language, reject_reason).

    ``reject_reason`` = ``no_wrong_option`` when every option is correct (no pair).
    """
    mc = sft.filter(F.col("type") == "multiple_choice")
    wrong = F.filter(F.col("options"), lambda o: F.instr(F.col("answer"), o["label"]) == 0)
    pick = F.pmod(F.xxhash64(F.lit(seed), F.col("sample_id")), F.greatest(F.size(wrong), F.lit(1))) + 1
    rejected_label = F.element_at(wrong, pick.cast("int"))["label"]
    chosen = F.element_at(F.col("messages"), -1)["content"]
    return mc.select(
        "sample_id",
        prompt_text().alias("prompt"),
        chosen.alias("chosen"),
        F.when(F.size(wrong) > 0, _option_text(F.col("options"), rejected_label, F.col("language"))).alias("rejected"),
        F.lit("objective").alias("kind"),
        "source",
        "language",
        F.when(F.size(wrong) == 0, F.lit("no_wrong_option")).alias("reject_reason"),
    )


def subjective_pairs(sft: DataFrame) -> DataFrame:
    """Rows with >= 2 scored responses -> best vs worst; ties give ``reject_reason`` = ``tie``."""
    scored = sft.filter(F.size(F.coalesce(F.col("responses"), F.array())) >= 2)
    # sort by score desc, then content, so equal scores resolve the same way every run
    ordered = F.array_sort(
        F.col("responses"),
        lambda a, b: F.when(a["score"] > b["score"], -1).when(a["score"] < b["score"], 1)
        .when(a["content"] < b["content"], -1).when(a["content"] > b["content"], 1).otherwise(0),
    )
    best, worst = F.element_at(ordered, 1), F.element_at(ordered, -1)
    tie = best["score"] == worst["score"]
    return scored.select(
        "sample_id",
        prompt_text().alias("prompt"),
        best["content"].alias("chosen"),
        worst["content"].alias("rejected"),
        F.lit("subjective").alias("kind"),
        "source",
        "language",
        F.when(tie, F.lit("tie")).when(best["content"] == worst["content"], F.lit("tie")).alias("reject_reason"),
    )


def judged_pairs(judged: DataFrame) -> DataFrame:
    """Rows of ``judged_preferences`` (LLM judge) in the pair shape; identical texts count as ties."""
    same = F.trim(F.col("chosen")) == F.trim(F.col("rejected"))
    return judged.select(
        F.coalesce(F.col("sample_id"), F.col("pair_id")).alias("sample_id"),
        "prompt", "chosen", "rejected",
        F.coalesce(F.col("kind"), F.lit("subjective")).alias("kind"),
        F.concat(F.lit("judged:"), F.col("source")).alias("source"),
        "language",
        F.when(same, F.lit("tie")).alias("reject_reason"),
    )


def to_preference_rows(pairs: DataFrame, norm: NormalizeConfig, run_id: str) -> DataFrame:
    text = F.concat_ws("\n", "prompt", "chosen", "rejected")
    return (
        pairs.withColumn("pair_id", F.substring(F.sha2(F.concat_ws("#", "kind", "source", "sample_id"), 256), 1, 32))
        .withColumn("token_estimate", token_estimate(text, norm))
        .withColumn("run_id", F.lit(run_id))
    )
