"""Source readers: bytes of one file -> records, each either a document or a quarantine entry.

This is plain Python on purpose: it runs inside ``mapInArrow`` on the executors, one task per few
files, streaming each file. Spark's own readers cannot detect GB18030, survive a truncated gzip
keeping the lines before the break, give a stable line number for each JSONL record, or quarantine a
50 MB line without reading it whole — so the reading is done here and everything after it in Spark.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import IO, Any

OK = "ok"
QUARANTINE = "quarantine"
SKIPPED = "skipped"

FORMATS = ("jsonl", "parquet", "text", "warc")


@dataclass
class Record:
    status: str
    position: int
    text: str | None = None
    reason: str | None = None
    detail: str | None = None
    record_key: str | None = None
    url: str | None = None
    title: str | None = None
    meta: str | None = None
    encoding: str | None = None
    raw: str | None = None


@dataclass(frozen=True)
class ReaderLimits:
    max_record_bytes: int = 8_000_000
    max_line_bytes: int = 16_000_000
    payload_chars: int = 2000
    max_replacement_ratio: float = 0.02
    text_field: str = "text"
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_env: str = "AWS_ACCESS_KEY_ID"
    s3_secret_key_env: str = "AWS_SECRET_ACCESS_KEY"
    extensions: dict[str, tuple[str, ...]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# format detection
# ---------------------------------------------------------------------------------------------------
def detect_format(uri: str, extensions: dict[str, tuple[str, ...]]) -> str | None:
    """Format from the file name, longest matching extension first; None when unsupported."""
    name = uri.lower()
    best: tuple[int, str] | None = None
    for fmt, exts in extensions.items():
        for ext in exts:
            for candidate in (ext, ext + ".gz"):
                if name.endswith(candidate) and (best is None or len(candidate) > best[0]):
                    best = (len(candidate), fmt)
    return best[1] if best else None


def is_hidden(uri: str) -> bool:
    """Hadoop convention: files starting with '.' or '_' (``_SUCCESS``, ``.crc``) are not data."""
    base = uri.rstrip("/").rsplit("/", 1)[-1]
    return base.startswith(".") or base.startswith("_")


# ---------------------------------------------------------------------------------------------------
# opening local and s3a files
# ---------------------------------------------------------------------------------------------------
def open_binary(uri: str, limits: ReaderLimits) -> IO[bytes]:
    if uri.startswith("file:"):
        path = uri[len("file:") :]
        while path.startswith("//"):
            path = path[1:]
        return open(path, "rb")
    if uri.startswith(("s3a://", "s3://", "s3n://")):
        import os

        from pyarrow import fs

        s3 = fs.S3FileSystem(
            endpoint_override=limits.s3_endpoint,
            region=limits.s3_region,
            access_key=os.environ.get(limits.s3_access_key_env),
            secret_key=os.environ.get(limits.s3_secret_key_env),
            scheme="http" if (limits.s3_endpoint or "").startswith("http://") else "https",
            force_virtual_addressing=False,
        )
        key = uri.split("://", 1)[1]
        # compression=None: pyarrow would otherwise gunzip *.gz itself, and our salvaging reader after it
        return s3.open_input_stream(key, compression=None)  # type: ignore[return-value]
    return open(uri, "rb")


class CorruptStream(OSError):
    """A compressed stream that broke; ``lost_bytes`` compressed bytes from the break to the end were not
    decoded (0 when the stream just ended early)."""

    def __init__(self, message: str, lost_bytes: int = 0):
        super().__init__(message)
        self.lost_bytes = lost_bytes


class SalvagingGunzip(io.RawIOBase):
    """gunzip that hands out every byte it could decompress before raising on a truncated or corrupt
    stream — so the records before the break are kept and the break itself is quarantined.

    A chunk that fails to decompress is fed again byte by byte from the state before it, so the output up
    to the first bad byte is kept (a junk tail or a flipped byte loses only what follows it). The error
    raised after the last good byte is a :class:`CorruptStream` that says how many compressed bytes were lost.
    """

    def __init__(self, raw: IO[bytes], chunk: int = 1 << 16):
        self._raw = raw
        self._chunk = chunk
        self._dec: Any = zlib.decompressobj(wbits=31)
        self._member_done = False  # the current member ended; a new one starts with the next byte
        self._buf = b""
        self._eof = False
        self._broken: Exception | None = None
        self._fed = 0  # compressed bytes fed before the current chunk

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes) -> None:
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            if self._member_done:  # multi-member gzip (or junk after the last member)
                self._dec = zlib.decompressobj(wbits=31)
                self._member_done = False
            piece = data[pos:]
            saved = self._dec.copy()
            try:
                out.append(self._dec.decompress(piece))
                used = len(piece) - len(self._dec.unused_data) if self._dec.eof else len(piece)
            except zlib.error:
                self._dec = saved
                used, err = self._salvage(piece, out)
                if err is not None:
                    self._break(f"{err} at compressed byte {self._fed + pos + used}", len(data) - pos - used)
                    break
            if self._dec.eof:
                self._member_done = True
            pos += used
        self._fed += len(data)
        self._buf += b"".join(out)

    def _salvage(self, piece: bytes, out: list[bytes]) -> tuple[int, Exception | None]:
        """Feed ``piece`` byte by byte; (bytes used, the error at the first bad byte or None)."""
        for i in range(len(piece)):
            try:
                out.append(self._dec.decompress(piece[i : i + 1]))
            except zlib.error as err:
                return i, err
            if self._dec.eof:
                return i + 1, None
        return len(piece), None

    def _break(self, why: str, lost_in_chunk: int) -> None:
        lost = lost_in_chunk
        while True:  # the rest of the file is not decodable: count it, so the loss is on record
            rest = self._raw.read(1 << 20)
            if not rest:
                break
            lost += len(rest)
        self._eof = True
        self._broken = CorruptStream(f"corrupt compressed data: {why}; {lost} compressed bytes lost", lost)

    def readinto(self, b: Any) -> int:  # type: ignore[override]
        while not self._buf and not self._eof:
            data = self._raw.read(self._chunk)
            if not data:
                self._eof = True
                if not self._member_done:
                    self._broken = CorruptStream("compressed stream ended before the end-of-stream marker", 0)
                break
            self._feed(data)
        if not self._buf:
            broken = self._broken
            if broken is not None:
                self._broken = None
                raise broken
            return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def maybe_gunzip(stream: IO[bytes], uri: str) -> IO[bytes]:
    if uri.lower().endswith(".gz"):
        return SalvagingGunzip(stream)  # type: ignore[return-value]
    return stream


# ---------------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------------
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def sniff_encoding(sample: bytes) -> str:
    """utf-8 (with or without BOM), utf-16 by BOM, else gb18030 when the sample decodes as it."""
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    if _decodes(sample, "utf-8"):
        return "utf-8"
    if _decodes(sample, "gb18030"):
        return "gb18030"
    return "utf-8"


def _decodes(sample: bytes, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        decoder.decode(sample, final=False)  # a multi-byte char cut at the sample's end is fine
        return True
    except UnicodeDecodeError:
        return False


def decode_bytes(data: bytes, preferred: str, max_replacement_ratio: float) -> tuple[str | None, str, str | None]:
    """Decode with the file's encoding, then the other candidate; (text, encoding, problem)."""
    candidates = [preferred] + [e for e in ("utf-8", "gb18030") if e != preferred.replace("-sig", "")]
    for enc in candidates:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        problem = binary_problem(text)
        if problem is None:
            return text, enc, None
        if enc == candidates[-1]:
            return None, enc, problem
    text = data.decode("utf-8", errors="replace")
    ratio = text.count("\ufffd") / max(len(text), 1)
    if ratio > max_replacement_ratio:
        return None, "utf-8", f"undecodable: {ratio:.1%} of characters invalid in utf-8 and gb18030"
    return text, "utf-8+replace", None


def binary_problem(text: str) -> str | None:
    """Text that decoded but is binary garbage: NULs or many C0 control characters."""
    if not text:
        return None
    if "\x00" in text:
        return "binary content: NUL bytes"
    sample = text[:20000]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if controls / len(sample) > 0.05:
        return f"binary content: {controls / len(sample):.0%} control characters"
    return None


#: A payload preview runs this many characters past its limit, so a phone or card number that straddles the
#: limit is still whole when ingest redacts it; ingest cuts the preview to the limit after redacting.
PREVIEW_MARGIN = 64


def preview(data: bytes | str | None, limit: int) -> str | None:
    if data is None:
        return None
    keep = limit + PREVIEW_MARGIN
    if isinstance(data, bytes):
        data = data[: keep * 4].decode("utf-8", errors="replace")
    return data[:keep]


# ---------------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------------
def read_file(uri: str, fmt: str, limits: ReaderLimits) -> Iterator[Record]:
    """All records of one file. Never raises for bad content: problems become quarantine records."""
    try:
        if fmt == "jsonl":
            yield from read_jsonl(uri, limits)
        elif fmt == "text":
            yield from read_text_file(uri, limits)
        elif fmt == "parquet":
            yield from read_parquet(uri, limits)
        elif fmt == "warc":
            yield from read_warc(uri, limits)
        else:
            yield Record(QUARANTINE, -1, reason="unsupported_format", detail=f"no reader for {uri}")
    except FileNotFoundError as err:
        yield Record(QUARANTINE, -1, reason="unreadable_file", detail=f"file vanished: {err}")
    except PermissionError as err:
        yield Record(QUARANTINE, -1, reason="unreadable_file", detail=f"permission denied: {err}")


def _read_line(stream: IO[bytes], limit: int) -> tuple[bytes, bool]:
    """One line up to ``limit`` bytes; (line, too_long). A too-long line is consumed, not kept."""
    line = stream.readline(limit + 1)
    if len(line) <= limit or line.endswith(b"\n"):
        return line, False
    head = line[:4096]
    while True:
        chunk = stream.readline(1 << 20)
        if not chunk or chunk.endswith(b"\n"):
            break
    return head, True


def _utf16_lines(stream: IO[bytes], limit: int) -> Iterator[bytes]:
    """The lines of a UTF-16 stream (BOM first) re-encoded as UTF-8, so the JSONL loop reads them like
    any other file (splitting UTF-16 bytes at b"\\n" would cut every character after the first line).

    On bytes that are not UTF-16 the lines decoded before them are yielded, then the UnicodeDecodeError.
    """
    decoder = codecs.getincrementaldecoder("utf-16")()
    pending = ""
    first = True
    while True:
        chunk = stream.read(1 << 16)
        try:
            pending += decoder.decode(chunk, final=not chunk)
            broken = None
        except UnicodeDecodeError as err:
            good = err.object[: err.start].decode(err.encoding, errors="ignore")
            pending += good.removeprefix("\ufeff") if first else good  # the BOM when the first chunk broke
            broken = err
        first = False
        *lines, pending = pending.split("\n")
        for line in lines:
            yield (line + "\n").encode("utf-8", errors="surrogatepass")
        if broken is not None:
            raise broken
        if not chunk:
            if pending:
                yield pending.encode("utf-8", errors="surrogatepass")
            return


class _LineSource:
    """``_read_line`` over a byte stream or over re-encoded UTF-16 lines."""

    def __init__(self, stream: IO[bytes], lines: Iterator[bytes] | None = None):
        self.stream, self.lines = stream, lines

    def read_line(self, limit: int) -> tuple[bytes, bool]:
        if self.lines is None:
            return _read_line(self.stream, limit)
        line = next(self.lines, b"")
        return (line[:4096], True) if len(line) > limit and not line.endswith(b"\n") else (line, False)


def read_jsonl(uri: str, limits: ReaderLimits) -> Iterator[Record]:
    with open_binary(uri, limits) as raw_stream:
        inner = maybe_gunzip(raw_stream, uri)
        stream = inner if isinstance(inner, io.BufferedReader) else io.BufferedReader(inner, buffer_size=1 << 20)  # type: ignore[arg-type,type-var]
        line_no = 0
        encoding: str | None = None
        seen_any = False
        source = _LineSource(stream)
        try:
            while True:
                if encoding is None:
                    encoding = sniff_encoding(stream.peek(1 << 16)[: 1 << 16])
                    if encoding == "utf-16":  # re-encoded to utf-8 line by line; the record keeps "utf-16"
                        source = _LineSource(stream, _utf16_lines(stream, limits.max_line_bytes))
                line, too_long = source.read_line(limits.max_line_bytes)
                if not line:
                    break
                line_no += 1
                if too_long:
                    seen_any = True
                    yield Record(
                        QUARANTINE, line_no, reason="too_large",
                        detail=f"line longer than max_line_bytes={limits.max_line_bytes}",
                        raw=preview(line, limits.payload_chars),
                    )
                    continue
                if line_no == 1 and encoding == "utf-8-sig":
                    line = line.removeprefix(codecs.BOM_UTF8)
                if not line.strip():
                    continue  # blank separator lines are not records
                seen_any = True  # a file of blank lines only is quarantined as empty, not dropped unseen
                if source.lines is not None:
                    record = parse_json_record(line, line_no, "utf-8", limits)
                    record.encoding = "utf-16" if record.encoding else None
                    yield record
                else:
                    yield parse_json_record(line, line_no, encoding, limits)
        except UnicodeDecodeError as err:  # only the UTF-16 path decodes while reading
            yield Record(QUARANTINE, line_no + 1, reason="bad_utf16",
                         detail=f"UTF-16 text broke after {line_no} lines: {err}"[:500])
            return
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as err:
            lost = getattr(err, "lost_bytes", None)
            yield Record(
                QUARANTINE, line_no + 1, reason="corrupt_compression",
                detail=f"stream broke after {line_no} lines"
                + (f", {lost} compressed bytes lost" if lost is not None else "")
                + f": {type(err).__name__}: {err}",
            )
            return
        if not seen_any:
            yield Record(QUARANTINE, -1, reason="empty_file", detail="file has no records")


def parse_json_record(line: bytes, line_no: int, encoding: str, limits: ReaderLimits) -> Record:
    line = line.rstrip(b"\r\n")
    text, used, problem = decode_bytes(line, encoding.replace("-sig", ""), limits.max_replacement_ratio)
    if text is None:
        return Record(QUARANTINE, line_no, reason="undecodable", detail=problem, raw=preview(line, limits.payload_chars))
    try:
        obj = json.loads(text)
    except ValueError as err:
        return Record(QUARANTINE, line_no, reason="malformed_json", detail=str(err)[:300],
                      raw=preview(text, limits.payload_chars), encoding=used)
    if not isinstance(obj, dict):
        return Record(QUARANTINE, line_no, reason="malformed_json", detail=f"expected an object, got {type(obj).__name__}",
                      raw=preview(text, limits.payload_chars), encoding=used)
    return record_from_mapping(obj, line_no, used, limits)


def _as_optional_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def record_from_mapping(obj: dict[str, Any], position: int, encoding: str, limits: ReaderLimits) -> Record:
    body = obj.get(limits.text_field)
    raw = None
    if body is None:
        raw = preview(json.dumps(obj, ensure_ascii=False)[: limits.payload_chars], limits.payload_chars)
        return Record(QUARANTINE, position, reason="missing_text",
                      detail=f"no '{limits.text_field}' field (fields: {sorted(obj)[:12]})", raw=raw, encoding=encoding)
    if not isinstance(body, str):
        return Record(QUARANTINE, position, reason="bad_text_type",
                      detail=f"'{limits.text_field}' is {type(body).__name__}, not a string",
                      raw=preview(json.dumps(obj, ensure_ascii=False, default=str), limits.payload_chars), encoding=encoding)
    return finish_text_record(
        body, position, encoding, limits,
        record_key=_as_optional_str(obj.get("id")),
        url=_as_optional_str(obj.get("url")),
        title=_as_optional_str(obj.get("title")),
        meta=_as_optional_str(obj.get("meta")),
    )


def finish_text_record(text: str, position: int, encoding: str, limits: ReaderLimits, **fields: str | None) -> Record:
    """Apply the per-record checks every format shares: empty, too large, binary."""
    if not text.strip():
        return Record(QUARANTINE, position, reason="empty_text", detail="text is empty or whitespace", encoding=encoding,
                      **fields)
    size = len(text.encode("utf-8", errors="replace"))
    if size > limits.max_record_bytes:
        return Record(QUARANTINE, position, reason="too_large",
                      detail=f"{size} bytes > max_record_bytes={limits.max_record_bytes}",
                      raw=preview(text, limits.payload_chars), encoding=encoding, **fields)
    problem = binary_problem(text)
    if problem:
        return Record(QUARANTINE, position, reason="binary_content", detail=problem,
                      raw=preview(text, limits.payload_chars), encoding=encoding, **fields)
    return Record(OK, position, text=text, encoding=encoding, **fields)


def read_text_file(uri: str, limits: ReaderLimits) -> Iterator[Record]:
    """A plain-text file is one document (a book, an article)."""
    with open_binary(uri, limits) as raw_stream:
        stream = maybe_gunzip(raw_stream, uri)
        try:
            data = _read_up_to(stream, limits.max_record_bytes * 4 + 1)
            oversized = len(data) > limits.max_record_bytes * 4
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as err:
            yield Record(QUARANTINE, 0, reason="corrupt_compression", detail=f"{type(err).__name__}: {err}")
            return
    if not data:
        yield Record(QUARANTINE, -1, reason="empty_file", detail="file is empty")
        return
    if oversized:
        yield Record(QUARANTINE, 0, reason="too_large", detail=f"file larger than {limits.max_record_bytes * 4} bytes",
                     raw=preview(data, limits.payload_chars))
        return
    encoding = sniff_encoding(data[: 1 << 16])
    text, used, problem = decode_bytes(data, encoding, limits.max_replacement_ratio)
    if text is None:
        yield Record(QUARANTINE, 0, reason="undecodable" if "undecodable" in (problem or "") else "binary_content",
                     detail=problem, raw=preview(data, limits.payload_chars))
        return
    title = uri.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    yield finish_text_record(text.lstrip("\ufeff"), 0, used, limits, title=title)


def _read_up_to(stream: IO[bytes], n: int) -> bytes:
    """``n`` bytes or up to the end: a raw stream (the gunzip) may return fewer per read()."""
    parts: list[bytes] = []
    left = n
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_parquet(uri: str, limits: ReaderLimits) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_binary(uri, limits) as stream:
        try:
            pf = pq.ParquetFile(pa.PythonFile(stream, mode="r") if not hasattr(stream, "seek") else stream)
        except (pa.ArrowException, OSError, ValueError) as err:
            yield Record(QUARANTINE, -1, reason="unreadable_parquet", detail=f"{type(err).__name__}: {err}"[:500])
            return
        schema = pf.schema_arrow
        field_names = schema.names
        if limits.text_field not in field_names or not (
            pa.types.is_string(schema.field(limits.text_field).type)
            or pa.types.is_large_string(schema.field(limits.text_field).type)
        ):
            yield Record(QUARANTINE, -1, reason="parquet_schema",
                         detail=f"needs a string column '{limits.text_field}'; file has {schema}"[:500])
            return
        if pf.metadata.num_rows == 0:
            yield Record(QUARANTINE, -1, reason="empty_file", detail="parquet file has no rows")
            return
        wanted = [c for c in (limits.text_field, "id", "url", "title", "meta") if c in field_names]
        row_index = 0
        try:
            for batch in pf.iter_batches(batch_size=2048, columns=wanted):
                columns = {name: batch.column(name).to_pylist() for name in wanted}
                for i in range(batch.num_rows):
                    body = columns[limits.text_field][i]
                    fields = {
                        "record_key": _as_optional_str(columns.get("id", [None] * batch.num_rows)[i]),
                        "url": _as_optional_str(columns.get("url", [None] * batch.num_rows)[i]),
                        "title": _as_optional_str(columns.get("title", [None] * batch.num_rows)[i]),
                        "meta": _as_optional_str(columns.get("meta", [None] * batch.num_rows)[i]),
                    }
                    if body is None:
                        yield Record(QUARANTINE, row_index, reason="missing_text", detail="text is null", **fields)
                    else:
                        yield finish_text_record(body, row_index, "utf-8", limits, **fields)
                    row_index += 1
        except (pa.ArrowException, OSError) as err:
            yield Record(QUARANTINE, row_index, reason="unreadable_parquet",
                         detail=f"broke after {row_index} rows: {err}"[:500])


class _HTMLText(HTMLParser):
    _SKIP = {"script", "style", "noscript", "template", "head"}
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "td", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.title: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self._SKIP and self.skip:
            self.skip -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title and self.title is None:
            self.title = data.strip() or None
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str | None]:
    parser = _HTMLText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - HTMLParser is lenient; anything left is treated as text
        pass
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line), parser.title


def _http_charset(headers: Any) -> str | None:
    ctype = headers.get_header("Content-Type") if headers else None
    if ctype and "charset=" in ctype.lower():
        return ctype.lower().split("charset=", 1)[1].split(";")[0].strip().strip("\"'") or None
    return None


def read_warc(uri: str, limits: ReaderLimits) -> Iterator[Record]:
    """WARC responses (HTML -> text) and WET conversion records (text as is).

    A ``.gz`` archive is decompressed by :class:`SalvagingGunzip` (every member in turn), so a cut or
    corrupt file keeps the records before the break. A record the file ends inside is quarantined as
    ``truncated_warc`` (never kept as a shortened document); an archive that breaks elsewhere is
    ``corrupt_warc``, with the compressed bytes lost when known.
    """
    from warcio.archiveiterator import ArchiveIterator

    position = -1  # index of the current record
    in_body = False  # reading the current record's payload (a break there is that record's)
    last_cut = False  # the last record was quarantined as truncated_warc
    with open_binary(uri, limits) as raw_stream:
        stream: IO[bytes]
        if uri.lower().endswith(".gz"):
            # unbuffered: a BufferedReader would drop the bytes it holds when the next read raises
            stream = SalvagingGunzip(raw_stream)  # type: ignore[assignment]
        else:
            stream = tail = _TailKeeper(raw_stream)  # type: ignore[assignment]
        try:
            for record in ArchiveIterator(stream, arc2warc=True):
                position += 1
                rtype = record.rec_type
                key = record.rec_headers.get_header("WARC-Record-ID")
                url = record.rec_headers.get_header("WARC-Target-URI")
                if rtype not in ("response", "conversion", "resource"):
                    yield Record(SKIPPED, position, reason="warc_non_document", detail=rtype, record_key=key)
                    continue
                in_body = True
                payload = record.content_stream().read(limits.max_record_bytes * 4 + 1)
                in_body = False
                if len(payload) > limits.max_record_bytes * 4:
                    yield Record(QUARANTINE, position, reason="too_large", detail="WARC payload too large",
                                 record_key=key, url=url, raw=preview(payload, limits.payload_chars))
                    continue
                missing = int(getattr(record.raw_stream, "limit", 0) or 0)
                if missing > 0:  # the file ended inside this record's Content-Length
                    last_cut = True
                    yield Record(QUARANTINE, position, reason="truncated_warc",
                                 detail=f"the file ends inside this record: {missing} of its {record.length} "
                                 "bytes are missing", record_key=key, url=url,
                                 raw=preview(payload, limits.payload_chars))
                    continue
                charset = _http_charset(record.http_headers)
                preferred = charset if charset and _known_codec(charset) else sniff_encoding(payload[: 1 << 16])
                text, used, problem = decode_bytes(payload, preferred, limits.max_replacement_ratio)
                if text is None:
                    yield Record(QUARANTINE, position, reason="undecodable", detail=problem, record_key=key, url=url,
                                 raw=preview(payload, limits.payload_chars))
                    continue
                title = None
                ctype = (record.http_headers.get_header("Content-Type") if record.http_headers else None) or ""
                if rtype == "response" and (
                        "html" in ctype.lower() or text.lstrip()[:200].lower().startswith(("<!doctype", "<html"))):
                    text, title = html_to_text(text)
                yield finish_text_record(text, position, used, limits, record_key=key, url=url, title=title)
        except Exception as err:  # noqa: BLE001 - warcio raises many types (even AttributeError) on a cut archive
            # cut: the data just stops (a gzip without its end, a payload the file ends in); else corrupt
            cut = err.lost_bytes == 0 if isinstance(err, CorruptStream) else _at_end(stream) and not _junk(err)
            lost = f"; {err.lost_bytes} compressed bytes lost" if isinstance(err, CorruptStream) and err.lost_bytes else ""
            broken_at = position if in_body else position + 1
            yield Record(QUARANTINE, broken_at, reason="truncated_warc" if cut else "corrupt_warc",
                         detail=(f"archive {'ends inside' if cut else 'broke at'} record {broken_at}, after "
                                 f"{broken_at} whole records{lost}: {type(err).__name__}: {err}")[:500])
            return
        if not uri.lower().endswith(".gz") and not last_cut and tail.cut():
            # warcio ends quietly when the file stops inside the next record's header block
            yield Record(QUARANTINE, position + 1, reason="truncated_warc",
                         detail=f"the file ends inside the header of record {position + 1}")
            return
    if position < 0:
        yield Record(QUARANTINE, -1, reason="empty_file", detail="no WARC records")


class _TailKeeper:
    """A read-only stream that remembers its last bytes: every whole WARC record ends with a blank line."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self.tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self.tail = (self.tail + data)[-4:]
        return data

    def cut(self) -> bool:
        return bool(self.tail) and not self.tail.endswith((b"\r\n\r\n", b"\n\n"))


def _junk(err: Exception) -> bool:
    """warcio met bytes that do not even start like a WARC/ARC header (appended junk, not a cut record)."""
    text = str(err)
    return "Unknown archive format" in text and "['WAR" not in text and "['war" not in text


def _at_end(stream: IO[bytes]) -> bool:
    """True when nothing is left to read (the archive was cut, rather than garbled mid-file)."""
    try:
        return not stream.read(1)
    except Exception:  # noqa: BLE001 - a stream that cannot even be read further is at its end for us
        return True


def _known_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
        return True
    except LookupError:
        return False
