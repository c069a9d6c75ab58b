"""Progress within a stage (issue 21): every ``Stage.run`` logs Spark's status-tracker progress every
``spark.progress_seconds``, and its thread ends with the stage, also when the stage fails."""

from __future__ import annotations

import logging
import threading

import pytest
from pyspark.sql import functions as F

from medcorpus.core.context import RunContext
from medcorpus.core.runlog import ReconciliationError
from medcorpus.stages import run_stage
from medcorpus.stages.normalize import Normalize


def _raw_documents(ctx, n: int) -> None:
    from tests.conftest import as_table

    df = ctx.spark.createDataFrame([(f"d{i}", f"第{i}篇文档：高血压患者应低盐饮食。") for i in range(n)],
                                   "doc_id string, text string")
    ctx.warehouse.merge_new_rows("raw_documents", as_table(df.withColumn("byte_size", F.length("text")), "raw_documents"),
                                 "ingest")


def _progress_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("progress-")]


def test_a_stage_logs_progress_from_the_status_tracker_and_stops_its_thread(spark, make_config, caplog):
    ctx = RunContext.create(spark, make_config("run_id=progress-run", "spark.progress_seconds=0.02"))
    assert ctx.config.spark.progress_seconds == 0.02
    assert ctx.config.hash() == RunContext.create(spark, make_config("run_id=x")).config.hash()  # changes no result
    _raw_documents(ctx, 4)
    with caplog.at_level(logging.INFO, logger="medcorpus.progress"):
        report = run_stage(ctx, "normalize")
    assert report.rows_in == 4
    lines = [r.getMessage() for r in caplog.records if r.name == "medcorpus.progress"]
    assert lines and all(line.startswith("normalize: Spark job ") and " tasks done, " in line for line in lines)
    assert _progress_threads() == []  # the thread ended with the stage

    class Failing(Normalize):
        def transform(self, pending):
            return super().transform(pending).filter(F.col("doc_id") != "d9")

    _raw_documents(ctx, 10)  # d4..d9 pending; the transform loses d9
    with pytest.raises(ReconciliationError):
        Failing(ctx).run()
    assert _progress_threads() == []  # also after an exception


def test_progress_off_starts_no_thread(spark, make_config):
    from medcorpus.core.progress import SparkProgress

    ctx = RunContext.create(spark, make_config("spark.progress_seconds=0"))
    with SparkProgress(ctx.spark, "off", every=ctx.config.spark.progress_seconds) as p:
        assert _progress_threads() == []
    assert p.lines == []
