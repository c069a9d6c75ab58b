"""normalize: raw_documents -> documents (text empty after normalization -> quarantine)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import QUARANTINED, Stage, is_kept, is_quarantined, tag, untagged
from medcorpus.text import normalize as normalize_mod

EMPTY_DETAIL = "text is empty after removing control/zero-width characters and whitespace"


def tag_empty(normalized: DataFrame) -> DataFrame:
    """Documents whose text is empty after normalization are quarantined; the others kept."""
    empty = normalize_mod.is_empty_text()
    return tag(normalized, F.when(empty, F.lit(QUARANTINED)).otherwise(F.lit("kept")),
               F.when(empty, F.lit("empty_after_normalize")))


class Normalize(Stage):
    name = "normalize"
    help = "raw_documents -> documents (Unicode, simplified Chinese, whitespace, language, PII)"
    inputs = ("raw_documents",)
    outputs = ("documents", "quarantine")

    def transform(self, pending: DataFrame) -> DataFrame:
        cfg = self.ctx.config
        return tag_empty(normalize_mod.normalize_documents(pending, cfg.normalize, self.ctx.run_id, cfg))

    def write(self, tagged: DataFrame) -> int:
        inserted = self.merge("documents", untagged(tagged.filter(is_kept())))
        empty = tagged.filter(is_quarantined()).select(
            "doc_id", "source", "source_file", F.lit(None).cast("long").alias("position"),
            F.lit("empty_after_normalize").alias("reason"), F.lit(EMPTY_DETAIL).alias("detail"),
            F.lit(None).cast("string").alias("raw"),
        )
        self.quarantine(empty)
        return inserted
