"""spark-submit on a real Spark standalone cluster (master + one worker on 127.0.0.1 from pyspark's jars).

The project goes to the cluster as a zip for ``--py-files`` (with schemas/ and configs/ beside it); the
submitted ``jobs/pipeline.py`` must write the same documents as the in-process local run, and its
tasks must have run in an executor the worker launched.
"""

from __future__ import annotations

import json

import pytest

from medcorpus.cluster import package_project, standalone_cluster, submit_pipeline, table_summary
from medcorpus.core.pipeline import RunContext, run_pipeline

pytestmark = pytest.mark.slow


def test_pipeline_submitted_to_standalone_cluster(spark, make_config, tmp_path):
    from deltalake import DeltaTable

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text(
        "".join(json.dumps({"id": str(i), "text": f"病人{i}頭痛發熱，醫生建議休息。"}, ensure_ascii=False) + "\n"
                for i in range(40)) + "{broken\n",
        encoding="utf-8",
    )
    (src / "b.txt").write_bytes("<篇名>黄芪\r\n性味：甘，微温。\r\n".encode("gb18030"))
    dist = tmp_path / "dist"
    archive = package_project(dist)
    assert (dist / "schemas" / "documents.json").exists() and archive.stat().st_size > 10_000

    warehouse = str(tmp_path / "wh")
    with standalone_cluster(tmp_path / "cluster", cores=2, memory="1g") as cluster:
        done = submit_pipeline(cluster, dist, [str(src)], warehouse, "cluster-run", until="normalize", timeout=600)
        executor_logs = cluster.executor_logs()
    assert done.returncode == 0, done.stderr[-4000:]
    assert executor_logs, "the worker launched no executor"

    summary = table_summary(warehouse, "cluster-run")
    assert summary["raw_documents"] == 41 and summary["quarantine"] == 1
    assert summary["run_log"]["normalize"]["rows_out"] == 41

    ctx = RunContext.create(spark, make_config("run_id=local"))
    run_pipeline(ctx, [str(src)], until="normalize")
    cols = ["doc_id", "text", "lang", "t2s_converted", "text_hash"]
    remote = sorted(map(tuple, DeltaTable(f"{warehouse}/documents").to_pandas(columns=cols).itertuples(index=False)))
    local = sorted(map(tuple, DeltaTable(ctx.warehouse.path("documents")).to_pandas(columns=cols).itertuples(index=False)))
    assert remote == local
