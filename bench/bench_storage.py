"""Bytes and write time of the warehouse's tables under each Parquet codec, side by side in one session.

Runs after ``bench_scale`` on its largest warehouse (``$MEDCORPUS_BENCH_DIR/wh-<size>``, default
/tmp/medcorpus-bench) and skips with the reason when there is none. Each table's current rows are cached,
then written as a new Delta table with snappy (Spark's default) and with zstd (``spark.parquet_codec``, the
medcorpus default), alternately, twice; the best write time, the bytes of the data files and the time to read
the text column back are reported per table and in total.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

WORK = Path(os.environ.get("MEDCORPUS_BENCH_DIR", "/tmp/medcorpus-bench"))
TABLES = ("raw_documents", "documents", "clean_documents", "scored_documents", "unique_documents", "dedup_signatures")
CODECS = ("snappy", "zstd")


def _largest_warehouse() -> Path | None:
    found = sorted((p for p in WORK.glob("wh-*") if (p / "documents").is_dir()), key=lambda p: int(p.name[3:]))
    return found[-1] if found else None


def _data_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.parquet"))


def run(spark: Any, args: Any) -> dict[str, Any]:
    from pyspark.sql import functions as F

    wh = _largest_warehouse()
    if wh is None:
        return {"skipped": f"no scale-bench warehouse under {WORK} (run bench_scale first)"}
    key = "spark.sql.parquet.compression.codec"
    before = spark.conf.get(key)
    out: dict[str, Any] = {"warehouse": str(wh), "tables": {}}
    scratch = Path(tempfile.mkdtemp(prefix="medcorpus-codec-"))
    try:
        for table in TABLES:
            if not (wh / table).is_dir():
                continue
            df = spark.read.format("delta").load(str(wh / table)).cache()
            rows = df.count()
            best: dict[str, dict[str, float]] = {c: {"write_s": float("inf"), "read_s": float("inf")} for c in CODECS}
            for _ in range(2):
                for codec in CODECS:
                    target = scratch / f"{table}-{codec}"
                    shutil.rmtree(target, ignore_errors=True)
                    spark.conf.set(key, codec)
                    t = time.perf_counter()
                    df.write.format("delta").save(str(target))
                    best[codec]["write_s"] = min(best[codec]["write_s"], time.perf_counter() - t)
                    column = "text" if "text" in df.columns else "doc_id"
                    t = time.perf_counter()
                    spark.read.format("delta").load(str(target)).select(F.sum(F.length(column))).first()
                    best[codec]["read_s"] = min(best[codec]["read_s"], time.perf_counter() - t)
                    best[codec]["bytes"] = _data_bytes(target)
            df.unpersist()
            out["tables"][table] = {"rows": rows, **{c: {k: round(v, 2) if k != "bytes" else int(v)
                                                         for k, v in best[c].items()} for c in CODECS}}
    finally:
        spark.conf.set(key, before)
        shutil.rmtree(scratch, ignore_errors=True)
    totals = {c: sum(t[c]["bytes"] for t in out["tables"].values()) for c in CODECS}
    out["total_bytes"] = totals
    out["zstd_over_snappy_bytes"] = round(totals["zstd"] / max(totals["snappy"], 1), 3)
    out["write_s"] = {c: round(sum(t[c]["write_s"] for t in out["tables"].values()), 2) for c in CODECS}
    return out
