"""Ingest + normalize on real Delta tables: idempotent, reconciled, quarantined with reasons."""

import gzip
import json

from pyspark.sql import functions as F

from medcorpus.core.pipeline import RunContext
from medcorpus.stages import run_stage


def _write_sources(root):
    root.mkdir()
    (root / "a.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"id": "1", "text": "Aspirin reduces fever and pain."}),
                json.dumps({"id": "2", "text": "醫生說要多休息。"}, ensure_ascii=False),
                "{broken",
                json.dumps({"id": "4", "text": ""}),
                json.dumps({"id": "5", "text": "\u200b\u200b"}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    (root / "b.jsonl.gz").write_bytes(gzip.compress(json.dumps({"text": "Plain general text about the weather."}).encode()))
    (root / "book.txt").write_bytes("<篇名>本草\r\n黄芪，补气。\r\n".encode("gb18030"))
    (root / "notes.bin").write_bytes(b"\x00\x01")
    (root / "_SUCCESS").write_bytes(b"")
    return root


def _run_log(ctx):
    return {r["stage"]: r for r in ctx.warehouse.read("run_log").filter(F.col("run_id") == ctx.run_id).collect()}


def test_ingest_normalize_and_rerun_is_idempotent(spark, make_config, tmp_path):
    src = _write_sources(tmp_path / "src")
    ctx = RunContext.create(spark, make_config("run_id=r1"))
    rep = run_stage(ctx, "ingest", sources=[str(src)])
    assert (rep.rows_in, rep.rows_out, rep.rows_quarantined) == (8, 5, 3)
    assert rep.removed_by_reason == {"malformed_json": 1, "empty_text": 1, "unsupported_format": 1}

    raw = ctx.warehouse.read("raw_documents")
    assert raw.count() == 5
    assert raw.select("doc_id").distinct().count() == 5
    book = raw.filter(F.col("source_format") == "text").first()
    assert book["encoding"] == "gb18030" and "黄芪" in book["text"]

    q = {r["reason"]: r for r in ctx.warehouse.read("quarantine").collect()}
    assert set(q) == {"malformed_json", "empty_text", "unsupported_format"}
    assert q["malformed_json"]["position"] == 3 and q["malformed_json"]["raw"] == "{broken"
    assert q["unsupported_format"]["position"] == -1

    norm = run_stage(ctx, "normalize")
    assert (norm.rows_in, norm.rows_out, norm.rows_quarantined) == (5, 4, 1)
    docs = {r["text"]: r for r in ctx.warehouse.read("documents").collect()}
    assert docs["医生说要多休息。"]["t2s_converted"] is True
    assert docs["Aspirin reduces fever and pain."]["lang"] == "en"

    log = _run_log(ctx)
    for stage in ("ingest", "normalize"):
        r = log[stage]
        assert r["rows_in"] == r["rows_out"] + r["rows_quarantined"] + r["rows_removed"]
        assert sum(r["removed_by_reason"].values()) == r["rows_quarantined"] + r["rows_removed"]

    # second run: same rows, a new table version, everything accounted as already done
    v_before = ctx.warehouse.version("raw_documents")
    ctx2 = RunContext.create(spark, make_config("run_id=r2"))
    rep2 = run_stage(ctx2, "ingest", sources=[str(src)])
    assert (rep2.rows_in, rep2.rows_out) == (8, 0)
    assert rep2.removed_by_reason["already_ingested"] == 5
    assert ctx2.warehouse.read("raw_documents").count() == 5
    assert ctx2.warehouse.version("raw_documents") == v_before + 1
    assert ctx2.warehouse.read("quarantine").count() == 4  # 3 from ingest + 1 from normalize, no duplicates
    norm2 = run_stage(ctx2, "normalize")
    assert norm2.rows_in == 0 and norm2.note == "no new input: skipped"


def test_commits_carry_run_id_and_config_hash(spark, make_config, tmp_path):
    src = tmp_path / "s"
    src.mkdir()
    (src / "x.jsonl").write_text(json.dumps({"text": "hello world, a small document"}) + "\n")
    cfg = make_config("run_id=meta-run")
    ctx = RunContext.create(spark, cfg)
    run_stage(ctx, "ingest", sources=[str(src)])
    meta = json.loads(ctx.warehouse.history("raw_documents", 1).first()["userMetadata"])
    assert meta == {"run_id": "meta-run", "stage": "ingest", "config_hash": cfg.hash()}


def test_tables_are_readable_by_delta_rs(spark, make_config, tmp_path):
    from deltalake import DeltaTable

    src = tmp_path / "s"
    src.mkdir()
    (src / "x.jsonl").write_text("".join(json.dumps({"text": f"doc number {i}"}) + "\n" for i in range(7)))
    ctx = RunContext.create(spark, make_config())
    run_stage(ctx, "ingest", sources=[str(src)])
    table = DeltaTable(ctx.warehouse.path("raw_documents")).to_pyarrow_table()
    assert table.num_rows == 7
    assert sorted(table.column("position").to_pylist()) == list(range(1, 8))
