"""Source readers on hand-made files: every bad case ends as a quarantine record with its reason."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medcorpus.readers.sources import (
    OK,
    PREVIEW_MARGIN,
    QUARANTINE,
    ReaderLimits,
    decode_bytes,
    detect_format,
    html_to_text,
    read_file,
    sniff_encoding,
)

LIMITS = ReaderLimits(max_record_bytes=10_000, max_line_bytes=20_000, payload_chars=100)
EXT = {"jsonl": (".jsonl", ".json"), "parquet": (".parquet",), "text": (".txt",), "warc": (".warc", ".warc.gz", ".wet")}


def records(path, fmt, limits=LIMITS):
    return list(read_file(str(path), fmt, limits))


def test_detect_format_by_longest_extension():
    assert detect_format("s3a://b/x/part-0.jsonl.gz", EXT) == "jsonl"
    assert detect_format("/x/crawl.warc.gz", EXT) == "warc"
    assert detect_format("/x/book.txt", EXT) == "text"
    assert detect_format("/x/image.png", EXT) is None


def test_sniff_encoding_tells_gb18030_from_utf8():
    text = "黄芪，甘，微温。归脾、肺经。" * 20
    assert sniff_encoding(text.encode("utf-8")) == "utf-8"
    assert sniff_encoding(text.encode("gb18030")) == "gb18030"
    assert sniff_encoding("\ufeffabc".encode("utf-8")) == "utf-8-sig"


def test_decode_rejects_binary_and_mostly_invalid_bytes():
    assert decode_bytes(b"\x00\x01\x02\x03abc", "utf-8", 0.02)[0] is None
    text, enc, problem = decode_bytes("头痛发热".encode("gb18030"), "utf-8", 0.02)
    assert (text, enc, problem) == ("头痛发热", "gb18030", None)


def test_jsonl_each_bad_line_gets_its_own_reason(tmp_path):
    lines = [
        json.dumps({"id": "a", "text": "good text", "url": "u", "meta": {"k": 1}}),
        '{"id": "b", "text": "unterminated',
        json.dumps({"id": "c", "body": "no text field"}),
        json.dumps({"id": "d", "text": "   "}),
        json.dumps({"id": "e", "text": 5}),
        json.dumps([1, 2]),
        "",
        json.dumps({"id": "f", "text": "x" * 11_000}),
    ]
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got = [(r.status, r.position, r.reason) for r in records(path, "jsonl")]
    assert got == [
        (OK, 1, None),
        (QUARANTINE, 2, "malformed_json"),
        (QUARANTINE, 3, "missing_text"),
        (QUARANTINE, 4, "empty_text"),
        (QUARANTINE, 5, "bad_text_type"),
        (QUARANTINE, 6, "malformed_json"),
        (QUARANTINE, 8, "too_large"),
    ]
    first = records(path, "jsonl")[0]
    assert (first.record_key, first.url, first.meta) == ("a", "u", '{"k": 1}')


def test_a_huge_line_is_quarantined_without_keeping_it(tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        f.write(json.dumps({"text": "y" * 50_000}) + "\n")
        f.write(json.dumps({"text": "after the big line"}) + "\n")
    got = records(path, "jsonl")
    assert [(r.status, r.reason) for r in got] == [(QUARANTINE, "too_large"), (OK, None)]
    assert len(got[0].raw) <= LIMITS.payload_chars + PREVIEW_MARGIN  # ingest cuts it to the limit after redacting
    assert got[1].position == 2


def test_gb18030_jsonl_is_decoded(tmp_path):
    path = tmp_path / "zh.jsonl"
    path.write_bytes((json.dumps({"text": "患者头痛三天，伴发热。"}, ensure_ascii=False) + "\n").encode("gb18030"))
    (rec,) = records(path, "jsonl")
    assert (rec.status, rec.text, rec.encoding) == (OK, "患者头痛三天，伴发热。", "gb18030")


def test_truncated_gzip_keeps_the_lines_before_the_break(tmp_path):
    body = "".join(json.dumps({"text": f"line {i} " + "z" * 50}) + "\n" for i in range(400)).encode()
    full = gzip.compress(body)
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    got = records(path, "jsonl")
    oks = [r for r in got if r.status == OK]
    assert 0 < len(oks) < 400
    assert [r.position for r in oks] == list(range(1, len(oks) + 1))
    assert got[-1].status == QUARANTINE and got[-1].reason == "corrupt_compression"


def test_empty_and_garbage_files(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    assert [r.reason for r in records(empty, "jsonl")] == ["empty_file"]
    garbage = tmp_path / "g.txt"
    garbage.write_bytes(bytes(range(256)) * 10)
    (rec,) = records(garbage, "text")
    assert rec.status == QUARANTINE and rec.reason in {"binary_content", "undecodable"}


def test_text_file_is_one_document_with_crlf_gb18030(tmp_path):
    path = tmp_path / "本草.txt"
    path.write_bytes("<篇名>黄芪\r\n性味：甘，微温。\r\n".encode("gb18030"))
    (rec,) = records(path, "text")
    assert (rec.status, rec.position, rec.encoding, rec.title) == (OK, 0, "gb18030", "本草")
    assert rec.text.startswith("<篇名>黄芪\r\n")


def test_parquet_rows_and_wrong_schema(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"id": ["1", "2", "3"], "text": ["alpha", None, "gamma"]}), good)
    got = [(r.status, r.position, r.reason) for r in records(good, "parquet")]
    assert got == [(OK, 0, None), (QUARANTINE, 1, "missing_text"), (OK, 2, None)]
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"body": ["x"]}), wrong)
    (rec,) = records(wrong, "parquet")
    assert (rec.reason, rec.position) == ("parquet_schema", -1)
    notparquet = tmp_path / "fake.parquet"
    notparquet.write_bytes(b"PAR1 not really")
    assert [r.reason for r in records(notparquet, "parquet")] == ["unreadable_parquet"]


def test_warc_html_is_turned_into_text(tmp_path):
    from medcorpus.demo import _warc_bytes

    path = tmp_path / "c.warc.gz"
    path.write_bytes(_warc_bytes([("https://x.test/a", "Asthma", "Wheezing &amp; cough.")]))
    got = records(path, "warc")
    assert [r.status for r in got] == ["skipped", OK]
    doc = got[1]
    assert doc.url == "https://x.test/a" and doc.title == "Asthma"
    assert "Wheezing & cough." in doc.text and "var x" not in doc.text and "color" not in doc.text
    assert doc.record_key.startswith("<urn:uuid:")


def test_html_to_text_drops_scripts():
    text, title = html_to_text("<html><head><title>T</title></head><body><p>a</p><script>b()</script><p>c</p></body></html>")
    assert (text, title) == ("a\nc", "T")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=3000), fmt=st.sampled_from(["jsonl", "text", "parquet", "warc"]), gz=st.booleans())
def test_fuzz_any_bytes_never_raise_and_every_record_is_accounted(tmp_path, payload, fmt, gz):
    ext = {"jsonl": "jsonl", "text": "txt", "parquet": "parquet", "warc": "warc"}[fmt]
    path = tmp_path / ("f." + ext + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(payload) if gz else payload)
    got = records(path, fmt)
    for r in got:
        assert r.status in {OK, QUARANTINE, "skipped"}
        if r.status == QUARANTINE:
            assert r.reason
        if r.status == OK:
            assert r.text and r.text.strip()


def test_blank_lines_only_jsonl_is_an_empty_file_not_nothing(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\n \r\n\t\n")
    assert [(r.status, r.reason) for r in records(path, "jsonl")] == [(QUARANTINE, "empty_file")]
    gz = tmp_path / "blank.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\n\n"))
    assert [r.reason for r in records(gz, "jsonl")] == ["empty_file"]
