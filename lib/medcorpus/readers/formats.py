"""SFT importers: the published formats of the medical QA / dialogue / exam datasets -> one record shape.

Each importer is a small reader (these inputs are thousands to tens of thousands of records, not a web
corpus): it yields plain dicts with the fields of :data:`CANDIDATE_SCHEMA`. A record that cannot be read
(malformed JSON, a row without the fields the format needs) is yielded with ``error`` set and its raw text,
and the stage sends it to quarantine. :func:`import_sources` turns the records of all configured sources
into one Spark DataFrame.

Each of the formats that also feed the labelled-data builder (:mod:`medcorpus.classify.labelled`) has one
*parser*, ``parse_<format>(path)``: it yields :class:`Item` s, the native records as the file holds them (or
why one could not be read). The SFT importer ``read_<format>`` renders items into candidate records; the
labelled builder renders the same items into documents, and counts the items it cannot use.

Formats (importer ids):

- ``alpaca_jsonl``: JSON lines ``{instruction, input, output}`` (Huatuo ``llama_data.json``).
- ``toyhom_csv``: CSV ``department,title,ask,answer`` in GB18030 with embedded newlines (Toyhom).
- ``cmtmedqa_json``: JSON list of ``{id, cate1, cate2, instruction, output, history: [[q, a], ...]}``.
- ``covid_dialogue_txt``: blocks ``id=N`` / URL / ``Description`` / ``Dialogue`` with ``病人：``/``医生：``
  or ``Patient:``/``Doctor:`` speaker lines (COVID-Dialogue, Chinese and English).
- ``sharegpt_jsonl``: JSON lines ``{conversations: [{from, value}, ...]}`` (MedicalGPT).
- ``medquad_xml``: a folder of ``Document/QAPairs/QAPair/{Question,Answer}`` XML files (MedQuAD).
- ``pubmedqa_json``: JSON object keyed by PMID with QUESTION, CONTEXTS, LONG_ANSWER, final_decision;
  imported as a yes/no/maybe multiple-choice item whose explanation is the long answer.
- ``cmexam_xlsx``: CMExam sheet ``Question, Options ("A ..." lines), Answer, Explanation`` (+ the five
  annotation columns when present).
- ``cmmlu_csv``: a folder of CMMLU ``,Question,A,B,C,D,Answer`` CSVs; ``subjects`` picks the files.
- ``mc_jsonl``: JSON lines ``{id, question, options: {A: ..}, answer, explanation, ...}`` (demo format).
- ``scored_jsonl``: JSON lines ``{id, prompt, responses: [{content, score}], ...}``: one prompt with
  several scored responses (source of subjective preference pairs; the best one is the SFT answer).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from medcorpus.core.errors import ConfigError
from medcorpus.text.normalize import guess_language

log = logging.getLogger(__name__)

Record = dict[str, Any]

MESSAGE = StructType([StructField("role", StringType(), False), StructField("content", StringType(), False)])
OPTION = StructType([StructField("label", StringType(), False), StructField("text", StringType(), False)])
RESPONSE = StructType([StructField("content", StringType(), False), StructField("score", DoubleType(), False)])

CANDIDATE_SCHEMA = StructType(
    [
        StructField("sample_id", StringType(), False),
        StructField("source", StringType(), False),
        StructField("source_file", StringType(), False),
        StructField("position", LongType(), False),
        StructField("type", StringType(), True),
        StructField("language", StringType(), True),
        StructField("department", StringType(), True),
        StructField("messages", ArrayType(MESSAGE, False), True),
        StructField("question", StringType(), True),
        StructField("options", ArrayType(OPTION, False), True),
        StructField("answer", StringType(), True),
        StructField("explanation", StringType(), True),
        StructField("disease_group", StringType(), True),
        StructField("discipline", StringType(), True),
        StructField("competency", StringType(), True),
        StructField("difficulty", StringType(), True),
        StructField("responses", ArrayType(RESPONSE, False), True),
        StructField("error", StringType(), True),
        StructField("raw", StringType(), True),
    ]
)
_FIELDS = [f.name for f in CANDIDATE_SCHEMA.fields]
RAW_CHARS = 2000
RAW_MARGIN = 64  # kept past RAW_CHARS until the sft stage has redacted it (then cut to RAW_CHARS)

MC_PROMPT = {
    "zh": "以下是一道选择题，请选出正确答案并给出解析。\n\n{question}\n\n{options}",
    "en": "Answer the following multiple-choice question and explain your answer.\n\n{question}\n\n{options}",
}
MC_ANSWER = {"zh": ("答案：", "解析："), "en": ("Answer: ", "Explanation: ")}


# ---------------------------------------------------------------------------------------------------
# record builders
# ---------------------------------------------------------------------------------------------------
def _sample_id(source: str, native_id: str) -> str:
    return hashlib.sha256(f"{source}#{native_id}".encode()).hexdigest()[:32]


def _language(texts: list[str]) -> str:
    guess = guess_language("\n".join(t for t in texts if t)[:4000], 0.0)
    return "en" if guess.lang == "en" else "zh"


def _clean(text: Any) -> str:
    return "" if text is None else str(text).replace("\r\n", "\n").replace("\r", "\n").strip()


def make_record(source: str, source_file: str, position: int, native_id: str, **fields: Any) -> Record:
    """A record with every candidate field (missing ones None) and a language guessed when not given."""
    rec: Record = dict.fromkeys(_FIELDS)
    rec.update(fields)
    rec["sample_id"] = _sample_id(source, native_id)
    rec["source"], rec["source_file"], rec["position"] = source, source_file, int(position)
    if rec.get("messages") is not None and rec.get("language") is None:
        rec["language"] = _language([m["content"] for m in rec["messages"]])
    return rec


def error_record(source: str, source_file: str, position: int, reason: str, raw: str) -> Record:
    rec: Record = dict.fromkeys(_FIELDS)
    rec.update(sample_id=_sample_id(source, f"{source_file}#{position}#error"), source=source,
               source_file=source_file, position=int(position), error=reason, raw=raw[: RAW_CHARS + RAW_MARGIN])
    return rec


def conversation(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    """[(user, assistant), ...] -> messages."""
    out: list[dict[str, str]] = []
    for user, assistant in pairs:
        out.append({"role": "user", "content": _clean(user)})
        out.append({"role": "assistant", "content": _clean(assistant)})
    return out


def dialogue_type(messages: list[dict[str, str]]) -> str:
    users = sum(1 for m in messages if m["role"] == "user")
    return "multi_turn" if users >= 2 else "single_turn"


def mc_messages(question: str, options: list[dict[str, str]], answer: str, explanation: str | None,
                language: str) -> list[dict[str, str]]:
    """The SFT rendering of a multiple-choice item: question + options -> answer letters (+ explanation)."""
    lines = "\n".join(f"{o['label']}. {o['text']}" for o in options)
    prompt = MC_PROMPT[language].format(question=question, options=lines)
    return [{"role": "user", "content": prompt},
            {"role": "assistant", "content": mc_answer_text(options, answer, explanation, language)}]


def mc_answer_text(options: list[dict[str, str]], letters: str, explanation: str | None, language: str) -> str:
    """``答案：C. 出血量`` (+ ``解析：...``); also used for the rejected side of objective pairs."""
    head, expl = MC_ANSWER[language]
    by_label = {o["label"]: o["text"] for o in options}
    chosen = "；".join(f"{x}. {by_label.get(x, '')}".rstrip(". ") for x in letters) if language == "zh" else \
        "; ".join(f"{x}. {by_label.get(x, '')}".rstrip(". ") for x in letters)
    text = head + chosen
    if explanation:
        text += "\n\n" + expl + explanation
    return text


def mc_record(source: str, source_file: str, position: int, native_id: str, question: str,
              options: list[dict[str, str]], answer: str, explanation: str | None, **extra: Any) -> Record:
    question, answer = _clean(question), re.sub(r"[^A-Z]", "", _clean(answer).upper())
    explanation = _clean(explanation) or None
    if explanation is not None and explanation.lower() in ("nan", "none", "null"):
        explanation = None  # spreadsheet exports write a missing cell as the string "nan"
    language = extra.pop("language", None) or _language([question] + [o["text"] for o in options])
    labels = {o["label"] for o in options}
    if not question or not options or not answer or not set(answer) <= labels:
        return error_record(source, source_file, position, "bad_multiple_choice",
                            json.dumps({"question": question, "options": options, "answer": answer},
                                       ensure_ascii=False))
    return make_record(source, source_file, position, native_id, type="multiple_choice", language=language,
                       question=question, options=options, answer=answer, explanation=explanation,
                       messages=mc_messages(question, options, answer, explanation, language), **extra)


# ---------------------------------------------------------------------------------------------------
# parsers: one per format, shared by the SFT importers and the labelled-data builder
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One native record of a dataset file: ``obj`` as parsed, or ``error`` (why it could not be read)
    with its ``raw`` text. ``position`` is the record's place in the file (line, row, block or file index)."""

    source_file: str
    position: int
    obj: Any = None
    error: str | None = None
    raw: str = ""


def item_error(source: str, item: Item) -> Record:
    """The quarantine record of an unreadable item."""
    assert item.error is not None
    return error_record(source, item.source_file, item.position, item.error, item.raw)


def _json_lines(path: Path) -> Iterator[Item]:
    with path.open("r", encoding="utf-8-sig") as fh:
        for i, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                yield Item(str(path), i, json.loads(line))
            except json.JSONDecodeError:
                yield Item(str(path), i, error="malformed_json", raw=line)


def _missing(item: Item) -> Item:
    return Item(item.source_file, item.position, error="missing_fields", raw=json.dumps(item.obj, ensure_ascii=False))


def parse_alpaca_jsonl(path: Path) -> Iterator[Item]:
    """JSON lines with ``instruction`` and ``output`` (``input`` optional)."""
    for item in _json_lines(path):
        ok = item.error is None and isinstance(item.obj, dict) and "instruction" in item.obj and "output" in item.obj
        yield item if ok or item.error else _missing(item)


def parse_toyhom_csv(path: Path) -> Iterator[Item]:
    """CSV rows (dicts) in GB18030."""
    with path.open("r", encoding="gb18030", errors="replace", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            yield Item(str(path), i, row)


def parse_cmtmedqa_json(path: Path) -> Iterator[Item]:
    """The items of one JSON list; a file that is not JSON is one error item."""
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        yield Item(str(path), 0, error="malformed_json", raw=str(err))
        return
    for i, obj in enumerate(items):
        yield Item(str(path), i, obj)


_COVID_ID = re.compile(r"(?m)^id=(\d+)\s*$")


def parse_covid_dialogue_txt(path: Path) -> Iterator[Item]:
    """``id=N`` blocks: ``obj`` = {id, key, block, body}. ``key`` is the id, made unique for a repeated id
    (the published English file has id=18 twice: the 2nd is ``18#2``); ``block`` numbers the blocks in file
    order, counting any text before the first ``id=`` line as block 0."""
    text = path.read_text(encoding="utf-8-sig", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    blocks = _COVID_ID.split(text)
    first = 1 if blocks[0] else 0
    seen: Counter[str] = Counter()
    for k, n in enumerate(range(1, len(blocks) - 1, 2)):
        native, body = blocks[n], blocks[n + 1]
        seen[native] += 1
        key = native if seen[native] == 1 else f"{native}#{seen[native]}"
        yield Item(str(path), int(native), {"id": native, "key": key, "block": first + k, "body": body})


def parse_sharegpt_jsonl(path: Path) -> Iterator[Item]:
    """JSON lines with a non-empty ``conversations`` list."""
    for item in _json_lines(path):
        conv = item.obj.get("conversations") if isinstance(item.obj, dict) else None
        yield item if item.error or (isinstance(conv, list) and conv) else _missing(item)


def parse_medquad_xml(path: Path) -> Iterator[Item]:
    """Every ``*.xml`` under ``path`` (sorted): ``obj`` = (file, XML root)."""
    for pos, file in enumerate(sorted(path.rglob("*.xml"))):
        try:
            yield Item(str(file), pos, (file, ET.parse(file).getroot()))
        except ET.ParseError as err:
            yield Item(str(file), pos, error="malformed_xml", raw=str(err))


def parse_pubmedqa_json(path: Path) -> Iterator[Item]:
    """The JSON object's entries in PMID order: ``obj`` = (pmid, entry)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for i, (pmid, entry) in enumerate(sorted(data.items())):
        yield Item(str(path), i, (pmid, entry))


# ---------------------------------------------------------------------------------------------------
# importers: (source name, path, subjects) -> records
# ---------------------------------------------------------------------------------------------------
def read_alpaca_jsonl(source: str, path: Path, **_: Any) -> Iterator[Record]:
    for item in parse_alpaca_jsonl(path):
        if item.error:
            yield item_error(source, item)
            continue
        i, obj = item.position, item.obj
        prompt = _clean(obj.get("instruction"))
        if _clean(obj.get("input")):
            prompt += "\n" + _clean(obj.get("input"))
        yield make_record(source, str(path), i, str(i), type="single_turn",
                          messages=conversation([(prompt, obj.get("output"))]))


def read_toyhom_csv(source: str, path: Path, **_: Any) -> Iterator[Record]:
    for item in parse_toyhom_csv(path):
        i, row = item.position, item.obj
        ask, answer = _clean(row.get("ask")), _clean(row.get("answer"))
        title = _clean(row.get("title"))
        prompt = ask if not title or ask.startswith(title) else f"{title}\n{ask}"
        yield make_record(source, str(path), i, str(i), type="single_turn",
                          department=_clean(row.get("department")) or None,
                          messages=conversation([(prompt, answer)]))


def read_cmtmedqa_json(source: str, path: Path, **_: Any) -> Iterator[Record]:
    for item in parse_cmtmedqa_json(path):
        if item.error:
            yield item_error(source, item)
            return
        i, obj = item.position, item.obj
        history = obj.get("history") or []
        if not all(isinstance(h, list) and len(h) == 2 for h in history):
            yield error_record(source, str(path), i, "bad_history", json.dumps(obj, ensure_ascii=False))
            continue
        pairs = [(h[0], h[1]) for h in history] + [(obj.get("instruction"), obj.get("output"))]
        messages = conversation(pairs)
        yield make_record(source, str(path), i, str(obj.get("id") or i), type=dialogue_type(messages),
                          department=_clean(obj.get("cate1")) or None, messages=messages)


_SPEAKERS = {"病人：": "user", "病人:": "user", "患者：": "user", "医生：": "assistant", "医生:": "assistant",
             "Patient:": "user", "Doctor:": "assistant"}


def parse_covid_block(lines: list[str]) -> tuple[str, list[dict[str, str]]]:
    """One ``id=N`` block -> (description, merged speaker turns)."""
    section, description, turns = "", [], []  # type: ignore[var-annotated]
    role: str | None = None
    for line in lines:
        stripped = line.strip()
        if stripped in ("Description", "Dialogue"):
            section = stripped
            continue
        if section == "Description":
            description.append(stripped)
        elif section == "Dialogue":
            if stripped in _SPEAKERS:
                role = _SPEAKERS[stripped]
                if turns and turns[-1]["role"] == role:
                    continue  # consecutive lines by the same speaker are one turn
                turns.append({"role": role, "content": ""})
            elif role is not None and stripped:
                turns[-1]["content"] = (turns[-1]["content"] + "\n" + stripped).strip()
    return "\n".join(x for x in description if x).strip(), [t for t in turns if t["content"]]


def covid_messages(description: str, turns: list[dict[str, str]]) -> list[dict[str, str]]:
    """The patient's description opens the conversation; roles alternate; it ends on the doctor."""
    merged: list[dict[str, str]] = []
    first_user = turns[0]["content"] if turns and turns[0]["role"] == "user" else ""
    if description and " ".join(description.split()) not in " ".join(first_user.split()):
        merged.append({"role": "user", "content": description})
    for t in turns:
        if merged and merged[-1]["role"] == t["role"]:
            merged[-1] = {"role": t["role"], "content": merged[-1]["content"] + "\n" + t["content"]}
        else:
            merged.append(dict(t))
    while merged and merged[-1]["role"] != "assistant":
        merged.pop()
    if merged and merged[0]["role"] != "user":
        merged.insert(0, {"role": "user", "content": ""})  # flagged empty_turn downstream
    return merged


def read_covid_dialogue_txt(source: str, path: Path, **_: Any) -> Iterator[Record]:
    for item in parse_covid_dialogue_txt(path):
        native, key, body = item.obj["id"], item.obj["key"], item.obj["body"]
        description, turns = parse_covid_block(body.split("\n"))
        messages = covid_messages(description, turns)
        if not messages:
            yield error_record(source, str(path), int(native), "no_doctor_reply", body)
            continue
        yield make_record(source, str(path), int(native), key, type=dialogue_type(messages), messages=messages)


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}


def read_sharegpt_jsonl(source: str, path: Path, **_: Any) -> Iterator[Record]:
    for item in parse_sharegpt_jsonl(path):
        if item.error:
            yield item_error(source, item)
            continue
        i, obj = item.position, item.obj
        conv = obj["conversations"]
        try:
            messages = [{"role": _SHAREGPT_ROLES[m["from"]], "content": _clean(m["value"])} for m in conv]
        except (KeyError, TypeError):
            yield error_record(source, str(path), i, "bad_role", json.dumps(obj, ensure_ascii=False))
            continue
        yield make_record(source, str(path), i, str(obj.get("id", i)), type=dialogue_type(messages),
                          messages=messages)


def read_medquad_xml(source: str, path: Path, **_: Any) -> Iterator[Record]:
    for item in parse_medquad_xml(path):
        if item.error:
            yield item_error(source, item)
            continue
        pos, rel, (file, root) = item.position, item.source_file, item.obj
        for pair in root.iter("QAPair"):
            q, a = pair.find("Question"), pair.find("Answer")
            pid = pair.get("pid", "")
            yield make_record(source, rel, pos, f"{file.parent.name}/{file.name}#{pid}", type="single_turn",
                              language="en", messages=conversation([(q.text if q is not None else "",
                                                                     a.text if a is not None else "")]))


def read_pubmedqa_json(source: str, path: Path, **_: Any) -> Iterator[Record]:
    options = [{"label": "A", "text": "yes"}, {"label": "B", "text": "no"}, {"label": "C", "text": "maybe"}]
    letters = {"yes": "A", "no": "B", "maybe": "C"}
    for parsed in parse_pubmedqa_json(path):
        i, (pmid, item) = parsed.position, parsed.obj
        context = "\n".join(item.get("CONTEXTS") or [])
        question = f"Context: {context}\n\nQuestion: {item.get('QUESTION', '')}"
        yield mc_record(source, str(path), i, pmid, question, options,
                        letters.get(str(item.get("final_decision", "")).lower(), ""), item.get("LONG_ANSWER"),
                        language="en")


_OPTION_LINE = re.compile(r"^\s*([A-H])[\s.．、:：]\s*(.*)$")


def parse_options(text: str) -> list[dict[str, str]]:
    """CMExam options: lines 'A 原发病' separated by real newlines or by a literal backslash-n."""
    out = []
    for line in re.split(r"\\n|\n", _clean(text)):
        m = _OPTION_LINE.match(line)
        if m:
            out.append({"label": m.group(1), "text": m.group(2).strip()})
    return out


_CMEXAM_ANNOTATIONS = {"Disease Group": "disease_group", "Clinical Department": "department",
                       "Medical Discipline": "discipline", "Competency": "competency",
                       "Difficulty level": "difficulty", "Difficulty Level": "difficulty"}


def read_cmexam_xlsx(source: str, path: Path, **_: Any) -> Iterator[Record]:
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True)
    rows = wb.active.iter_rows(values_only=True)
    header = [str(h) if h is not None else "" for h in next(rows)]
    for i, values in enumerate(rows):
        row = dict(zip(header, values))
        extra = {field: (_clean(row.get(col)) or None) for col, field in _CMEXAM_ANNOTATIONS.items() if col in row}
        yield mc_record(source, str(path), i, str(i), row.get("Question") or "", parse_options(row.get("Options") or ""),
                        row.get("Answer") or "", row.get("Explanation"), language="zh", **extra)
    wb.close()


def read_cmmlu_csv(source: str, path: Path, subjects: tuple[str, ...] = (), **_: Any) -> Iterator[Record]:
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if subjects:
        files = [f for f in files if f.stem in subjects]
    for file in files:
        with file.open("r", encoding="utf-8-sig", newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                options = [{"label": x, "text": _clean(row.get(x))} for x in "ABCD" if _clean(row.get(x))]
                yield mc_record(source, str(file), i, f"{file.stem}#{i}", row.get("Question") or "", options,
                                row.get("Answer") or "", None, language="zh", discipline=file.stem)


def read_mc_jsonl(source: str, path: Path, **_: Any) -> Iterator[Record]:
    for item in _json_lines(path):
        i, obj, err = item.position, item.obj, item_error(source, item) if item.error else None
        if err is not None or not isinstance(obj, dict) or not isinstance(obj.get("options"), dict):
            yield err or error_record(source, str(path), i, "missing_fields", json.dumps(obj, ensure_ascii=False))
            continue
        options = [{"label": str(k), "text": _clean(v)} for k, v in sorted(obj["options"].items())]
        extra = {k: obj.get(k) for k in ("department", "disease_group", "discipline", "competency", "difficulty",
                                         "language") if obj.get(k)}
        yield mc_record(source, str(path), i, str(obj.get("id", i)), obj.get("question") or "", options,
                        obj.get("answer") or "", obj.get("explanation"), **extra)


def read_scored_jsonl(source: str, path: Path, **_: Any) -> Iterator[Record]:
    for item in _json_lines(path):
        i, obj, err = item.position, item.obj, item_error(source, item) if item.error else None
        responses = obj.get("responses") if isinstance(obj, dict) else None
        if err is not None or not isinstance(responses, list) or not responses or not obj.get("prompt"):
            yield err or error_record(source, str(path), i, "missing_fields", json.dumps(obj, ensure_ascii=False))
            continue
        scored: list[dict[str, Any]] = [{"content": _clean(r.get("content")), "score": float(r.get("score", 0.0))}
                                        for r in responses]
        best = max(scored, key=lambda r: r["score"])  # first of the best on ties: deterministic
        yield make_record(source, str(path), i, str(obj.get("id", i)), type="single_turn",
                          department=obj.get("department"), responses=scored,
                          messages=conversation([(obj["prompt"], best["content"])]))


Importer = Callable[..., Iterator[Record]]
IMPORTERS: dict[str, Importer] = {
    "alpaca_jsonl": read_alpaca_jsonl,
    "toyhom_csv": read_toyhom_csv,
    "cmtmedqa_json": read_cmtmedqa_json,
    "covid_dialogue_txt": read_covid_dialogue_txt,
    "sharegpt_jsonl": read_sharegpt_jsonl,
    "medquad_xml": read_medquad_xml,
    "pubmedqa_json": read_pubmedqa_json,
    "cmexam_xlsx": read_cmexam_xlsx,
    "cmmlu_csv": read_cmmlu_csv,
    "mc_jsonl": read_mc_jsonl,
    "scored_jsonl": read_scored_jsonl,
}


def importer(format_id: str) -> Importer:
    try:
        return IMPORTERS[format_id]
    except KeyError:
        raise ConfigError(
            f"unknown SFT importer {format_id!r}; valid: {', '.join(sorted(IMPORTERS))}"
        ) from None


def import_sources(spark: SparkSession, sources: Any) -> tuple[DataFrame, list[str]]:
    """All configured sources -> one candidate DataFrame, plus the names of sources skipped (path missing).

    Importer ids are checked before anything is read, so a typo fails fast.
    """
    for src in sources:
        importer(src.format)
    rows: list[Record] = []
    skipped: list[str] = []
    for src in sources:
        path = Path(src.path)
        if not path.exists():
            log.warning("sft source %s: %s does not exist; skipped", src.name, path)
            skipped.append(src.name)
            continue
        n = 0
        for rec in importer(src.format)(src.name, path, subjects=tuple(src.subjects)):
            rows.append(rec)
            n += 1
        log.info("sft source %s (%s): %d records from %s", src.name, src.format, n, path)
    return records_frame(spark, rows), skipped


def records_frame(spark: SparkSession, records: list[Record]) -> DataFrame:
    """Records -> DataFrame through Arrow (one columnar transfer instead of pickling row by row)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    table = pa.Table.from_pylist([{f: r.get(f) for f in _FIELDS} for r in records],
                                 schema=to_arrow_schema(CANDIDATE_SCHEMA))
    return spark.createDataFrame(table).select(
        [F.col(f.name).cast(f.dataType).alias(f.name) for f in CANDIDATE_SCHEMA.fields]
    )
