"""Read-only views for people: ``medcorpus tables`` and ``medcorpus history``.

Both read only the Delta transaction logs, through delta-rs (:mod:`medcorpus.core.deltars`): no JVM starts,
so they answer in about a second. Row counts come from the add actions' statistics (``numRecords``), the
same metadata-only count Spark makes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from medcorpus.core import deltars
from medcorpus.core.config import Config
from medcorpus.core.errors import MedcorpusError
from medcorpus.core.warehouse import all_table_names, table_spec


def _config(ctx_or_config: Any) -> Config:
    return getattr(ctx_or_config, "config", ctx_or_config)


def tables_overview(ctx_or_config: Any) -> str:
    """One line per registered table: Delta version, rows, the run that last wrote it."""
    config = _config(ctx_or_config)
    lines = [f"{'table':<22} {'version':>7} {'rows':>12}  last run / stage", "-" * 72]
    for name in all_table_names():
        table = deltars.open_table(config, name)
        if table is None:
            lines.append(f"{name:<22} {'-':>7} {'-':>12}  (not written yet)")
            continue
        last = table.history(1)
        commit = last[0] if last else {}
        meta = deltars.commit_metadata(commit)
        lines.append(f"{name:<22} {table.version():>7} {deltars.row_count(table):>12,}  "
                     f"{meta.get('run_id', '?')} / {meta.get('stage', commit.get('operation', '?'))}")
    return "\n".join(lines)


def table_history(ctx_or_config: Any, name: str, limit: int = 20) -> str:
    """The newest ``limit`` commits of a table: version, time (UTC), operation, rows, userMetadata."""
    config = _config(ctx_or_config)
    try:
        table_spec(name)
    except KeyError as err:
        raise MedcorpusError(str(err.args[0])) from None
    if limit < 1:
        raise MedcorpusError(f"--limit must be at least 1, got {limit}")
    table = deltars.open_table(config, name)
    if table is None:
        raise MedcorpusError(f"table '{name}' does not exist at {deltars.table_uri(config, name)}; "
                             "run the stage that writes it first")
    lines = [f"{'version':>7}  {'timestamp':<19}  {'operation':<22} {'rows':>8}  userMetadata"]
    for c in table.history(limit):  # newest first
        when = deltars.commit_time(c)
        stamp = when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if when else "?"
        metrics = c.get("operationMetrics") or {}
        rows = metrics.get("numTargetRowsInserted") or metrics.get("numOutputRows") or ""
        lines.append(f"{c.get('version', '?'):>7}  {stamp:<19}  {c.get('operation', '?'):<22} {rows!s:>8}  "
                     f"{c.get('userMetadata') or ''}")
    return "\n".join(lines)
