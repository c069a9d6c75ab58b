"""S3: sources and warehouse on a real S3-protocol server (moto's standalone server on 127.0.0.1).

The server is a separate process speaking HTTP, not an in-process patch: Spark's S3A (hadoop-aws and the
AWS SDK v2 from the project Ivy cache), pyarrow's S3 filesystem on the executors, boto3 and delta-rs all
talk to it over the network. The pipeline runs as a ``medcorpus`` subprocess with its own JVM (the shared
test session has no S3A jars); its tables are read back with delta-rs and compared with the same corpus
ingested from local files by the shared session.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from medcorpus.core.config import S3Config
from medcorpus.core.pipeline import RunContext, run_pipeline
from medcorpus.core.storage import exists, list_objects, read_bytes, s3_client, upload, write_bytes

REPO = Path(__file__).resolve().parents[1]
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server as a child process on a free loopback port."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"moto server did not start on {endpoint}")
            time.sleep(0.2)
    old = {k: os.environ.get(k) for k in CREDS}
    os.environ.update(CREDS)
    yield endpoint
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    proc.wait(timeout=10)


def _corpus(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "a.jsonl").write_text(
        "\n".join([
            json.dumps({"id": "1", "text": "Aspirin reduces fever and pain in adults."}),
            json.dumps({"id": "2", "text": "醫生說要多休息，多喝水。"}, ensure_ascii=False),
            "{not json",
        ]) + "\n",
        encoding="utf-8",
    )
    (root / "nested").mkdir()
    (root / "nested" / "b.jsonl.gz").write_bytes(
        gzip.compress("".join(json.dumps({"text": f"Patient {i} reports a mild headache."}) + "\n" for i in range(5)).encode())
    )
    (root / "nested" / "book.txt").write_bytes("<篇名>黄芪\r\n性味：甘，微温。\r\n".encode("gb18030"))
    return root


def _cfg(endpoint: str) -> S3Config:
    return S3Config(endpoint=endpoint)


def test_storage_helpers_list_upload_and_read(s3_endpoint, tmp_path):
    s3 = _cfg(s3_endpoint)
    s3_client(s3).create_bucket(Bucket="helpers")
    src = _corpus(tmp_path / "c")
    written = upload(src, "s3a://helpers/in", s3)
    assert len(written) == 3
    listed = list_objects("s3a://helpers/in", s3)
    assert [o.uri for o in listed] == [
        "s3a://helpers/in/a.jsonl", "s3a://helpers/in/nested/b.jsonl.gz", "s3a://helpers/in/nested/book.txt"
    ]
    assert listed[0].size == (src / "a.jsonl").stat().st_size
    assert exists("s3a://helpers/in", s3) and not exists("s3a://helpers/i", s3) and not exists("s3a://helpers/nope", s3)
    write_bytes("s3a://helpers/reports/r.json", b'{"ok": true}', s3)
    assert read_bytes("s3a://helpers/reports/r.json", s3) == b'{"ok": true}'


def _documents_rows(table) -> list[tuple]:  # type: ignore[no-untyped-def]
    return sorted(
        (r["source_file"].rsplit("/", 1)[-1], r["text"], r["lang"], r["t2s_converted"], r["text_hash"])
        for r in table.to_pylist()
    )


def test_pipeline_reads_s3a_sources_and_writes_s3a_warehouse(s3_endpoint, spark, make_config, tmp_path):
    from deltalake import DeltaTable

    s3 = _cfg(s3_endpoint)
    client = s3_client(s3)
    for bucket in ("corpus", "lake"):
        client.create_bucket(Bucket=bucket)
    src = _corpus(tmp_path / "src")
    upload(src, "s3a://corpus/medical", s3)

    env = dict(os.environ, **CREDS, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    cmd = [sys.executable, "-m", "medcorpus.cli", "run", "s3a://corpus/medical", "--until", "normalize",
           "--warehouse", "s3a://lake/wh", "--run-id", "s3-run", "--set", f"s3.endpoint={s3_endpoint}",
           "--set", "spark.shuffle_partitions=2", "--set", "spark.driver_memory=1g",
           "--set", "validate.enabled=false"]  # GX gates are tested in test_validation.py
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "[ingest] in=9 out=8 quarantined=1" in done.stdout

    keys = {o.uri for o in list_objects("s3a://lake/wh", s3)}
    assert "s3a://lake/wh/raw_documents/_delta_log/00000000000000000000.json" in keys
    opts = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": CREDS["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": CREDS["AWS_SECRET_ACCESS_KEY"]}
    remote = {name: DeltaTable(f"s3://lake/wh/{name}", storage_options=opts).to_pyarrow_table()
              for name in ("raw_documents", "documents", "quarantine", "run_log")}
    assert remote["raw_documents"].num_rows == 8
    assert all(u.startswith("s3a://corpus/medical/") for u in remote["raw_documents"].column("source_file").to_pylist())
    assert remote["quarantine"].column("reason").to_pylist() == ["malformed_json"]
    log = {r["stage"]: r for r in remote["run_log"].to_pylist()}
    assert set(log) == {"ingest", "normalize"} and log["normalize"]["rows_out"] == 8

    # the same files ingested from local disk by the shared session give the same documents
    ctx = RunContext.create(spark, make_config("run_id=local-run", "validate.enabled=false"))
    run_pipeline(ctx, [str(src)], until="normalize")
    local = DeltaTable(ctx.warehouse.path("documents")).to_pyarrow_table()
    assert _documents_rows(remote["documents"]) == _documents_rows(local)
