"""Fault tolerance: SIGKILL the driver in the middle of a stage, rerun, and end where an uninterrupted run ends.

``medcorpus run`` runs as a subprocess in its own process group. The moment the ``documents`` table's
first commit appears (normalize has created the table and started its merge), the whole group — the
Python driver, its JVM and the Python workers — is killed, like a lost driver node. Then:

* no partial commit is visible: ``raw_documents`` (committed before the kill) is complete and
  ``documents`` holds no rows of the interrupted merge;
* rerunning the pipeline on the same warehouse yields exactly the rows of an uninterrupted run;
* rerunning a stage with the same input and config changes nothing (``run_log`` shows it skipped).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from medcorpus.core.pipeline import RunContext, run_pipeline
from medcorpus.stages import run_stage

REPO = Path(__file__).resolve().parents[1]
NO_GX = "validate.enabled=false"
RUN_SPECIFIC = {"ingest_run_id", "normalize_run_id", "run_id", "quarantined_at"}


def _corpus(root: Path) -> Path:
    root.mkdir()
    trad = "醫生說病人頭痛發熱，應該多休息多喝水，觀察三天。"
    for part in range(4):
        lines = [json.dumps({"id": f"{part}-{i}", "text": f"{trad} 病例{part}-{i}。" * 3}, ensure_ascii=False)
                 for i in range(300)]
        lines += ["{broken json", json.dumps({"id": f"{part}-empty", "text": "\u200b"})]
        (root / f"part-{part}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "book.txt").write_bytes(("<篇名>黄芪\r\n" + "性味：甘，微温。\r\n" * 50).encode("gb18030"))
    return root


def _rows(ctx: RunContext, name: str) -> list[tuple]:
    df = ctx.warehouse.read(name)
    cols = sorted(c for c in df.columns if c not in RUN_SPECIFIC)
    return sorted(tuple(r) for r in df.select(*cols).collect())


def _kill_when(proc: subprocess.Popen, marker: Path, log_path: Path, timeout: float = 1200) -> None:
    deadline = time.time() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            out = log_path.read_text(errors="replace")
            pytest.fail(f"run ended (rc={proc.returncode}) before {marker} appeared:\n{out[-3000:]}")
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{marker} did not appear within {timeout}s")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.mark.slow  # ~150 s (a killed subprocess run, a rerun and a clean run): `make test-slow`
def test_killed_run_reruns_to_the_uninterrupted_result(spark, make_config, tmp_path):
    src = _corpus(tmp_path / "src")
    killed_wh = tmp_path / "killed"
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    cmd = [sys.executable, "-m", "medcorpus.cli", "run", str(src), "--until", "normalize", "--warehouse", str(killed_wh),
           "--run-id", "killed", "--set", "spark.shuffle_partitions=2", "--set", "spark.driver_memory=1g",
           "--set", "validate.enabled=false"]  # GX gates are tested in test_validation.py; here they only cost time
    log_path = tmp_path / "killed-run.log"  # a file, not a pipe: an undrained pipe would stall the child
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        _kill_when(proc, killed_wh / "documents" / "_delta_log" / "00000000000000000000.json", log_path)
    assert proc.returncode == -signal.SIGKILL

    # what the kill left behind: ingest committed, normalize interrupted before its merge committed
    after_kill = RunContext.create(spark, make_config(f"warehouse={killed_wh}", "run_id=inspect", NO_GX))
    stages_logged = {r["stage"] for r in after_kill.warehouse.read("run_log").collect()}
    assert stages_logged == {"ingest"}, "the kill came after normalize finished; the test did not interrupt it"
    assert after_kill.warehouse.read("raw_documents").count() == 1205
    assert after_kill.warehouse.read("documents").count() == 0  # the interrupted merge is not visible

    # rerun on the damaged warehouse and an uninterrupted run elsewhere end with the same rows
    rerun = RunContext.create(spark, make_config(f"warehouse={killed_wh}", "run_id=rerun", NO_GX))
    reports = {r.stage: r for r in run_pipeline(rerun, [str(src)], until="normalize")}
    assert reports["ingest"].rows_out == 0 and reports["ingest"].removed_by_reason["already_ingested"] == 1205
    assert reports["normalize"].rows_out == 1201
    clean = RunContext.create(spark, make_config(f"warehouse={tmp_path / 'clean'}", "run_id=clean", NO_GX))
    run_pipeline(clean, [str(src)], until="normalize")
    for table in ("raw_documents", "documents", "quarantine"):
        assert _rows(rerun, table) == _rows(clean, table), table

    # the same stage again with the same input and config: no new rows, logged as skipped
    before = {t: rerun.warehouse.read(t).count() for t in ("raw_documents", "documents", "quarantine")}
    again = RunContext.create(spark, make_config(f"warehouse={killed_wh}", "run_id=again", NO_GX))
    ing, norm = run_stage(again, "ingest", sources=[str(src)]), run_stage(again, "normalize")
    assert (ing.rows_out, norm.rows_in, norm.rows_out) == (0, 0, 0)
    assert {t: again.warehouse.read(t).count() for t in before} == before
    log = {r["stage"]: r for r in again.warehouse.read("run_log").filter(F.col("run_id") == "again").collect()}
    assert log["ingest"]["rows_out"] == 0 and log["normalize"]["note"] == "no new input: skipped"
