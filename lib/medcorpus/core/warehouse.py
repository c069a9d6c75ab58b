"""Table registry: every table is named once, with its schema file under ``schemas/``.

A table lives at ``<warehouse>/<name>``; the warehouse is a local path or an ``s3a://`` URI.
Writes go through ``merge_new_rows`` / ``append_rows`` / ``overwrite_rows`` so every commit carries
``userMetadata`` = {run_id, stage, config_hash}.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, StructField, StructType

from medcorpus.core.config import REPO_ROOT
from medcorpus.core.errors import TableMissingError

_COMMIT_FILE = re.compile(r"^\d{20}\.json$")
#: a table with at most this many commits and no checkpoint is checked for data from its commit files
_FEW_COMMITS = 8


def schemas_dir() -> Path:
    return Path(os.environ.get("MEDCORPUS_SCHEMAS", REPO_ROOT / "schemas"))


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    key: tuple[str, ...]
    fields: tuple[dict[str, Any], ...]
    partition_by: tuple[str, ...] = field(default=())

    @property
    def schema(self) -> StructType:
        return StructType(
            [StructField(f["name"], _parse_type(f["type"]), bool(f["nullable"])) for f in self.fields]
        )

    @property
    def column_names(self) -> list[str]:
        return [f["name"] for f in self.fields]


@cache
def _parse_type(ddl: str) -> DataType:
    """A DDL type string parsed (by the JVM's parser: a py4j round trip, so each string once per process)."""
    from pyspark.sql.types import _parse_datatype_string

    return _parse_datatype_string(ddl)


@cache
def table_spec(name: str) -> TableSpec:
    path = schemas_dir() / f"{name}.json"
    if not path.exists():
        known = ", ".join(sorted(all_table_names()))
        raise KeyError(f"unknown table {name!r}; registered tables: {known}")
    data = json.loads(path.read_text(encoding="utf-8"))
    return TableSpec(
        name=data["name"],
        description=data.get("description", ""),
        key=tuple(data.get("key", ())),
        fields=tuple(data["fields"]),
        partition_by=tuple(data.get("partition_by", ())),
    )


def all_table_names() -> list[str]:
    return sorted(p.stem for p in schemas_dir().glob("*.json"))


#: The document tables, most processed first: unique_documents (dedup) <- scored_documents (classify) <-
#: clean_documents (filter) <- documents (normalize). Defined here only.
DOCUMENT_TABLES: tuple[str, ...] = ("unique_documents", "scored_documents", "clean_documents", "documents")


class Warehouse:
    """Locations and Delta I/O for the registered tables of one warehouse."""

    def __init__(self, spark: SparkSession, root: str, *, run_id: str, config_hash: str):
        self.spark = spark
        self.root = root.rstrip("/")
        self.run_id = run_id
        self.config_hash = config_hash

    # -- locations ------------------------------------------------------------------------------
    def path(self, name: str) -> str:
        table_spec(name)  # fail early on a typo
        root = self.root
        if "://" not in root:
            root = str(Path(root).resolve())
        return f"{root}/{name}"

    def exists(self, name: str) -> bool:
        """A Delta table is at the path: its log holds a commit file (a listing; Delta's log cleanup always
        keeps the latest commit file)."""
        return bool(self._commit_files(name))

    def read(self, name: str, version: int | None = None) -> DataFrame:
        if not self.exists(name):
            raise TableMissingError(
                f"table '{name}' does not exist at {self.path(name)}; run the stage that writes it first"
            )
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(name))

    def read_or_empty(self, name: str) -> DataFrame:
        if self.exists(name):
            return self.read(name)
        return self.spark.createDataFrame([], table_spec(name).schema)

    def version(self, name: str) -> int | None:
        """The table's latest commit version, from a listing of its ``_delta_log`` (no Spark job)."""
        commits = self._commit_files(name)
        return max(commits) if commits else None

    def _commit_files(self, name: str) -> dict[int, str]:
        """Commit version -> file name of every commit file in the table's log ({} when no table)."""
        jvm: Any = self.spark._jvm  # type: ignore[attr-defined]
        conf = self.spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
        log_dir = jvm.org.apache.hadoop.fs.Path(self.path(name) + "/_delta_log")
        fs = log_dir.getFileSystem(conf)
        if not fs.exists(log_dir):
            return {}
        out = {}
        for status in fs.listStatus(log_dir):
            file_name = status.getPath().getName()
            if _COMMIT_FILE.match(file_name):
                out[int(file_name[:20])] = file_name
        return out

    def _read_log_file(self, name: str, file_name: str) -> str:
        jvm: Any = self.spark._jvm  # type: ignore[attr-defined]
        conf = self.spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
        path = jvm.org.apache.hadoop.fs.Path(self.path(name) + "/_delta_log/" + file_name)
        stream = path.getFileSystem(conf).open(path)
        try:
            return str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()

    # -- writes ---------------------------------------------------------------------------------
    def _commit_metadata(self, stage: str) -> None:
        meta = json.dumps({"run_id": self.run_id, "stage": stage, "config_hash": self.config_hash})
        self.spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", meta)

    def ensure(self, name: str) -> None:
        """Create the table, empty, with its registered schema when it does not exist."""
        if self.exists(name):
            return
        spec = table_spec(name)
        from delta.tables import DeltaTable

        builder = DeltaTable.createIfNotExists(self.spark).location(self.path(name)).addColumns(spec.schema)
        if spec.partition_by:
            builder = builder.partitionedBy(*spec.partition_by)
        if spec.description:
            builder = builder.comment(spec.description)
        # no deletion vectors: delta-rs (the JVM-free `tables`, `verify`, `vacuum`) cannot read a table that
        # enables them, so decontaminate's delete rewrites the files it touches (the old ones go at VACUUM)
        builder.execute()

    def conform(self, name: str, df: DataFrame) -> DataFrame:
        """Select the registered columns in order, cast to the registered types."""
        spec = table_spec(name)
        have = {f.name: f.dataType for f in df.schema.fields}  # one analysis of the plan
        missing = [c for c in spec.column_names if c not in have]
        if missing:
            raise ValueError(f"cannot write {name}: missing columns {missing}")
        if list(have) == spec.column_names and all(have[f.name] == f.dataType for f in spec.schema.fields):
            return df  # already the registered columns and types, in order (a select of casts cost ~0.2 s)
        return df.select([F.col(f.name) if have[f.name] == f.dataType else F.col(f.name).cast(f.dataType).alias(f.name)
                          for f in spec.schema.fields])

    def merge_new_rows(self, name: str, df: DataFrame, stage: str) -> dict[str, int]:
        """Insert rows whose key is not in the table yet (idempotent). Returns Delta's operation metrics."""
        from delta.tables import DeltaTable

        self._commit_metadata(stage)  # before ensure: a table created here is created by this stage
        self.ensure(name)
        if self.is_empty(name):
            # nothing to match against (a first run): an append inserts the same rows without MERGE's
            # join and file rewrite, which made up much of a small stage's time
            self.append_rows(name, df, stage)
            metrics = self.last_operation_metrics(name)
            inserted = metrics.get("numOutputRows", 0)
            return {**metrics, "numTargetRowsInserted": inserted, "numSourceRows": inserted}
        spec = table_spec(name)
        source = self.conform(name, df)
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.key)
        before = self.version(name)
        self._commit_metadata(stage)
        (
            DeltaTable.forPath(self.spark, self.path(name))
            .alias("t")
            .merge(source.alias("s"), cond)
            .whenNotMatchedInsertAll()
            .execute()
        )
        if self.version(name) == before:
            # Delta skips the commit of a merge that changes nothing; record the run as a property
            # commit so every run that touched the table shows in its history.
            self.mark_run(name, stage)
            return {"numTargetRowsInserted": 0, "numSourceRows": 0}
        return self.last_operation_metrics(name)

    def is_empty(self, name: str) -> bool:
        """True when the table has no data files. A young table (its whole history still in a few commit
        files, no checkpoint) is judged from those files: no ``add`` action in any of them means no data
        was ever written (a few small reads instead of ``DESCRIBE DETAIL``'s snapshot job, ~2 s each time);
        an older table from Delta's own snapshot."""
        commits = self._commit_files(name)
        if commits and min(commits) == 0 and len(commits) <= _FEW_COMMITS:
            return not any('{"add":' in self._read_log_file(name, f) for f in commits.values())
        from delta.tables import DeltaTable

        detail = DeltaTable.forPath(self.spark, self.path(name)).detail().select("numFiles").first()
        assert detail is not None  # detail() is one row
        return bool(detail[0] == 0)

    def mark_run(self, name: str, stage: str) -> None:
        self._commit_metadata(stage)
        self.spark.sql(
            f"ALTER TABLE delta.`{self.path(name)}` SET TBLPROPERTIES ('medcorpus.last_run' = '{self.run_id}')"
        )

    def append_rows(self, name: str, df: DataFrame, stage: str) -> None:
        self._commit_metadata(stage)  # before ensure: a table created here is created by this stage
        self.ensure(name)
        self.conform(name, df).write.format("delta").mode("append").save(self.path(name))

    def overwrite_rows(self, name: str, df: DataFrame, stage: str) -> None:
        self._commit_metadata(stage)  # before ensure: a table created here is created by this stage
        self.ensure(name)
        (
            self.conform(name, df)
            .write.format("delta")
            .mode("overwrite")
            .option("overwriteSchema", "false")
            .save(self.path(name))
        )

    def sets_only_properties(self, name: str, version: int) -> bool:
        """The commit ``version`` only set table properties (``ALTER TABLE ... SET TBLPROPERTIES``: no file added
        or removed, no schema change), so the table's data equals that of ``version - 1``. False when the commit
        file is gone (log cleanup) or holds anything else."""
        file_name = f"{version:020d}.json"
        if file_name not in self._commit_files(name).values():
            return False
        actions = [json.loads(line) for line in self._read_log_file(name, file_name).splitlines() if line.strip()]
        kinds = {kind for action in actions for kind in action}
        operation = next((a["commitInfo"].get("operation") for a in actions if "commitInfo" in a), None)
        return operation == "SET TBLPROPERTIES" and kinds <= {"commitInfo", "metaData"}

    def last_operation_metrics(self, name: str) -> dict[str, int]:
        """The operation metrics of the table's latest commit, from its commit file's ``commitInfo``."""
        commits = self._commit_files(name)
        if not commits:
            return {}
        metrics: dict[str, Any] = {}
        for line in self._read_log_file(name, commits[max(commits)]).splitlines():
            if line.startswith('{"commitInfo":'):
                metrics = json.loads(line)["commitInfo"].get("operationMetrics") or {}
        return {k: int(v) for k, v in metrics.items() if str(v).isdigit()}

    def history(self, name: str, limit: int = 20) -> DataFrame:
        from delta.tables import DeltaTable

        if not self.exists(name):
            raise TableMissingError(f"table '{name}' does not exist at {self.path(name)}")
        return DeltaTable.forPath(self.spark, self.path(name)).history(limit)
