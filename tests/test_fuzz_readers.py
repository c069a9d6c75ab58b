"""Hypothesis fuzz over the ingest readers: any bytes become records, never an exception, and a damaged
gzip keeps every record that decoded before the damage."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medcorpus.readers.ingest import redact_record
from medcorpus.readers.sources import OK, QUARANTINE, SKIPPED, ReaderLimits, read_file
from medcorpus.text.pii import Policy

LIMITS = ReaderLimits(max_record_bytes=20_000, max_line_bytes=40_000, payload_chars=200)
SUFFIX = {"jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz", "text": ".txt", "text.gz": ".txt.gz", "warc": ".warc",
          "warc.gz": ".warc.gz"}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])


def _read(data: bytes, kind: str) -> list:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("f" + SUFFIX[kind])
        path.write_bytes(data)
        return list(read_file(str(path), kind.split(".")[0], LIMITS))


_record = st.fixed_dictionaries({"text": st.text(max_size=80)}, optional={"id": st.integers(), "title": st.text(max_size=20)})
_jsonl = st.lists(_record, max_size=20).map(lambda rs: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rs))


@FUZZ
@given(st.one_of(st.binary(max_size=400), _jsonl.map(str.encode)), st.sampled_from(sorted(SUFFIX)),
       st.booleans())
def test_any_bytes_become_records_never_an_exception(data, kind, compress):
    if compress and kind.endswith(".gz"):
        data = gzip.compress(data)
    records = _read(data, kind)
    assert records, "every file yields at least one row (a record or a quarantine entry)"
    for rec in records:
        assert rec.status in (OK, QUARANTINE, SKIPPED)
        assert (rec.status == OK) == (rec.text is not None and rec.reason is None)
        redact_record(rec, Policy())  # the redaction at ingest never fails on what a reader produced
    positions = [r.position for r in records if r.position >= 0]
    assert len(positions) == len(set(positions))


@FUZZ
@given(_jsonl, st.binary(min_size=1, max_size=300), st.integers(min_value=0, max_value=3))
def test_gzip_damage_keeps_every_record_before_it(text, junk, where):
    blob = gzip.compress(text.encode())
    intact = [r.text for r in _read(blob, "jsonl.gz") if r.status == OK]
    damaged = blob + junk if where == 0 else blob[: max(10, len(blob) * where // 4)]
    records = _read(damaged, "jsonl.gz")
    kept = [r.text for r in records if r.status == OK]
    if where == 0 and not junk.startswith(b"\x1f"):  # junk after the member: nothing of the member is lost
        assert kept == intact
    else:  # cut short (or junk that looks like a gzip member): what is kept is a prefix of the intact file
        assert kept == intact[: len(kept)]
    if damaged != blob and (where != 0 or junk.strip(b"\x00")):
        assert records[-1].reason == "corrupt_compression" or kept == intact
