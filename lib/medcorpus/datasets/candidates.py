"""The rows the dataset stages start from: SFT candidates (imported sources + generated_qa), redacted.

The stages themselves are in ``medcorpus.stages`` (sft, preference, pretrain); the transforms in
``sft``, ``confilter``, ``preference`` and ``pretrain`` of this package.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.readers.formats import RAW_CHARS
from medcorpus.text.pii import redact_columns, redact_struct_arrays

log = logging.getLogger(__name__)

# The text of SFT candidates and preference pairs that the PII policy (medcorpus.text.pii) covers.
SFT_TEXT_COLUMNS = ("question", "answer", "explanation", "raw")
SFT_TEXT_ARRAYS = {"messages": ("content",), "options": ("text",), "responses": ("content",)}
PREFERENCE_TEXT_COLUMNS = ("prompt", "chosen", "rejected")


def redact_sft(candidates: DataFrame, config: Any) -> DataFrame:
    """SFT candidates with every text field PII-redacted: messages, options, responses, question, answer,
    explanation and the raw payload of records the importer rejected (quarantine)."""
    return redact_struct_arrays(redact_columns(candidates, SFT_TEXT_COLUMNS, config), SFT_TEXT_ARRAYS, config)


def quarantine_rows(errors: DataFrame) -> DataFrame:
    return errors.select(
        F.col("sample_id").alias("doc_id"),
        "source",
        "source_file",
        F.col("position").cast("long").alias("position"),
        F.col("error").alias("reason"),
        F.concat(F.lit("sft importer could not use the record: "), F.col("error")).alias("detail"),
        F.substring("raw", 1, RAW_CHARS).alias("raw"),  # cut only now, after redaction (no half-visible number)
    )


def generated_candidates(ctx: Any) -> DataFrame | None:
    """Rows of ``generated_qa`` (the LLM QA-generation stage) as SFT candidates, when that table exists."""
    if not ctx.warehouse.exists("generated_qa"):
        return None
    from medcorpus.readers.formats import CANDIDATE_SCHEMA

    gen = ctx.warehouse.read("generated_qa")
    cols = {f.name: F.lit(None).cast(f.dataType) for f in CANDIDATE_SCHEMA.fields}
    cols.update(
        sample_id=F.col("qa_id"), source=F.lit("generated_qa"), source_file=F.col("source_doc_id"),
        position=F.col("pair_index").cast("long"), type=F.col("type"), language=F.col("language"),
        messages=F.col("messages"),
    )
    return gen.select([cols[f.name].cast(f.dataType).alias(f.name) for f in CANDIDATE_SCHEMA.fields])
