"""Read-only views for people: ``medcorpus tables`` and ``medcorpus history``."""

from __future__ import annotations

import json

from pyspark.sql import functions as F

from medcorpus.core.errors import MedcorpusError
from medcorpus.core.warehouse import all_table_names, table_spec


def tables_overview(ctx) -> str:  # type: ignore[no-untyped-def]
    """One line per registered table: Delta version, rows, the run that last wrote it."""
    wh = ctx.warehouse
    lines = [f"{'table':<22} {'version':>7} {'rows':>12}  last run / stage", "-" * 72]
    for name in all_table_names():
        if not wh.exists(name):
            lines.append(f"{name:<22} {'-':>7} {'-':>12}  (not written yet)")
            continue
        last = wh.history(name, 1).select("version", "userMetadata", "operation").first()
        rows = wh.read(name).count()  # one metadata-only count per table
        meta = json.loads(last["userMetadata"]) if last and last["userMetadata"] else {}
        lines.append(
            f"{name:<22} {last['version']:>7} {rows:>12,}  {meta.get('run_id', '?')} / {meta.get('stage', last['operation'])}"
        )
    return "\n".join(lines)


def table_history(ctx, name: str, limit: int = 20) -> str:  # type: ignore[no-untyped-def]
    try:
        table_spec(name)
    except KeyError as err:
        raise MedcorpusError(str(err.args[0])) from None
    hist = ctx.warehouse.history(name, limit).select(
        "version",
        F.date_format("timestamp", "yyyy-MM-dd HH:mm:ss").alias("timestamp"),
        "operation",
        "userMetadata",
        F.col("operationMetrics").getItem("numOutputRows").alias("out_rows"),
        F.col("operationMetrics").getItem("numTargetRowsInserted").alias("inserted"),
    )
    lines = [f"{'version':>7}  {'timestamp':<19}  {'operation':<22} {'rows':>8}  userMetadata"]
    for r in hist.collect():  # bounded by --limit
        rows = r["inserted"] or r["out_rows"] or ""
        lines.append(f"{r['version']:>7}  {r['timestamp']:<19}  {r['operation']:<22} {rows:>8}  {r['userMetadata'] or ''}")
    return "\n".join(lines)
