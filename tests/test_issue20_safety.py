"""Issue 20, the hostile run: one test per case that held only after the fix (numbers are the issue's)."""

from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from medcorpus.cli import main
from medcorpus.core.config import load_config
from medcorpus.core.errors import ConfigError
from medcorpus.readers.sources import ReaderLimits, read_file
from medcorpus.stages import run_stage

PHONE, EMAIL, ID = "13912345678", "zhang.san@example.com", "110101199003071233"
CARD = "6222021234567890128"  # Luhn-valid, 19 digits
PII_VALUES = (PHONE, EMAIL, ID, CARD)


def _no_pii(value: object) -> None:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    for pii in PII_VALUES:
        assert pii not in text, f"{pii} survived in {text[:300]}"


@pytest.fixture
def no_spark(monkeypatch):
    """A CLI check that must fail before Spark starts: building a session fails the test."""
    from medcorpus.core import session

    def boom(config):
        raise AssertionError("Spark was started")

    monkeypatch.setattr(session, "build_spark", boom)


# ---------------------------------------------------------------------------------------------------
# 1. export deletes outside --out; release names unvalidated
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", "a\\b", ".hidden", "", "x" * 200, "名字", "a b"])
def test_release_and_export_refuse_unsafe_names_before_spark(name, tmp_path, capsys, no_spark):
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    out = tmp_path / "out"
    assert main(["release", name, "--warehouse", str(tmp_path / "wh")]) == 2
    assert main(["export", name, "--out", str(out), "--warehouse", str(tmp_path / "wh")]) == 2
    err = capsys.readouterr().err
    assert err.count("error: bad release name") == 2 and "Traceback" not in err
    assert keep.read_text() == "mine" and not out.exists()


def _fake_release(monkeypatch, files: dict[str, str]):
    from medcorpus.datasets import release

    def write(ctx, name, fmt, rel, tmp, **_options):
        assert tmp.parent == out_dir[0] and tmp.name.startswith(f".{name}.")  # a temp folder inside --out
        for rel_path, text in files.items():
            (tmp / rel_path).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel_path).write_text(text)
        (tmp / "manifest.json").write_text(json.dumps({"release": name, "files": []}))

    out_dir: list[Path] = []
    monkeypatch.setattr(release, "release_row", lambda ctx, name: {"release": name})
    monkeypatch.setattr(release, "_write_export", write)
    return out_dir


def test_export_writes_a_temp_folder_inside_out_and_never_deletes_what_it_did_not_create(tmp_path, monkeypatch):
    from medcorpus.datasets.release import ReleaseError, export_release

    out = tmp_path / "out"
    (out / "r0").mkdir(parents=True)
    (out / "r0" / "manifest.json").write_text(json.dumps({"release": "r0", "files": []}))
    (out / "notes.txt").write_text("mine")
    (out / "r2").mkdir()
    (out / "r2" / "data.bin").write_text("someone else's")
    sibling = tmp_path / "sibling.txt"
    sibling.write_text("outside --out")
    out_dir = _fake_release(monkeypatch, {"sft/train.jsonl": "{}\n"})
    out_dir.append(out)

    target = export_release(None, "r1", "jsonl", out)
    assert target == out / "r1" / "jsonl" and (target / "sft/train.jsonl").read_text() == "{}\n"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "r0", "r1", "r2"]  # no temp folder left
    assert export_release(None, "r1", "jsonl", out) == target  # the same export again: a no-op
    with pytest.raises(ReleaseError, match="r2 already exists and is not an export"):
        export_release(None, "r2", "jsonl", out)
    assert (out / "r2" / "data.bin").read_text() == "someone else's"
    assert (out / "notes.txt").read_text() == "mine" and sibling.read_text() == "outside --out"
    assert (out / "r0" / "manifest.json").exists()


def test_cli_export_refuses_a_folder_it_did_not_write_before_spark(tmp_path, capsys, no_spark):
    out = tmp_path / "dist"
    (out / "v1").mkdir(parents=True)
    (out / "v1" / "mine.txt").write_text("x")
    assert main(["export", "v1", "--out", str(out), "--warehouse", str(tmp_path / "wh")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already exists and is not an export of release 'v1'" in err
    assert (out / "v1" / "mine.txt").read_text() == "x"


def test_export_into_a_file_is_one_line(tmp_path, monkeypatch):
    from medcorpus.datasets.release import ReleaseError, export_release

    _fake_release(monkeypatch, {})
    (tmp_path / "f").write_text("x")
    with pytest.raises(ReleaseError, match="is a file"):
        export_release(None, "r1", "jsonl", tmp_path / "f")
    assert (tmp_path / "f").read_text() == "x"


# ---------------------------------------------------------------------------------------------------
# 2. SFT data never PII-redacted (and the preference pairs built from it)
# ---------------------------------------------------------------------------------------------------
def test_sft_and_preference_tables_are_redacted(spark, make_config, tmp_path):
    from medcorpus.core.pipeline import RunContext

    src = tmp_path / "sft"
    src.mkdir()
    with (src / "alpaca.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(3):
            fh.write(json.dumps({"instruction": f"患者{i}的电话{PHONE}，邮箱{EMAIL}，请给出高血压的用药建议和复查安排。",
                                 "input": f"身份证{ID}", "output": f"请到医院复诊，退款至银行卡{CARD}。建议规律服用降压药，"
                                 "低盐饮食，每周监测血压并记录，三个月后复查肾功能和血钾。"}, ensure_ascii=False) + "\n")
        fh.write("{broken json " + PHONE + "\n")
    with (src / "exam.jsonl").open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "q1", "question": f"患者电话{PHONE}，首选降压药是", "options":
                             {"A": "氨氯地平", "B": f"联系{EMAIL}", "C": "阿莫西林"}, "answer": "A",
                             "explanation": f"身份证{ID}的患者首选氨氯地平。"}, ensure_ascii=False) + "\n")
    sources = [{"name": "pii_alpaca", "format": "alpaca_jsonl", "path": str(src / "alpaca.jsonl")},
               {"name": "pii_exam", "format": "mc_jsonl", "path": str(src / "exam.jsonl")}]
    ctx = RunContext.create(spark, make_config("run_id=pii", "datasets.sft_sources=" + json.dumps(sources),
                                               "datasets.deita_threshold=0", "datasets.decontaminate=false",
                                               "datasets.confilter_min_count=1"))
    run_stage(ctx, "sft")
    sft = [r.asDict(recursive=True) for r in ctx.warehouse.read("sft").collect()]
    assert len(sft) == 4
    _no_pii(sft)
    assert any("<PHONE>" in m["content"] for r in sft for m in r["messages"])
    quarantine = [r.asDict() for r in ctx.warehouse.read("quarantine").filter(F.col("stage") == "sft").collect()]
    assert quarantine and all("<PHONE>" in (r["raw"] or "") for r in quarantine)
    _no_pii(quarantine)
    run_stage(ctx, "preference")
    pairs = [r.asDict() for r in ctx.warehouse.read("preference").collect()]
    assert pairs
    _no_pii(pairs)


# ---------------------------------------------------------------------------------------------------
# 3. a gzip with junk appended loses valid records silently
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [200, 20_000])
def test_gzip_with_junk_keeps_every_record_and_says_how_many_bytes_were_lost(tmp_path, n):
    data = b"".join(json.dumps({"id": i, "text": f"record {i} " + "x" * 40}).encode() + b"\n" for i in range(n))
    path = tmp_path / "junk.jsonl.gz"
    path.write_bytes(gzip.compress(data) + b"JUNK" * 250)
    records = list(read_file(str(path), "jsonl", ReaderLimits()))
    assert sum(r.status == "ok" for r in records) == n
    (broken,) = [r for r in records if r.status != "ok"]
    assert broken.reason == "corrupt_compression" and broken.position == n + 1
    lost = int(re.search(r"(\d+) compressed bytes lost", broken.detail).group(1))
    assert 996 <= lost <= 1000  # the 1,000 junk bytes, less the few read before the bad header showed


def test_gzip_corrupt_in_the_middle_keeps_the_records_before_the_break(tmp_path):
    data = b"".join(json.dumps({"text": f"line {i} {i * 7919}"}).encode() + b"\n" for i in range(20_000))
    blob = gzip.compress(data)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2] + b"\xff" * 64 + blob[len(blob) // 2 + 64:])
    records = list(read_file(str(path), "jsonl", ReaderLimits()))
    ok = [r for r in records if r.status == "ok"]
    assert len(ok) > 9_000  # previously the whole 64 KiB chunk holding the break was dropped
    assert [r.text for r in ok[:3]] == ["line 0 0", "line 1 7919", "line 2 15838"]
    assert records[-1].reason == "corrupt_compression" and "compressed bytes lost" in records[-1].detail


# ---------------------------------------------------------------------------------------------------
# 4 and 5: PII formats (tests/test_redact.py), and title, url, meta, quarantine raw (13) at ingest/normalize
# ---------------------------------------------------------------------------------------------------
def test_ingest_and_normalize_redact_text_title_url_meta_and_quarantine_raw(spark, make_config, tmp_path):
    from medcorpus.core.pipeline import RunContext

    src = tmp_path / "src"
    src.mkdir()
    good = {"id": "d1", "text": f"高血压患者应规律服药。联系电话{PHONE}，邮箱{EMAIL}。" * 3,
            "title": f"患者{ID}的病历", "url": "https://admin:s3cr3t@example.org/case?tel=" + PHONE,
            "meta": {"contact": {"phone": PHONE, "card": CARD}}}
    lines = [json.dumps(good, ensure_ascii=False), "{not json " + PHONE + " " + EMAIL,
             json.dumps({"body": f"no text field {ID}"})]
    (src / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ctx = RunContext.create(spark, make_config("run_id=pii-ingest"))
    report = run_stage(ctx, "ingest", sources=[str(src)])
    assert "PHONE=" in report.note and "EMAIL=" in report.note
    run_stage(ctx, "normalize")
    for table in ("raw_documents", "documents", "quarantine"):
        rows = [r.asDict() for r in ctx.warehouse.read(table).collect()]
        assert rows, table
        _no_pii(rows)
        assert "s3cr3t" not in json.dumps(rows, ensure_ascii=False, default=str)
    doc = ctx.warehouse.read("documents").first()
    assert doc["title"] == "患者<ID_CARD>的病历"
    assert doc["url"] == "https://<URL_CREDENTIALS>@example.org/case?tel=<PHONE>"
    assert json.loads(doc["meta"]) == {"contact": {"card": "<BANK_CARD>", "phone": "<PHONE>"}}
    raws = sorted(r["raw"] for r in ctx.warehouse.read("quarantine").collect())
    assert any("<PHONE>" in r and "<EMAIL>" in r for r in raws) and any("<ID_CARD>" in r for r in raws)


def test_quarantine_raw_is_cut_after_redaction_so_no_number_is_left_half_visible():
    from medcorpus.readers.ingest import redact_record
    from medcorpus.readers.sources import Record, preview
    from medcorpus.text.pii import Policy

    line = "x" * 1995 + PHONE + " and more text"
    rec = Record("quarantine", 1, reason="malformed_json", raw=preview(line, 2000))
    redact_record(rec, Policy(), raw_chars=2000)
    assert len(rec.raw) == 2000 and rec.raw.startswith("x" * 1995) and PHONE[:5] not in rec.raw


# ---------------------------------------------------------------------------------------------------
# 6. the LLM stages can send raw PII out
# ---------------------------------------------------------------------------------------------------
def test_llm_prompts_are_redacted_before_sending():
    from medcorpus.llm.client import ChatResult
    from medcorpus.llm.prompts import load_template, prompt_dir
    from medcorpus.llm.worker import answer_item

    sent = []

    class Capture:
        def complete(self, request):
            sent.append(request.messages)
            return ChatResult(request.key, True, content=f"not json, echo {PHONE}", attempts=1)

    template = load_template("annotate.v1", prompt_dir("prompts"))
    answer_item(Capture(), template, "k", {"text": f"患者电话{PHONE}，身份证{ID}，卡{CARD}，邮箱{EMAIL}"}, 1,
                {"domain_labels": ["general", "clinical"]})
    assert len(sent) == 2  # the first request and the repair request (which quotes the model's reply)
    _no_pii(sent)
    assert "<PHONE>" in json.dumps(sent, ensure_ascii=False)


def test_llm_replies_are_redacted_before_they_reach_a_table():
    from medcorpus.llm.client import ChatResult
    from medcorpus.llm.prompts import load_template, prompt_dir
    from medcorpus.llm.worker import answer_item

    class Reply:
        def complete(self, request):
            return ChatResult(request.key, True, content=f"译文：患者电话{PHONE}，邮箱{EMAIL}。", attempts=1)

    template = load_template("translate.v1", prompt_dir("prompts"))
    answer = answer_item(Reply(), template, "k", {"text": "子曰学而时习之"}, None, {})
    assert answer.ok and json.loads(answer.parsed) == {"translation": "患者电话<PHONE>，邮箱<EMAIL>。"}
    _no_pii([answer.raw_response, answer.parsed])


# ---------------------------------------------------------------------------------------------------
# 7, 8: truncated WARC, UTF-16 JSONL with a BOM
# ---------------------------------------------------------------------------------------------------
def _warc(gz: bool) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    for i in range(3):
        body = f"<html><body><p>Document {i}: " + " ".join(str(i * 1000 + k) for k in range(600)) + "</p></body></html>"
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.0")
        writer.write_record(writer.create_warc_record(f"http://example.org/{i}", "response",
                                                      payload=io.BytesIO(body.encode()), http_headers=headers))
    return buf.getvalue()


@pytest.mark.parametrize("ext", ["warc", "warc.gz"])
def test_warc_cut_mid_record_is_quarantined_as_truncated(tmp_path, ext):
    data = _warc(ext.endswith("gz"))
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(data[: int(len(data) * 0.9)])
    records = list(read_file(str(path), "warc", ReaderLimits()))
    assert [(r.status, r.reason, r.position) for r in records] == [
        ("ok", None, 0), ("ok", None, 1), ("quarantine", "truncated_warc", 2)]
    assert all(len(r.text) > 2000 for r in records[:2])
    whole = tmp_path / f"whole.{ext}"
    whole.write_bytes(data)
    assert [r.status for r in read_file(str(whole), "warc", ReaderLimits())] == ["ok"] * 3


def test_warc_cut_inside_the_next_header_is_quarantined(tmp_path):
    data = _warc(False)
    start = data.index(b"WARC/1.0", data.index(b"WARC/1.0", 10) + 10)  # record 2 starts here
    path = tmp_path / "cut.warc"
    path.write_bytes(data[: start + 40])
    assert [(r.status, r.reason) for r in read_file(str(path), "warc", ReaderLimits())] == [
        ("ok", None), ("ok", None), ("quarantine", "truncated_warc")]


@pytest.mark.parametrize("bom_encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_jsonl_with_bom_keeps_every_record(tmp_path, bom_encoding):
    bom = codecs.BOM_UTF16_LE if bom_encoding == "utf-16-le" else codecs.BOM_UTF16_BE
    text = "".join(json.dumps({"id": i, "text": f"患者{i}发热三天"}, ensure_ascii=False) + "\n" for i in range(50))
    path = tmp_path / "u16.jsonl"
    path.write_bytes(bom + text.encode(bom_encoding))
    records = list(read_file(str(path), "jsonl", ReaderLimits()))
    assert [(r.status, r.text, r.encoding) for r in records] == [("ok", f"患者{i}发热三天", "utf-16") for i in range(50)]
    path.write_bytes(bom + text.encode(bom_encoding) + b"\x00\xd8"[:: 1 if bom_encoding == "utf-16-be" else -1] + b"x")
    records = list(read_file(str(path), "jsonl", ReaderLimits()))
    assert sum(r.status == "ok" for r in records) == 50 and records[-1].reason == "bad_utf16"


# ---------------------------------------------------------------------------------------------------
# 9. dangling or looping symlinks
# ---------------------------------------------------------------------------------------------------
def test_dangling_and_looping_symlinks_become_quarantine_rows(spark, tmp_path):
    from medcorpus.readers.ingest import _read_partition, list_source_files

    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.jsonl").write_text('{"text": "患者发热三天，体温最高39度，伴咳嗽。"}\n', encoding="utf-8")
    os.symlink(src / "nowhere.jsonl", src / "dangling.jsonl")
    os.symlink(src / "loop.jsonl", src / "loop.jsonl")
    files = list_source_files(spark, str(src), ReaderLimits(extensions={"jsonl": (".jsonl",)}))
    assert [Path(f.source_file.removeprefix("file:")).name for f in files] == ["dangling.jsonl", "loop.jsonl", "ok.jsonl"]
    batch = pa.RecordBatch.from_pylist([{"source": f.source, "source_file": f.source_file,
                                         "source_format": f.source_format, "file_size": f.file_size} for f in files])
    rows = [r for out in _read_partition(ReaderLimits(), 100, 10**6)(iter([batch])) for r in out.to_pylist()]
    got = {Path(r["source_file"].removeprefix("file:")).name: (r["status"], r["reason"], r["detail"]) for r in rows}
    assert got["ok.jsonl"][:2] == ("ok", None)
    assert got["dangling.jsonl"][:2] == ("quarantine", "broken_symlink") and "points to nothing" in got["dangling.jsonl"][2]
    assert got["loop.jsonl"][:2] == ("quarantine", "broken_symlink") and "loops" in got["loop.jsonl"][2]


# ---------------------------------------------------------------------------------------------------
# 10, 11: one writer per warehouse; bad warehouses fail before any input is read
# ---------------------------------------------------------------------------------------------------
def test_a_second_writer_gets_a_one_line_busy_error(tmp_path, capsys, no_spark):
    from medcorpus.core.storage import WarehouseLock

    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "x"}\n')
    wh = tmp_path / "wh"
    with WarehouseLock(str(wh)):
        assert main(["ingest", str(src), "--warehouse", str(wh)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: warehouse busy:") and err.count("\n") == 1 and f"pid {os.getpid()}" in err
    lock = WarehouseLock(str(wh)).acquire()  # released when the holder is done
    lock.release()


def test_delta_conflicts_are_reported_as_warehouse_busy(monkeypatch, tmp_path, capsys):
    from medcorpus import cli

    def conflict(args):
        raise RuntimeError("[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: Files were added ...")

    monkeypatch.setattr(cli, "_dispatch", conflict)
    assert main(["normalize", "--warehouse", str(tmp_path / "wh")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: warehouse busy:") and err.count("\n") == 1


def test_bad_warehouses_fail_in_one_line_before_reading_input(tmp_path, capsys, no_spark, monkeypatch):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "x"}\n')
    a_file = tmp_path / "wh-file"
    a_file.write_text("not a folder")
    assert main(["ingest", str(src), "--warehouse", str(a_file)]) == 2
    assert main(["ingest", str(src), "--warehouse", "/proc/medcorpus-wh"]) == 2  # a read-only file system
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE",
                "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["ingest", str(src), "--warehouse", "s3a://bucket/wh"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: warehouse ") for line in lines)
    assert "is a file" in lines[0] and "not writable" in lines[1] and "no S3 credentials" in lines[2]
    assert a_file.read_text() == "not a folder"


# ---------------------------------------------------------------------------------------------------
# 12. numeric settings are range-checked; 14. --until bogus fails before Spark and writes nothing
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override,field", [
    ("ingest.max_record_bytes=-1", "ingest.max_record_bytes"),
    ("filter.zh_min_chars=-10", "filter.zh_min_chars"),
    ("spark.shuffle_partitions=0", "spark.shuffle_partitions"),
    ("datasets.mixtures.stable.tolerance=-0.01", "datasets.mixtures.stable.tolerance"),
    ("ingest.max_replacement_ratio=1.5", "ingest.max_replacement_ratio"),
    ("datasets.export_rows_per_shard=0", "datasets.export_rows_per_shard"),
])
def test_numeric_settings_out_of_range_fail(override, field):
    with pytest.raises(ConfigError, match=f"bad value for '{field}'"):
        load_config(None, [override])


def test_negative_mixture_shares_fail():
    with pytest.raises(ConfigError, match="shares must be >= 0"):
        load_config(None, ['datasets.mixtures.stable.components={"medical": -1, "general": 2}'])


def test_until_bogus_fails_before_spark_and_writes_nothing(tmp_path, capsys, no_spark, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default demo corpus would be written under build/
    wh = tmp_path / "wh"
    assert main(["run", "--until", "bogus", "--warehouse", str(wh)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown stage 'bogus' for --until; stages: ingest, normalize")
    assert list(tmp_path.iterdir()) == []
