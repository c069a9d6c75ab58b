"""Releases that survive VACUUM and Delta's log cleanup.

A release pins Delta versions of ``sft``, ``preference`` and ``pretrain``; an export time-travels to them.
Two things can take those versions away, and both are closed here:

- **VACUUM** deletes data files removed longer ago than the retention. ``medcorpus vacuum`` (this module,
  through delta-rs, no JVM) passes every recorded release's version of a table as ``keep_versions``, so the
  files of a release are never deleted, whatever the retention. Files of unreleased versions are.
- **Log cleanup**: at a checkpoint Delta deletes commits older than ``delta.logRetentionDuration``
  (30 days by default), after which an older version cannot be read. ``medcorpus release`` first sets
  ``delta.logRetentionDuration`` and ``delta.deletedFileRetentionDuration`` on the dataset tables to
  ``datasets.retention_days`` (never shortening a longer value), and refuses when that is shorter than
  ``datasets.release_life_days``, the life it promises. ``medcorpus vacuum`` warns about releases close to
  the end of their table's log retention.

A plain ``VACUUM`` from Spark or delta-rs does not know the releases: use ``medcorpus vacuum``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from medcorpus.core import deltars
from medcorpus.core.config import Config
from medcorpus.core.errors import MedcorpusError

log = logging.getLogger(__name__)

#: Tables a release pins (the retention properties are set on these).
RETAINED_TABLES = ("sft", "preference", "pretrain")
FILE_RETENTION = "delta.deletedFileRetentionDuration"
LOG_RETENTION = "delta.logRetentionDuration"


class RetentionError(MedcorpusError):
    """A release would outlive what its tables keep."""


def check_retention_config(config: Config) -> None:
    """Refuse (before Spark starts) when the configured retention is shorter than a release's promised life."""
    cfg = config.datasets
    if cfg.retention_days < cfg.release_life_days:
        raise RetentionError(
            f"datasets.retention_days ({cfg.retention_days:g}) is shorter than datasets.release_life_days "
            f"({cfg.release_life_days:g}): VACUUM or Delta's log cleanup could make the release unreadable "
            "before its promised life ends; raise retention_days or lower release_life_days")


def wanted_properties(config: Config, current: dict[str, str]) -> dict[str, str]:
    """The retention properties to set on a dataset table: the configured ones, except where the table
    already sets a longer value (someone chose it; a shorter one could break an older release). Delta also
    requires the log retention to be at least the file retention."""
    want_days = config.datasets.retention_days
    want = want_days * 24

    def explicit(key: str) -> float | None:
        return deltars.interval_hours(current[key], 0.0) if key in current else None

    cur_file, cur_log = explicit(FILE_RETENTION), explicit(LOG_RETENTION)
    file_hours = max(want, cur_file or 0.0)
    file_text = current[FILE_RETENTION] if cur_file is not None and cur_file >= want else deltars.interval_text(want_days)
    out = {}
    if cur_file is None or cur_file < file_hours:
        out[FILE_RETENTION] = file_text
    if cur_log is None or cur_log < file_hours - 1e-9:
        out[LOG_RETENTION] = file_text
    return out


def missing_files(config: Config, table: str, version: int) -> list[str] | None:
    """Data files of ``table`` at ``version`` that are gone (local warehouses; None when it cannot tell)."""
    if "://" in deltars.table_uri(config, table):
        return None
    snapshot = deltars.open_table(config, table, version)
    if snapshot is None:
        return None
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    paths = [Path(unquote(urlparse(u).path)) if u.startswith("file:") else Path(u) for u in snapshot.file_uris()]
    return [p.name for p in paths if not p.exists()]


def check_table_retention(config: Config, table: str, properties: dict[str, str]) -> None:
    """Raise RetentionError when a table keeps files or log for less than the promised release life."""
    life_hours = config.datasets.release_life_days * 24
    for key, default in ((FILE_RETENTION, deltars.DEFAULT_FILE_RETENTION_HOURS),
                         (LOG_RETENTION, deltars.DEFAULT_LOG_RETENTION_HOURS)):
        hours = deltars.interval_hours(properties.get(key), default)
        if hours < life_hours - 1e-9:
            raise RetentionError(
                f"table {table}: {key} is {hours / 24:g} days, shorter than datasets.release_life_days "
                f"({config.datasets.release_life_days:g}); the release would not stay readable that long")


# ---------------------------------------------------------------------------------------------------
# medcorpus vacuum
# ---------------------------------------------------------------------------------------------------
@dataclass
class VacuumResult:
    table: str
    retention_hours: float
    kept_versions: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        kept = (f"; kept the files of released versions {', '.join(map(str, self.kept_versions))}"
                if self.kept_versions else "")
        return f"{self.table}: {verb} {len(self.files)} files (retention {self.retention_hours / 24:g} days{kept})"


def vacuum_warehouse(config: Config, tables: list[str] | None = None, dry_run: bool = False,
                     now: dt.datetime | None = None) -> list[VacuumResult]:
    """VACUUM every (or the named) table with its own retention, keeping every release's files."""
    from deltalake import CommitProperties

    from medcorpus.core.warehouse import all_table_names, table_spec

    names = tables or all_table_names()
    for name in names:
        try:
            table_spec(name)
        except KeyError as err:
            raise MedcorpusError(str(err.args[0])) from None
    releases = deltars.release_versions(config)
    now = now or dt.datetime.now(dt.UTC)
    meta = json.dumps({"run_id": config.run_id or "vacuum", "stage": "vacuum", "config_hash": config.hash()})
    results = []
    for name in names:
        table = deltars.open_table(config, name)
        if table is None:
            continue
        props = dict(table.metadata().configuration or {})
        retention = deltars.interval_hours(props.get(FILE_RETENTION), deltars.DEFAULT_FILE_RETENTION_HOURS)
        log_hours = deltars.interval_hours(props.get(LOG_RETENTION), deltars.DEFAULT_LOG_RETENTION_HOURS)
        pinned = {r: v[name] for r, v in releases.items() if name in v}
        keep = sorted({v for v in pinned.values() if v <= table.version()})
        result = VacuumResult(name, retention, keep, dry_run=dry_run)
        result.warnings = _log_warnings(table, name, pinned, log_hours, now)
        result.files = list(table.vacuum(
            retention_hours=None, dry_run=dry_run, enforce_retention_duration=True, full=True,
            keep_versions=keep or None, commit_properties=CommitProperties(custom_metadata={"userMetadata": meta}),
        ))
        for w in result.warnings:
            log.warning("vacuum: %s", w)
        results.append(result)
    return results


def _log_warnings(table: Any, name: str, pinned: dict[str, int], log_hours: float, now: dt.datetime) -> list[str]:
    """Releases whose version is older than the table's log retention (Delta's log cleanup may drop it)."""
    if not pinned:
        return []
    times = {c.get("version"): deltars.commit_time(c) for c in table.history()}
    out = []
    for release, version in sorted(pinned.items()):
        when = times.get(version)
        if when is None:
            out.append(f"release {release}: {name} version {version} is no longer in the table's history")
            continue
        age_hours = (now - when).total_seconds() / 3600
        if age_hours > log_hours:
            out.append(f"release {release}: {name} version {version} is {age_hours / 24:.1f} days old, past the "
                       f"table's log retention ({log_hours / 24:g} days); Delta's next log cleanup may make it "
                       "unreadable (export it now, or raise datasets.retention_days and release again)")
    return out
