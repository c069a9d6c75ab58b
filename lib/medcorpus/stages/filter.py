"""filter: documents -> clean_documents (kept, PII-redacted) + filtered_out (removed, with rule and value)."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import Ledger, Stage, is_kept, is_removed, tag_by_reason
from medcorpus.filters import rules

log = logging.getLogger(__name__)


class Filter(Stage):
    name = "filter"
    help = "documents -> clean_documents (rule filters, PII redaction) + filtered_out"
    inputs = ("documents",)
    outputs = ("clean_documents", "filtered_out")

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        parser.add_argument("--explain", metavar="DOC_ID", help="print every rule's value for one document; writes nothing")

    def pending(self) -> DataFrame:
        wh = self.ctx.warehouse
        done = wh.read_or_empty("clean_documents").select("doc_id").unionByName(
            wh.read_or_empty("filtered_out").select("doc_id"))
        return wh.read("documents").join(done, on="doc_id", how="left_anti")

    def transform(self, pending: DataFrame) -> DataFrame:
        cfg = self.ctx.config.filter
        # Redacted text is persisted before scoring: a dozen signals read it, and Spark would otherwise
        # re-run the redaction regexes inside several of them.
        redacted = self.persist(rules.redact_pii(pending, cfg))
        return tag_by_reason(rules.decide(rules.score_documents(redacted, cfg), cfg), F.col("filter_rule"))

    def write(self, tagged: DataFrame) -> int:
        pii = {
            r["key"]: int(r["n"])
            for r in tagged.select(F.explode("pii_counts")).groupBy("key").agg(F.sum("value").alias("n")).collect()
        }
        self.notes.append("pii redacted: " + rules.format_counts(pii))
        inserted = self.merge("clean_documents", rules.clean_rows(tagged.filter(is_kept()), self.ctx.config.normalize,
                                                                   self.ctx.run_id))
        self.ctx.warehouse.merge_new_rows("filtered_out", rules.removed_rows(tagged.filter(is_removed()),
                                                                             self.ctx.run_id), stage=self.name)
        return inserted

    def finish(self, ledger: Ledger) -> None:
        log.info("filter: %d in, %d kept, removed per rule: %s; %s", ledger.total, ledger.kept,
                 rules.format_counts(ledger.reasons()), self.notes[-1] if self.notes else "")
