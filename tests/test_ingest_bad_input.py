"""Broken input through the whole ingest stage (Spark, Delta): every record ends in ``raw_documents``, in
``quarantine`` with a reason, or counted as removed — never a crash, never a silent loss.

One ingest run over a folder of hand-made broken files plus hypothesis-generated ones checks, per file,
that the rows the tables hold add up to the records the file contains (counted independently here).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from medcorpus.core.errors import InputError
from medcorpus.core.pipeline import RunContext
from medcorpus.stages import run_stage

GOOD = "Metformin lowers blood glucose in type 2 diabetes."


def _jsonl(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def _hand_made(root: Path) -> dict[str, dict[str, int]]:
    """Write the broken files; return per file the expected {ok, quarantine, reasons...} counts."""
    root.mkdir()
    expect: dict[str, dict[str, int]] = {}

    body = "".join(json.dumps({"text": f"{GOOD} #{i} " + "z" * 40}) + "\n" for i in range(300)).encode()
    full = gzip.compress(body)
    (root / "truncated.jsonl.gz").write_bytes(full[: len(full) // 2])
    expect["truncated.jsonl.gz"] = {"corrupt_compression": 1}  # plus the lines before the break (checked below)

    invalid_utf8 = json.dumps({"text": "x"}).encode()[:-2] + b"\xff\xfe\xfa\xfb\xfc\xfd\xfe\xff" * 20 + b'"}'
    (root / "mixed.jsonl").write_bytes(_jsonl([json.dumps({"text": GOOD})]) + invalid_utf8 + b"\n")
    expect["mixed.jsonl"] = {"ok": 1, "undecodable": 1}

    gbk = "\n".join(json.dumps({"text": f"患者咳嗽{i}天，伴低热。"}, ensure_ascii=False) for i in range(3)) + "\n"
    (root / "gbk.jsonl").write_bytes(gbk.encode("gbk"))
    expect["gbk.jsonl"] = {"ok": 3}

    with (root / "huge_line.jsonl").open("wb") as f:  # one 50 MB line, then a normal one
        f.write(b'{"text": "' + b"a" * (50 * 1024 * 1024) + b'"}\n')
        f.write(_jsonl([json.dumps({"text": GOOD})]))
    expect["huge_line.jsonl"] = {"ok": 1, "too_large": 1}

    (root / "huge_text.txt").write_bytes(b"b" * (50 * 1024 * 1024))
    expect["huge_text.txt"] = {"too_large": 1}

    garbage = bytes((i * 131 + 7) % 256 for i in range(20_000))
    (root / "garbage.txt").write_bytes(garbage)
    (root / "garbage.jsonl").write_bytes(garbage.replace(b"\n", b" "))
    (root / "garbage.parquet").write_bytes(b"PAR1" + garbage + b"PAR1")
    (root / "garbage.warc.gz").write_bytes(garbage)
    expect["garbage.txt"] = {"binary_content|undecodable": 1}
    expect["garbage.jsonl"] = {"undecodable|malformed_json": 1}
    expect["garbage.parquet"] = {"unreadable_parquet": 1}
    expect["garbage.warc.gz"] = {"corrupt_warc": 1}

    for name in ("empty.jsonl", "empty.txt", "empty.parquet", "empty.warc.gz"):
        (root / name).write_bytes(b"")
        expect[name] = {"empty_file": 1}
    (root / "blank_lines.jsonl").write_bytes(b"\n\n  \n")
    expect["blank_lines.jsonl"] = {"empty_file": 1}

    pq.write_table(pa.table({"body": ["no text column"] * 3}), root / "wrong_schema.parquet")
    pq.write_table(pa.table({"text": [1, 2, 3]}), root / "int_text.parquet")
    pq.write_table(pa.table({"text": [GOOD, None, "   "]}), root / "partly_null.parquet")
    expect["wrong_schema.parquet"] = {"parquet_schema": 1}
    expect["int_text.parquet"] = {"parquet_schema": 1}
    expect["partly_null.parquet"] = {"ok": 1, "missing_text": 1, "empty_text": 1}

    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + garbage[:100])
    expect["image.png"] = {"unsupported_format": 1}
    return expect


def _outcomes(ctx: RunContext) -> dict[str, dict[str, int]]:
    """Per source file name: rows in raw_documents ('ok') and in quarantine by reason (small aggregate)."""
    raw = ctx.warehouse.read("raw_documents").select("source_file", F.lit("ok").alias("outcome"))
    quarantine = ctx.warehouse.read("quarantine").select("source_file", F.col("reason").alias("outcome"))
    got: dict[str, dict[str, int]] = {}
    for r in raw.unionByName(quarantine).groupBy("source_file", "outcome").count().collect():
        got.setdefault(r["source_file"].rsplit("/", 1)[-1], {})[r["outcome"]] = int(r["count"])
    return got


def _matches(got: dict[str, int], want: dict[str, int]) -> bool:
    resolved = {}
    for key, n in want.items():
        options = [k for k in key.split("|") if k in got]
        if len(options) != 1:
            return False
        resolved[options[0]] = n
    return got == resolved


def test_broken_files_end_in_quarantine_and_counts_reconcile(spark, make_config, tmp_path):
    expect = _hand_made(tmp_path / "bad")
    ctx = RunContext.create(spark, make_config("run_id=bad-input"))
    report = run_stage(ctx, "ingest", sources=[str(tmp_path / "bad")])

    got = _outcomes(ctx)
    truncated = got.pop("truncated.jsonl.gz")
    assert truncated["corrupt_compression"] == 1 and 0 < truncated["ok"] < 300
    expect.pop("truncated.jsonl.gz")
    mismatched = {name: (got.get(name), want) for name, want in expect.items() if not _matches(got.get(name, {}), want)}
    assert not mismatched

    # the report and the tables agree, and nothing is unaccounted for
    assert report.rows_in == report.rows_out + report.rows_quarantined + report.rows_removed
    assert report.rows_out == ctx.warehouse.read("raw_documents").count()
    assert report.rows_quarantined == ctx.warehouse.read("quarantine").count()
    assert report.rows_removed == 0
    q = ctx.warehouse.read("quarantine")
    assert q.filter(F.col("reason").isNull() | F.col("detail").isNull()).count() == 0
    assert q.agg(F.max(F.length("raw"))).first()[0] <= ctx.config.ingest.quarantine_payload_chars


def test_missing_or_empty_input_is_a_clear_error(spark, make_config, tmp_path):
    ctx = RunContext.create(spark, make_config())
    with pytest.raises(InputError, match="input path does not exist"):
        run_stage(ctx, "ingest", sources=[str(tmp_path / "nowhere")])
    (tmp_path / "hollow").mkdir()
    with pytest.raises(InputError, match="no files found"):
        run_stage(ctx, "ingest", sources=[str(tmp_path / "hollow")])


_EXT = st.sampled_from([".jsonl", ".jsonl.gz", ".txt", ".parquet", ".warc.gz", ".md"])
_LINE = st.one_of(
    st.text(max_size=60).map(lambda t: json.dumps({"text": t}, ensure_ascii=False)),
    st.text(max_size=60),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=3, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(files=st.lists(st.tuples(_EXT, st.lists(_LINE, max_size=8), st.booleans()), min_size=1, max_size=12))
def test_fuzzed_folders_reconcile_end_to_end(spark, make_config, tmp_path_factory, files):
    root = tmp_path_factory.mktemp("fuzz")
    for i, (ext, lines, cut) in enumerate(files):
        data = ("\n".join(lines)).encode("utf-8", errors="surrogatepass")
        if ext.endswith(".gz"):
            data = gzip.compress(data)
            data = data[: len(data) // 2] if cut else data
        (root / f"f{i:02d}{ext}").write_bytes(data)
    ctx = RunContext.create(spark, make_config(f"warehouse={tmp_path_factory.mktemp('fuzzwh') / 'wh'}"))
    report = run_stage(ctx, "ingest", sources=[str(root)])
    assert report.rows_in == report.rows_out + report.rows_quarantined + report.rows_removed
    raw = ctx.warehouse.read("raw_documents")
    assert raw.count() == report.rows_out
    assert ctx.warehouse.read("quarantine").count() == report.rows_quarantined
    # every file shows up somewhere: a document, a quarantine row, or (WARC) a skipped record
    seen = {r["source_file"].rsplit("/", 1)[-1] for r in raw.select("source_file").unionByName(
        ctx.warehouse.read("quarantine").select("source_file")).distinct().collect()}
    files_with_records = {f"f{i:02d}{ext}" for i, (ext, _, _) in enumerate(files)}
    assert files_with_records - seen <= {n for n in files_with_records if n.endswith(".warc.gz")}
