"""Spark side of the LLM stages: cache lookup, chunked calls with ``mapInPandas``, cache writes, usage.

``answer(ctx, stage, template, requests)`` takes a DataFrame of (item_id, vars_json, seed) — one row per
prompt — and returns the items' validated replies and failures. Prompts already in ``llm_cache`` are not
sent. The rest are sent in chunks of ``llm.commit_every`` prompts; each chunk's replies are merged into
``llm_cache`` before the next chunk starts, so a run killed half way loses at most the chunk in flight
and the next run sends only what the cache does not hold.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from medcorpus.core.config import Config
from medcorpus.llm.client import ClientSettings, Secret
from medcorpus.llm.prompts import PromptTemplate, load_template, prompt_dir
from medcorpus.llm.worker import RESULT_SCHEMA, partition_answerer
from medcorpus.text.pii import Policy

log = logging.getLogger(__name__)


def api_key(config: Config) -> Secret:
    """The key from the environment variable the config names (read on the driver, shipped in the closure)."""
    return Secret(os.environ.get(config.llm.api_key_env))


def template_for(config: Config, ref: str) -> PromptTemplate:
    return load_template(ref, prompt_dir(config.llm.prompt_dir))


def input_hash(vars_json: Column, seed: Column) -> Column:
    return F.sha2(F.concat_ws("\u001f", vars_json, F.coalesce(seed.cast("string"), F.lit(""))), 256)


def cache_key(model: str, template: PromptTemplate, in_hash: Column) -> Column:
    return F.sha2(F.concat_ws("|", F.lit(model), F.lit(template.name), F.lit(template.version), in_hash), 256)


def keyed_requests(requests: DataFrame, model: str, template: PromptTemplate) -> DataFrame:
    """(item_id, vars_json, seed) -> + input_hash, cache_key."""
    seed = F.col("seed") if "seed" in requests.columns else F.lit(None).cast("int")
    return (
        requests.withColumn("seed", seed.cast("int"))
        .withColumn("input_hash", input_hash(F.col("vars_json"), F.col("seed")))
        .withColumn("cache_key", cache_key(model, template, F.col("input_hash")))
        .select("item_id", "vars_json", "seed", "input_hash", "cache_key")
    )


@dataclass
class Usage:
    """Counts of one (stage, template) call; goes to llm_usage and the run_log note."""

    template: str
    items: int = 0
    cache_hits: int = 0
    items_sent: int = 0
    requests: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures_by_reason: dict[str, int] = field(default_factory=dict)

    def cost(self, config: Config) -> float:
        return round(
            self.prompt_tokens / 1000 * config.llm.price_per_1k_prompt_tokens
            + self.completion_tokens / 1000 * config.llm.price_per_1k_completion_tokens,
            6,
        )

    def note(self) -> str:
        return (
            f"{self.template}: items={self.items} cache_hits={self.cache_hits} sent={self.items_sent} "
            f"requests={self.requests} failures={self.failures} tokens={self.prompt_tokens}+{self.completion_tokens}"
        )


@dataclass
class Answers:
    """Per item: ``replies`` (item_id, cache_key, parsed) and ``failures`` (item_id, cache_key, reason, error)."""

    replies: DataFrame
    failures: DataFrame
    usage: Usage
    keyed: DataFrame | None = None

    def release(self) -> None:
        if self.keyed is not None:
            self.keyed.unpersist()


# Test hook: called after each chunk is committed (a test makes it raise to simulate a crash).
def _no_hook(chunk: int) -> None:
    return None


after_chunk_committed: Callable[[int], None] = _no_hook


def answer(
    ctx: Any,
    stage: str,
    template: PromptTemplate,
    requests: DataFrame,
    options: dict[str, Any] | None = None,
) -> Answers:
    """Answer every request row from the cache or the endpoint; see the module docstring."""
    config: Config = ctx.config
    llm = config.llm
    settings = ClientSettings.from_config(llm)
    wh = ctx.warehouse
    wh.ensure("llm_cache")
    wh.ensure("llm_failures")
    usage = Usage(template=template.ref)

    keyed = keyed_requests(requests, llm.model, template).persist(StorageLevel.MEMORY_AND_DISK)
    cached_keys = _cache_of(ctx, template).select("cache_key")
    misses = (
        keyed.join(cached_keys, on="cache_key", how="left_anti")
        # identical prompts (same template input) are sent once and answer every item that needs them
        .dropDuplicates(["cache_key"])
        .select("cache_key", "vars_json", "seed", "input_hash")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        counts = (
            keyed.join(cached_keys.withColumn("hit", F.lit(1)), on="cache_key", how="left")
            .agg(F.count(F.lit(1)).alias("items"), F.count("hit").alias("hits"))
            .first()
        )
        usage.items = int(counts["items"]) if counts else 0
        usage.cache_hits = int(counts["hits"]) if counts else 0
        n_misses = misses.count()
        usage.items_sent = n_misses
        n_chunks = max(1, math.ceil(n_misses / llm.commit_every)) if n_misses else 0
        log.info("%s %s: %d items, %d prompts to send in %d chunk(s)", stage, template.ref, usage.items,
                 n_misses, n_chunks)
        answer_fn = partition_answerer(settings, api_key(config), template, options or {}, llm.failure_raw_chars,
                                       Policy.of(config))
        for chunk in range(n_chunks):
            part = misses.filter(F.pmod(F.xxhash64("cache_key"), F.lit(n_chunks)) == chunk)
            _run_chunk(ctx, stage, template, part, answer_fn, usage)
            log.info("%s %s: chunk %d/%d committed", stage, template.ref, chunk + 1, n_chunks)
            after_chunk_committed(chunk)
    finally:
        misses.unpersist()

    cache = _cache_of(ctx, template).select("cache_key", "parsed")
    replies = keyed.join(cache, on="cache_key", how="inner").select("item_id", "cache_key", "parsed")
    run_failures = (
        wh.read("llm_failures")
        .filter((F.col("run_id") == ctx.run_id) & (F.col("stage") == stage))
        .select("cache_key", "reason", "error")
        .dropDuplicates(["cache_key"])
    )
    failures = keyed.join(cache.select("cache_key"), on="cache_key", how="left_anti").join(
        run_failures, on="cache_key", how="left"
    ).select("item_id", "cache_key", F.coalesce("reason", F.lit("not_answered")).alias("reason"), "error")
    return Answers(replies, failures, usage, keyed)


def _cache_of(ctx: Any, template: PromptTemplate) -> DataFrame:
    return ctx.warehouse.read("llm_cache").filter(
        (F.col("model") == ctx.config.llm.model)
        & (F.col("template") == template.name)
        & (F.col("template_version") == template.version)
    )


def _run_chunk(
    ctx: Any,
    stage: str,
    template: PromptTemplate,
    part: DataFrame,
    answer_fn: Callable[..., Any],
    usage: Usage,
) -> None:
    llm = ctx.config.llm
    wh = ctx.warehouse
    # Sending is a side effect: it must happen exactly once per chunk. persist() is only a hint (an evicted
    # or re-planned block would be recomputed, i.e. the prompts re-sent, e.g. when Delta's MERGE
    # materializes its source); an eager local checkpoint computes the chunk once and cuts the lineage.
    results = (
        part.repartition(llm.partitions)
        .mapInPandas(answer_fn, RESULT_SCHEMA)
        .join(part.select("cache_key", "input_hash"), on="cache_key", how="inner")
        .localCheckpoint(eager=True)
    )
    try:
        stats = results.groupBy("ok", "reason").agg(
            F.count(F.lit(1)).alias("n"),
            F.sum("requests").alias("requests"),
            F.sum("prompt_tokens").alias("p"),
            F.sum("completion_tokens").alias("c"),
        ).collect()
        for row in stats:
            usage.requests += int(row["requests"] or 0)
            usage.prompt_tokens += int(row["p"] or 0)
            usage.completion_tokens += int(row["c"] or 0)
            if not row["ok"]:
                usage.failures += int(row["n"])
                usage.failures_by_reason[row["reason"]] = usage.failures_by_reason.get(row["reason"], 0) + int(row["n"])
        ok = results.filter(F.col("ok"))
        wh.merge_new_rows(
            "llm_cache",
            ok.select(
                "cache_key",
                F.lit(llm.model).alias("model"),
                F.lit(template.name).alias("template"),
                F.lit(template.version).alias("template_version"),
                F.lit(template.sha).alias("template_sha"),
                "input_hash",
                "raw_response",
                "parsed",
                "requests",
                "prompt_tokens",
                "completion_tokens",
                F.lit(ctx.run_id).alias("run_id"),
                F.current_timestamp().alias("created_at"),
            ),
            stage=stage,
        )
        if any(not row["ok"] for row in stats):
            # append: a run sends each cache_key once, so (run_id, cache_key) is new by construction
            wh.append_rows(
                "llm_failures",
                results.filter(~F.col("ok")).select(
                    F.lit(ctx.run_id).alias("run_id"),
                    F.lit(stage).alias("stage"),
                    "cache_key",
                    F.lit(llm.model).alias("model"),
                    F.lit(template.name).alias("template"),
                    F.lit(template.version).alias("template_version"),
                    "reason",
                    "error",
                    "http_status",
                    "raw_response",
                    "requests",
                    F.current_timestamp().alias("failed_at"),
                ),
                stage=stage,
            )
    finally:
        results.unpersist()  # a no-op for the checkpoint; its blocks go when `results` is garbage-collected


def write_usage(ctx: Any, stage: str, usages: list[Usage]) -> str:
    """One llm_usage row per template of the stage; returns the run_log note."""
    rows = [
        (
            ctx.run_id, stage, u.template, ctx.config.llm.model, u.items, u.cache_hits, u.items_sent, u.requests,
            u.failures, u.prompt_tokens, u.completion_tokens, u.cost(ctx.config),
        )
        for u in usages
    ]
    df = ctx.spark.createDataFrame(
        rows,
        "run_id string, stage string, template string, model string, items long, cache_hits long, "
        "items_sent long, requests long, failures long, prompt_tokens long, completion_tokens long, cost_usd double",
    ).withColumn("created_at", F.current_timestamp())
    ctx.warehouse.append_rows("llm_usage", df, stage=stage)  # one row per (run, stage, template)
    cost = sum(u.cost(ctx.config) for u in usages)
    return "llm " + "; ".join(u.note() for u in usages) + f"; cost_usd={cost:.4f}"
