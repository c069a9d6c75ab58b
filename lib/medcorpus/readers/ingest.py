"""Ingest: source files -> one row per record, each a document or a quarantine entry.

``list_source_files`` lists through Hadoop's FileSystem on the driver (local paths and ``s3a://`` alike;
the listing grows with the number of files, not their size). ``read_records`` spreads the files over
tasks and streams each one through :mod:`medcorpus.readers.sources` in ``mapInArrow``. ``with_doc_ids`` derives
the stable id in Spark.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from medcorpus.core.config import Config
from medcorpus.core.errors import InputError
from medcorpus.readers.sources import FORMATS, ReaderLimits, Record, detect_format, is_hidden, read_file
from medcorpus.text.pii import Policy, redact_json_string, redact_text

log = logging.getLogger(__name__)

FILE_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField("source_file", StringType(), False),
        StructField("source_format", StringType(), True),
        StructField("file_size", LongType(), False),
    ]
)

RECORD_SCHEMA = StructType(
    [
        StructField("status", StringType(), False),
        StructField("source", StringType(), False),
        StructField("source_file", StringType(), False),
        StructField("source_format", StringType(), True),
        StructField("position", LongType(), False),
        StructField("reason", StringType(), True),
        StructField("detail", StringType(), True),
        StructField("record_key", StringType(), True),
        StructField("text", StringType(), True),
        StructField("url", StringType(), True),
        StructField("title", StringType(), True),
        StructField("meta", StringType(), True),
        StructField("encoding", StringType(), True),
        StructField("raw", StringType(), True),
        StructField("pii", StringType(), True),  # JSON {type: redactions} of this record, null when none
    ]
)

_ARROW_SCHEMA = pa.schema(
    [pa.field(f.name, pa.int64() if isinstance(f.dataType, LongType) else pa.string(), f.nullable) for f in RECORD_SCHEMA]
)


@dataclass(frozen=True)
class SourceFile:
    source: str
    source_file: str
    source_format: str | None
    file_size: int


def reader_limits(config: Config) -> ReaderLimits:
    ing = config.ingest
    return ReaderLimits(
        max_record_bytes=ing.max_record_bytes,
        max_line_bytes=ing.max_line_bytes,
        payload_chars=ing.quarantine_payload_chars,
        max_replacement_ratio=ing.max_replacement_ratio,
        text_field=ing.text_field,
        s3_endpoint=config.s3.endpoint,
        s3_region=config.s3.region,
        s3_access_key_env=config.s3.access_key_env,
        s3_secret_key_env=config.s3.secret_key_env,
        extensions={
            "jsonl": ing.jsonl_extensions,
            "parquet": ing.parquet_extensions,
            "text": ing.text_extensions,
            "warc": ing.warc_extensions,
        },
    )


def list_source_files(
    spark: SparkSession, source: str, limits: ReaderLimits, forced_format: str | None = None
) -> list[SourceFile]:
    """Every data file under ``source`` (a file or a folder, recursively), sorted by URI."""
    if forced_format is not None and forced_format not in FORMATS:
        raise InputError(f"unknown --format {forced_format!r}; choose one of {', '.join(FORMATS)}")
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # a live SparkContext has its JVM view
    hconf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    path = jvm.org.apache.hadoop.fs.Path(source)
    fs = path.getFileSystem(hconf)
    if not fs.exists(path):
        raise InputError(f"input path does not exist: {source}")
    qualified = fs.makeQualified(path).toString()
    files: list[SourceFile] = []
    iterator = fs.listFiles(path, True)
    while iterator.hasNext():
        status = iterator.next()
        uri = status.getPath().toString()
        if is_hidden(uri.removeprefix(qualified)) or is_hidden(uri):
            continue
        fmt = forced_format or detect_format(uri, limits.extensions)
        files.append(SourceFile(source, uri, fmt, int(status.getLen())))
    listed = {f.source_file for f in files}
    for uri in broken_links(source):
        if uri not in listed and not is_hidden(uri.removeprefix(qualified)):
            log.warning("ingest: %s is a dangling or looping symlink; it becomes a quarantine row", uri)
            files.append(SourceFile(source, uri, BROKEN_LINK, 0))
    files.sort(key=lambda f: f.source_file)
    log.info("ingest: %d files under %s (%s)", len(files), source, _format_counts(files))
    return files


#: ``source_format`` of a listed symlink that cannot be read (dangling or looping): quarantined, never read.
BROKEN_LINK = "broken_symlink"


def broken_links(source: str) -> list[str]:
    """``file:`` URIs of the symlinks under a local ``source`` that point nowhere or into a loop.

    Hadoop's listing skips them without a word; they are listed here so each becomes a quarantine row.
    """
    if "://" in source and not source.startswith("file:"):
        return []
    root = Path(source.removeprefix("file:"))
    candidates = [root] if root.is_symlink() else []
    if root.is_dir():
        for folder, _dirs, names in os.walk(root):  # followlinks=False: a looping folder link is not entered
            candidates.extend(Path(folder) / n for n in names)
    out = []
    for path in candidates:
        if path.is_symlink() and not _readable_target(path):
            out.append("file:" + str(path.absolute()))
    return sorted(out)


def _readable_target(path: Path) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:  # ENOENT (dangling), ELOOP (loop), EACCES
        return False


def _link_problem(uri: str) -> str:
    path = uri.removeprefix("file:")
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    try:
        os.stat(path)
        return f"symlink to {target} became readable after listing"
    except OSError as err:
        what = "loops" if err.errno == errno.ELOOP else "points to nothing" if err.errno == errno.ENOENT else "unreadable"
        return f"symlink {what} ({target}): {err.strerror}"


def _format_counts(files: list[SourceFile]) -> str:
    counts: dict[str, int] = {}
    for f in files:
        key = f.source_format or "unsupported"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def files_frame(spark: SparkSession, files: list[SourceFile], files_per_partition: int) -> DataFrame:
    """The file list as a DataFrame spread over enough partitions that each task reads a few files."""
    partitions = max(1, -(-len(files) // max(1, files_per_partition)))
    # big files first so the longest tasks start early; round-robin keeps it deterministic
    rows = [asdict(f) for f in sorted(files, key=lambda f: (-f.file_size, f.source_file))]
    return spark.createDataFrame(rows, FILE_SCHEMA).repartition(partitions)


def _records_to_batch(rows: list[dict[str, object]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=_ARROW_SCHEMA)


def redact_record(rec: Record, policy: Policy, raw_chars: int | None = None) -> dict[str, int]:
    """Redact every text field of ``rec`` in place (text, title, url, meta, the quarantine payload and
    detail); returns the redactions per type. Nothing read at ingest is stored unredacted.

    ``raw`` is cut to ``raw_chars`` only after redaction (the readers' preview runs a little past it), so a
    number straddling the cut is never left half visible."""
    counts: dict[str, int] = {}
    for name in ("text", "title", "url", "raw", "detail"):
        value, found = redact_text(getattr(rec, name), policy)
        setattr(rec, name, value)
        for k, n in found.items():
            counts[k] = counts.get(k, 0) + n
    rec.meta = redact_json_string(rec.meta, policy)
    if rec.raw is not None and raw_chars is not None:
        rec.raw = rec.raw[:raw_chars]
    return counts


def _record_row(rec: Record, source: str, source_file: str, fmt: str | None, policy: Policy,
                raw_chars: int | None = None) -> dict[str, object]:
    counts = redact_record(rec, policy, raw_chars)
    row = asdict(rec)
    row.update(source=source, source_file=source_file, source_format=fmt,
               pii=json.dumps(counts, sort_keys=True) if counts else None)
    return row


def _read_partition(limits: ReaderLimits, batch_rows: int, batch_chars: int,  # type: ignore[no-untyped-def]
                    policy: Policy | None = None):
    policy = policy or Policy()  # never unredacted, even when a caller passes no policy

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        pending: list[dict[str, object]] = []
        chars = 0
        for batch in batches:
            for item in batch.to_pylist():
                src, uri, fmt = item["source"], item["source_file"], item["source_format"]
                if fmt == BROKEN_LINK:
                    records: Iterator[Record] = iter(
                        [Record("quarantine", -1, reason="broken_symlink", detail=_link_problem(uri))]
                    )
                elif fmt is None:
                    records = iter(
                        [Record("quarantine", -1, reason="unsupported_format", detail=f"unknown file type: {uri}")]
                    )
                elif item["file_size"] == 0:
                    records = iter([Record("quarantine", -1, reason="empty_file", detail="file is 0 bytes")])
                else:
                    records = read_file(uri, fmt, limits)
                for rec in records:
                    pending.append(_record_row(rec, src, uri, fmt, policy, limits.payload_chars))
                    chars += len(rec.text or "") + len(rec.raw or "")
                    if len(pending) >= batch_rows or chars >= batch_chars:
                        yield _records_to_batch(pending)
                        pending, chars = [], 0
        if pending:
            yield _records_to_batch(pending)

    return run


def read_records(
    spark: SparkSession, files: list[SourceFile], limits: ReaderLimits, files_per_partition: int = 4,
    policy: Policy | None = None,
) -> DataFrame:
    """One row per record (status ok / quarantine / skipped) of every file, read on the executors.

    Every text field is PII-redacted there with ``policy`` (:mod:`medcorpus.text.pii`; None = the default
    policy), before anything reaches a table.
    """
    if not files:
        return spark.createDataFrame([], RECORD_SCHEMA)
    frame = files_frame(spark, files, files_per_partition)
    return frame.mapInArrow(_read_partition(limits, 1000, 32_000_000, policy or Policy()), RECORD_SCHEMA)


def doc_id_expr(source_file: Column, position: Column) -> Column:
    """sha256(file URI + '#' + position), first 32 hex chars: stable across reruns and partitionings."""
    return F.substring(F.sha2(F.concat_ws("#", source_file, position.cast("string")), 256), 1, 32)


def with_doc_ids(records: DataFrame) -> DataFrame:
    return records.withColumn("doc_id", doc_id_expr(F.col("source_file"), F.col("position")))


def documents_of(records: DataFrame, run_id: str) -> DataFrame:
    """The ok records shaped as ``raw_documents`` rows."""
    return (
        records.filter(F.col("status") == F.lit("ok"))
        .withColumn("byte_size", F.octet_length("text").cast("long"))
        .withColumn("ingest_run_id", F.lit(run_id))
        .dropDuplicates(["doc_id"])  # the same file listed twice (overlapping sources) yields each id once
    )


def quarantine_of(records: DataFrame, stage: str, run_id: str) -> DataFrame:
    """The quarantined records shaped as ``quarantine`` rows."""
    return (
        records.filter(F.col("status") == F.lit("quarantine"))
        .withColumn("run_id", F.lit(run_id))
        .withColumn("stage", F.lit(stage))
        .withColumn(
            "quarantine_id",
            F.substring(
                F.sha2(F.concat_ws("#", F.lit(stage), F.col("source_file"), F.col("position").cast("string"),
                                   F.col("reason")), 256),
                1,
                32,
            ),
        )
        .withColumn("doc_id", F.when(F.col("position") >= 0, F.col("doc_id")))
        .withColumn("quarantined_at", F.current_timestamp())
        .dropDuplicates(["quarantine_id"])
    )
