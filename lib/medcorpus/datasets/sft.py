"""SFT table transforms: shape checks, Deita-style scores, selection. Pure DataFrame -> DataFrame.

Score first, decide after: :func:`with_scores` adds ``complexity``, ``quality`` and ``deita`` columns,
:func:`with_reject_reason` turns config thresholds into one ``reject_reason`` column (null = keep).

Deita (Liu et al. 2024) scores instruction complexity and response quality with two fine-tuned LLMs. This
project has no such models offline, so both are transparent proxies from Spark built-ins, on Deita's
scale (1-5 each, product 1-25):

- complexity of the user side: length on a log scale, number of questions/requests, extra turns;
- quality of the assistant side: length on a log scale, structure (lists, steps, paragraphs), minus
  boilerplate sign-offs ("感谢您的咨询", "hope this helps").

For multi-turn dialogue CareBot averages per-turn Deita scores; the proxies here use per-turn mean
lengths, which is the same average for length-based scores.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from medcorpus.core.config import DatasetsConfig, NormalizeConfig
from medcorpus.text.normalize import token_estimate

SFT_TYPES = ("single_turn", "multi_turn", "multiple_choice")
DEITA_TYPES = ("single_turn", "multi_turn")  # exam items are kept on their ground truth, not on Deita

_ASK = r"[?？]|请问|如何|怎么|为什么|是否|哪些|什么|\b(how|why|what|which|should|can|could|explain|describe)\b"
_STRUCTURE = (r"(^|\n)\s*(\d+[.、)]|[①-⑩]|[-*•]|第[一二三四五六七八九十]+)|\n\n|首先|其次|此外|另外"
              r"|Firstly|First,|Second|In addition")
_BOILERPLATE = (r"感谢您的(咨询|提问|信任)|希望(我的(解释|回答))?对(你|您)有(所)?帮助|祝您?早日康复"
                r"|[Hh]ope (this|it) helps|[Tt]hanks? for (your|the) (query|question)")


def _role_texts(role: str) -> Column:
    return F.transform(F.filter(F.col("messages"), lambda m: m["role"] == role), lambda m: m["content"])


def _mean_len(texts: Column) -> Column:
    total = F.aggregate(texts, F.lit(0).cast("long"), lambda acc, t: acc + F.char_length(t))
    return F.when(F.size(texts) > 0, total / F.size(texts)).otherwise(F.lit(0.0))


def _count_matches(text: Column, pattern: str) -> Column:
    return F.size(F.regexp_extract_all(text, F.lit(f"({pattern})"), 1))


def _clamp(x: Column, lo: float, hi: float) -> Column:
    return F.least(F.greatest(x, F.lit(lo)), F.lit(hi))


def complexity_score(messages_col: str = "messages") -> Column:
    """1-5: log length of the user turns, how many things they ask, and extra turns."""
    users = _role_texts("user")
    joined = F.concat_ws("\n", users)
    length = _clamp(F.log2(F.lit(1.0) + _mean_len(users) / F.lit(8.0)) / F.lit(2.0), 0.0, 2.5)
    asks = _clamp(F.lit(0.25) * _count_matches(joined, _ASK), 0.0, 1.0)
    turns = _clamp(F.lit(0.25) * (F.size(users) - F.lit(1)), 0.0, 0.5)
    return F.round(_clamp(F.lit(1.0) + length + asks + turns, 1.0, 5.0), 4)


def quality_score(messages_col: str = "messages") -> Column:
    """1-5: log length of the assistant turns, structure, minus boilerplate."""
    answers = _role_texts("assistant")
    joined = F.concat_ws("\n", answers)
    length = _clamp(F.log2(F.lit(1.0) + _mean_len(answers) / F.lit(16.0)) / F.lit(1.5), 0.0, 3.0)
    structure = _clamp(F.lit(0.25) * _count_matches(joined, _STRUCTURE), 0.0, 1.0)
    boiler = _clamp(F.lit(0.5) * _count_matches(joined, _BOILERPLATE), 0.0, 1.0)
    return F.round(_clamp(F.lit(1.0) + length + structure - boiler, 1.0, 5.0), 4)


def all_text(messages_col: str = "messages") -> Column:
    return F.concat_ws("\n", F.transform(F.col(messages_col), lambda m: m["content"]))


def with_scores(df: DataFrame, norm: NormalizeConfig) -> DataFrame:
    """complexity, quality, deita (= complexity x quality), token_estimate, text_hash."""
    text = all_text()
    return (
        df.withColumn("complexity", complexity_score())
        .withColumn("quality", quality_score())
        .withColumn("deita", F.round(F.col("complexity") * F.col("quality"), 4))
        .withColumn("token_estimate", token_estimate(text, norm))
        .withColumn("text_hash", F.sha2(text, 256))
    )


def malformed_messages(min_chars: int) -> Column:
    """No messages, a (near-)empty message, an unknown role, or no final assistant answer."""
    msgs = F.col("messages")
    short = F.exists(msgs, lambda m: F.char_length(F.trim(F.coalesce(m["content"], F.lit("")))) < min_chars)
    bad_role = F.exists(msgs, lambda m: ~m["role"].isin("system", "user", "assistant"))
    no_user = ~F.exists(msgs, lambda m: m["role"] == "user")
    last_not_assistant = F.element_at(msgs, -1)["role"] != F.lit("assistant")
    return msgs.isNull() | (F.size(msgs) < 2) | short | bad_role | no_user | last_not_assistant


def roles_not_alternating() -> Column:
    """Two consecutive messages with the same role (system first is allowed): trainers expect user/assistant turns."""
    roles = F.transform(F.filter(F.col("messages"), lambda m: m["role"] != "system"), lambda m: m["role"])
    n = F.size(roles) - F.lit(1)
    pairs = F.zip_with(F.slice(roles, 1, n), F.slice(roles, 2, n), lambda a, b: a == b)
    return F.when(n > 0, F.array_contains(pairs, True) | (roles[0] != F.lit("user"))).otherwise(F.lit(False))


def first_of_duplicates(df: DataFrame) -> Column:
    """True for every row but the first (by sample_id) of each text_hash: exact duplicates across sources."""
    from pyspark.sql import Window

    w = Window.partitionBy("text_hash").orderBy("sample_id")
    return F.row_number().over(w) > 1


def with_reject_reason(df: DataFrame, cfg: DatasetsConfig) -> DataFrame:
    """``reject_reason``: empty_turn | roles_not_alternating | duplicate | low_deita | confilter_low | confilter_high
    | null (keep).

    Expects ``confilter`` (null where not computed). The first failing rule names the row.
    """
    low_deita = F.col("type").isin(*DEITA_TYPES) & (F.col("deita") < F.lit(cfg.deita_threshold))
    cf = F.col("confilter")
    reason = (
        F.when(malformed_messages(cfg.min_turn_chars), F.lit("empty_turn"))
        .when(roles_not_alternating(), F.lit("roles_not_alternating"))
        .when(first_of_duplicates(df), F.lit("duplicate"))
        .when(cf.isNotNull() & (cf < F.lit(cfg.confilter_lower)), F.lit("confilter_low"))
        .when(cf.isNotNull() & (cf > F.lit(cfg.confilter_upper)), F.lit("confilter_high"))
        .when(low_deita, F.lit("low_deita"))
    )
    return df.withColumn("reject_reason", reason)


def to_sft_rows(df: DataFrame, run_id: str) -> DataFrame:
    """Candidates with scores -> the ``sft`` table's columns."""
    scores = F.struct(
        F.col("complexity").alias("complexity"),
        F.col("quality").alias("quality"),
        F.col("deita").alias("deita"),
        F.col("confilter").alias("confilter"),
    )
    return df.withColumn("scores", scores).withColumn("run_id", F.lit(run_id))
