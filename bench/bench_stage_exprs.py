"""Per-character cost of the expressions inside normalize and filter, on the scale bench's largest warehouse.

Runs after ``bench_scale`` (it reads that run's ``raw_documents`` and ``documents`` from
``$MEDCORPUS_BENCH_DIR/wh-<size>``, default /tmp/medcorpus-bench) and skips with the reason when there is none.
Each expression is evaluated over the cached documents and written to Spark's ``noop`` sink, twice; the
best time is reported with M characters per second per core. The PII guard is measured side by side with the
expression it replaced, in the same session: the alternation of every pattern alone (before) against the
necessary-condition scan first (``pii.may_hold_pii``, after).

A first-character lookahead on the lexicon patterns was measured the same way (session 20): equal counts, and no
gain (best of two, 8.4 against 8.2 s for the largest category), so it was not kept.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

WORK = Path(os.environ.get("MEDCORPUS_BENCH_DIR", "/tmp/medcorpus-bench"))


def _largest_warehouse() -> Path | None:
    found = sorted((p for p in WORK.glob("wh-*") if (p / "documents").is_dir()), key=lambda p: int(p.name[3:]))
    return found[-1] if found else None


def _best_seconds(df: Any, reps: int = 2) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        df.write.format("noop").mode("overwrite").save()
        best = min(best, time.perf_counter() - t)
    return round(best, 2)


def run(spark: Any, args: Any) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from medcorpus.core.config import load_config
    from medcorpus.filters import rules
    from medcorpus.text import normalize as N
    from medcorpus.text import pii

    wh = _largest_warehouse()
    if wh is None:
        return {"skipped": f"no scale-bench warehouse under {WORK} (run bench_scale first)"}
    cfg = load_config()
    policy = pii.Policy.of(cfg)
    out: dict[str, Any] = {"warehouse": str(wh), "cores": 2}
    for table in ("raw_documents", "documents"):
        docs = spark.read.format("delta").load(str(wh / table)).repartition(4).cache()
        chars = int(docs.select(F.sum(F.char_length("text"))).first()[0])
        text, lang = F.col("text"), F.col("lang")
        exprs: dict[str, Any] = {}
        if table == "raw_documents":
            exprs["normalize_python_udf"] = N.python_normalize_column(text, cfg.normalize)
            exprs["normalize_whitespace"] = N.clean_whitespace(text)
            exprs["pii_guard_before"] = text.rlike(pii.any_pii_pattern(policy))
            exprs["pii_guard_after"] = pii.may_hold_pii(text, policy)
            exprs["pii_redact_column"] = pii.redact_column(text, policy)
            frames = {k: docs.select(v) for k, v in exprs.items()}
            frames["normalize_documents"] = N.normalize_documents(docs, cfg.normalize, "bench", cfg)
        else:
            exprs["filter_signals_udf"] = rules.signals_column(text, lang, cfg.filter)
            exprs["filter_protected_words"] = rules.lexicon_text(text, cfg.filter)
            for cat, pattern in rules._cached_patterns(cfg.filter):
                exprs[f"lexicon_{cat}"] = F.regexp_count(rules.lexicon_text(text, cfg.filter), F.lit(pattern))
            frames = {k: docs.select(v) for k, v in exprs.items()}
            frames["filter_score_documents"] = rules.score_documents(docs, cfg.filter).select("signals")
        section: dict[str, Any] = {"documents": docs.count(), "chars": chars}
        for name, frame in frames.items():
            s = _best_seconds(frame)
            section[name] = {"seconds": s, "M_chars_per_s_per_core": round(chars / s / 2 / 1e6, 3)}
        docs.unpersist()
        out[table] = section
    return out
