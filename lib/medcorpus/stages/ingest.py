"""ingest: source files -> raw_documents (records that cannot be read -> quarantine)."""

from __future__ import annotations

from typing import Any, ClassVar

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from medcorpus.core.errors import InputError
from medcorpus.core.stage import KEPT, QUARANTINED, REMOVED, Stage, is_kept, is_quarantined, tag, untagged
from medcorpus.readers import ingest as reader
from medcorpus.text.pii import Policy


def tag_records(records: DataFrame, existing_ids: DataFrame | None) -> DataFrame:
    """ok records are kept once per doc_id (a file listed twice, or read by an earlier run: already_ingested);
    quarantine records are quarantined; skipped ones removed, each with its reason."""
    first = F.row_number().over(Window.partitionBy("doc_id").orderBy("source", "source_file", "position")) == 1
    rows = records.withColumn("_first", F.when(F.col("status") == "ok", first))
    if existing_ids is not None:
        rows = rows.join(existing_ids.select("doc_id").withColumn("_seen", F.lit(True)), on="doc_id", how="left")
    else:
        rows = rows.withColumn("_seen", F.lit(None).cast("boolean"))
    status, why = F.col("status"), F.coalesce(F.col("reason"), F.col("status"))
    outcome = (F.when(status == "quarantine", F.lit(QUARANTINED))
               .when(status != "ok", F.lit(REMOVED))
               .when(F.col("_first") & F.col("_seen").isNull(), F.lit(KEPT))
               .otherwise(F.lit(REMOVED)))
    reason = (F.when(status != "ok", why)
              .when(F.col("_first") & F.col("_seen").isNull(), F.lit(None))
              .otherwise(F.lit("already_ingested")))
    return tag(rows, outcome, reason).drop("_first", "_seen")


class Ingest(Stage):
    name = "ingest"
    help = "read JSONL/Parquet/text/WARC sources into raw_documents"
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs = ("raw_documents", "quarantine")
    persist_pending = True  # the files are read once

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        parser.add_argument("sources", nargs="+", help="files or folders (local or s3a://)")
        parser.add_argument("--format", choices=["jsonl", "parquet", "text", "warc"], help="force a format")

    @classmethod
    def params_from(cls, args: Any) -> dict[str, Any]:
        return {"sources": list(args.sources), "forced_format": args.format}

    def pending(self) -> DataFrame:
        sources: list[str] = list(self.params.get("sources") or [])
        limits = reader.reader_limits(self.ctx.config)
        files: list[reader.SourceFile] = []
        for source in sources:
            files.extend(reader.list_source_files(self.ctx.spark, source, limits, self.params.get("forced_format")))
        if not files:
            raise InputError(f"no files found under {', '.join(sources) or '(no sources given)'}")
        records = reader.read_records(self.ctx.spark, files, limits, self.ctx.config.ingest.files_per_partition,
                                      Policy.of(self.ctx.config))
        return reader.with_doc_ids(records)

    def transform(self, pending: DataFrame) -> DataFrame:
        wh = self.ctx.warehouse
        existing = wh.read("raw_documents") if wh.exists("raw_documents") and not wh.is_empty("raw_documents") else None
        return tag_records(pending, existing)

    def write(self, tagged: DataFrame) -> int:
        pii = {
            r["key"]: int(r["n"])
            for r in tagged.select(F.explode(F.from_json("pii", "map<string,int>")))
            .groupBy("key").agg(F.sum("value").alias("n")).collect()
        }
        self.notes.append("pii redacted: " + (", ".join(f"{k}={v}" for k, v in sorted(pii.items())) or "none"))
        inserted = self.merge("raw_documents", reader.documents_of(untagged(tagged.filter(is_kept())), self.ctx.run_id))
        self.ctx.warehouse.merge_new_rows(
            "quarantine", reader.quarantine_of(untagged(tagged.filter(is_quarantined())), self.name, self.ctx.run_id),
            stage=self.name,
        )
        if inserted == 0:
            self.notes.insert(0, "no new records: every record was already ingested or quarantined")
        return inserted

