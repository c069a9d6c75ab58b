"""ConFilter (CareBot, eqs. 1-3) with a character n-gram language model the project trains itself.

CF(H, t_i) = L(t_i | H) / L(t_i), where L is the mean per-character cross-entropy of turn t_i (a user
question with its answer) with and without the dialogue history H = t_1 .. t_{i-1}.

The model: an interpolated Witten-Bell character n-gram model (counts learnt from the SFT corpus with
Spark built-ins, pruned to a bounded size and broadcast) mixed with a cache component, as in cache
language models (Kuhn & De Mori): P(c) = (1 - w) P_ngram(c | ctx) + w P_cache(c | prev).

- For L(t_i) the cache holds only the characters of t_i already read (self-repetition inside a turn).
- For L(t_i | H) it starts with every character of H.

So CF isolates what the history adds: ~1 or above when the turn ignores its history (the history cache
only dilutes the prediction), well below 1 when the turn repeats the history. The stage drops dialogues
whose mean CF over turns 2..n is above ``confilter_upper`` or below ``confilter_lower``.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

BOS = "\x02"  # start-of-turn padding; never in normalized text


class CharNgramLM:
    """Interpolated Witten-Bell character n-gram model with an optional cache component."""

    def __init__(self, counts: dict[str, int], order: int, cache_weight: float):
        self.order = order
        self.cache_weight = cache_weight
        self.counts = counts
        self.ctx_total: dict[str, int] = {}
        self.ctx_types: dict[str, int] = {}
        for gram, n in counts.items():
            h = gram[:-1]
            self.ctx_total[h] = self.ctx_total.get(h, 0) + n
            self.ctx_types[h] = self.ctx_types.get(h, 0) + 1
        self.vocab = max(self.ctx_types.get("", 0) + 1, 2)

    def p_ngram(self, history: str, ch: str) -> float:
        """P(ch | last order-1 chars of history), recursing from the unigram level upwards."""
        p = 1.0 / self.vocab
        h_full = history[-(self.order - 1):] if self.order > 1 else ""
        for k in range(0, len(h_full) + 1):
            h = h_full[len(h_full) - k:] if k else ""
            total = self.ctx_total.get(h)
            if not total:
                break  # longer contexts are unseen too
            types = self.ctx_types[h]
            p = (self.counts.get(h + ch, 0) + types * p) / (total + types)
        return p

    def turn_loss(self, turn: str, history: str = "", max_chars: int = 0) -> float:
        """Mean -log P per character of ``turn``; the cache starts with ``history``."""
        text = turn[:max_chars] if max_chars else turn
        if not text:
            return float("nan")
        uni: Counter[str] = Counter(history)
        bi: Counter[str] = Counter(history[i:i + 2] for i in range(len(history) - 1))
        n_cache = len(history)
        prev = history[-1] if history else ""
        ctx = BOS * (self.order - 1)
        w = self.cache_weight
        loss = 0.0
        for ch in text:
            p = self.p_ngram(ctx, ch)
            if n_cache:
                p_uni = uni[ch] / n_cache
                prev_n = uni[prev] if prev else 0
                # bigram cache backed off to the unigram cache (weight 1 for the back-off)
                p_cache = (bi[prev + ch] + p_uni) / (prev_n + 1.0)
                p = (1.0 - w) * p + w * p_cache
            loss -= math.log(p)
            ctx = (ctx + ch)[-(self.order - 1):] if self.order > 1 else ""
            uni[ch] += 1
            if prev:
                bi[prev + ch] += 1
            prev = ch
            n_cache += 1
        return loss / len(text)


def turns_of(messages: list[dict[str, str]]) -> list[str]:
    """Group messages into turns: a user message with the replies that follow it (system text dropped)."""
    turns: list[str] = []
    for m in messages:
        if m["role"] == "system":
            continue
        if m["role"] == "user" or not turns:
            turns.append(m["content"])
        else:
            turns[-1] = turns[-1] + "\n" + m["content"]
    return turns


def dialogue_cf(lm: CharNgramLM, messages: list[dict[str, str]], max_turn_chars: int = 0) -> float | None:
    """Mean CF over turns 2..n; None for a dialogue with fewer than two turns."""
    turns = turns_of(messages)
    if len(turns) < 2:
        return None
    ratios = []
    history = turns[0]
    for turn in turns[1:]:
        direct = lm.turn_loss(turn, "", max_turn_chars)
        conditioned = lm.turn_loss(turn, history, max_turn_chars)
        if direct > 0 and not math.isnan(direct):
            ratios.append(conditioned / direct)
        history = history + "\n" + turn
    return sum(ratios) / len(ratios) if ratios else None


# ---------------------------------------------------------------------------------------------------
# Spark: training counts and scoring
# ---------------------------------------------------------------------------------------------------
def ngram_counts(texts: DataFrame, order: int, min_count: int, max_ngrams: int) -> DataFrame:
    """(ngram, n) for character n-grams of length 1..order, BOS-padded, pruned to the ``max_ngrams`` most frequent.

    Built-ins only, linear in the text length: the text is split into characters once and k-grams are
    built by zipping shifted slices (``substring`` at position i would rescan the UTF-8 string from its
    start, quadratic per text).
    """
    padded = F.concat(F.lit(BOS * (order - 1)), F.col("text"))
    chars = F.filter(F.split(padded, ""), lambda c: c != F.lit(""))
    size = F.size(chars)
    levels = [chars]
    for k in range(2, order + 1):
        n_k = F.greatest(size - F.lit(k - 1), F.lit(0))
        levels.append(F.zip_with(F.slice(levels[-1], 1, n_k), F.slice(chars, k, n_k), lambda a, b: F.concat(a, b)))
    grams = []
    for k, level in enumerate(levels, start=1):
        # a k-gram may start with at most order-k BOS characters: those are the contexts of a turn's first chars
        start = order - k + 1
        grams.append(F.slice(level, start, F.greatest(F.size(level) - F.lit(start - 1), F.lit(0))))
    exploded = texts.select(F.explode(F.flatten(F.array(*grams))).alias("ngram"))
    return (
        exploded.groupBy("ngram")
        .agg(F.count(F.lit(1)).alias("n"))
        .filter(F.col("n") >= min_count)
        .orderBy(F.col("n").desc(), F.col("ngram"))
        .limit(max_ngrams)
    )


def train_counts(texts: DataFrame, order: int, min_count: int, max_ngrams: int) -> dict[str, int]:
    """Collect the pruned n-gram table (bounded by ``max_ngrams``, not by the corpus) to the driver."""
    return {r["ngram"]: int(r["n"]) for r in ngram_counts(texts, order, min_count, max_ngrams).collect()}


_MODEL_CACHE: dict[str, CharNgramLM] = {}


def score_dialogues(df: DataFrame, counts_broadcast: Any, order: int, cache_weight: float,
                    max_turn_chars: int) -> DataFrame:
    """Add ``confilter`` (double, null for < 2 turns) to rows with ``sample_id`` and ``messages``."""
    schema = StructType([StructField("sample_id", StringType(), False), StructField("confilter", DoubleType(), True)])
    key = uuid.uuid4().hex  # names this model in the per-worker cache (workers are reused across tasks)

    def _score(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        lm = _MODEL_CACHE.get(key)
        if lm is None:  # built once per Python worker from the broadcast counts
            lm = _MODEL_CACHE[key] = CharNgramLM(counts_broadcast.value, order, cache_weight)
        for batch in batches:
            cf = [dialogue_cf(lm, [{"role": m["role"], "content": m["content"]} for m in msgs], max_turn_chars)
                  for msgs in batch["messages"]]
            yield pd.DataFrame({"sample_id": batch["sample_id"], "confilter": cf})

    scored = df.select("sample_id", "messages").mapInPandas(_score, schema)
    return df.join(scored, on="sample_id", how="left")
