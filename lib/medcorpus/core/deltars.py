"""Delta metadata without a JVM: the warehouse's tables through delta-rs (the ``deltalake`` package).

Used by the commands that only need the transaction log (``tables``, ``history``, ``vacuum``): opening a
table reads its ``_delta_log`` and nothing else, in milliseconds, where Spark needs a JVM first.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

from medcorpus.core.config import Config

#: Delta's own default when a table sets no ``delta.deletedFileRetentionDuration``.
DEFAULT_FILE_RETENTION_HOURS = 7 * 24.0
#: ... and no ``delta.logRetentionDuration``.
DEFAULT_LOG_RETENTION_HOURS = 30 * 24.0

_UNIT_HOURS = {"microsecond": 1 / 3_600_000_000, "millisecond": 1 / 3_600_000, "second": 1 / 3600,
               "minute": 1 / 60, "hour": 1.0, "day": 24.0, "week": 168.0}


def interval_hours(text: str | None, default: float) -> float:
    """Hours of a Delta interval property ('interval 30 days', '168 hours', 'interval 2 weeks 3 days')."""
    if not text:
        return default
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+?)s?\b", text.lower().replace("interval", " "))
    hours = 0.0
    for number, unit in parts:
        if unit not in _UNIT_HOURS:
            raise ValueError(f"cannot read the Delta interval {text!r} (unit {unit!r})")
        hours += float(number) * _UNIT_HOURS[unit]
    if not parts:
        raise ValueError(f"cannot read the Delta interval {text!r}")
    return hours


def interval_text(days: float) -> str:
    """A Delta interval property value for ``days`` (whole days when it is, else seconds)."""
    if float(days).is_integer():
        return f"interval {int(days)} days"
    return f"interval {max(1, round(days * 86400))} seconds"


def table_uri(config: Config, name: str) -> str:
    """``<warehouse>/<name>`` as delta-rs wants it (an absolute local path, or s3://)."""
    root = config.warehouse.rstrip("/")
    if root.startswith("file:"):
        root = root.removeprefix("file:")
    if "://" not in root:
        return f"{Path(root).resolve()}/{name}"
    if root.startswith("s3a://"):
        root = "s3://" + root.removeprefix("s3a://")
    return f"{root}/{name}"


def storage_options(config: Config) -> dict[str, str] | None:
    """delta-rs storage options for an S3 warehouse (endpoint, region, credentials from the configured env)."""
    if not config.warehouse.startswith(("s3a://", "s3://")):
        return None
    s3 = config.s3
    opts = {"AWS_REGION": s3.region, "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    if s3.endpoint:
        opts["AWS_ENDPOINT_URL"] = s3.endpoint
        if s3.endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    if s3.path_style_access:
        opts["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    for env, key in ((s3.access_key_env, "AWS_ACCESS_KEY_ID"), (s3.secret_key_env, "AWS_SECRET_ACCESS_KEY")):
        if os.environ.get(env):
            opts[key] = os.environ[env]
    return opts


def open_table(config: Config, name: str, version: int | None = None) -> Any | None:
    """The delta-rs ``DeltaTable`` of a registered table (None when it is not a Delta table yet)."""
    from deltalake import DeltaTable

    uri, opts = table_uri(config, name), storage_options(config)
    if not DeltaTable.is_deltatable(uri, storage_options=opts):
        return None
    return DeltaTable(uri, version=version, storage_options=opts)


def row_count(table: Any) -> int:
    """Rows of the table's current version, from the add actions' statistics (no data file is read)."""
    actions = table.get_add_actions(flatten=False)
    column = actions.column("num_records")
    values = column.to_pylist() if hasattr(column, "to_pylist") else list(column)
    if any(v is None for v in values):  # a file without statistics: count it from its footer
        return int(table.to_pyarrow_dataset().count_rows())
    return int(sum(values))


def commit_metadata(commit: dict[str, Any]) -> dict[str, Any]:
    """The ``{run_id, stage, config_hash}`` that medcorpus puts in a commit's userMetadata ({} if none)."""
    raw = commit.get("userMetadata")
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except ValueError:
        return {"raw": raw}
    return meta if isinstance(meta, dict) else {"raw": raw}


def commit_time(commit: dict[str, Any]) -> dt.datetime | None:
    ts = commit.get("timestamp")
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(int(ts) / 1000, tz=dt.UTC)


def release_versions(config: Config) -> dict[str, dict[str, int]]:
    """``{release name: {table: Delta version}}`` from the ``releases`` table ({} when there is none)."""
    table = open_table(config, "releases")
    if table is None:
        return {}
    rows = table.to_pyarrow_dataset().to_table(columns=["release", "table_versions"]).to_pylist()
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        versions = row["table_versions"]
        pairs = versions.items() if isinstance(versions, dict) else versions
        out[row["release"]] = {str(k): int(v) for k, v in pairs}
    return out
