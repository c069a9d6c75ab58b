"""Benchmark decontamination: find and remove texts that overlap benchmark test items.

An item (question + options) is cut into long n-grams — characters for Chinese (punctuation and spaces
removed, so layout does not hide a copy), words for English — hashed with the same vectorised rolling
hash as dedup. A text is contaminated by an item when it contains at least ``min_overlap`` of the item's
distinct n-grams. Matching runs in ``mapInArrow``: every text's n-grams are hashed with numpy and looked
up (binary search) in the sorted benchmark n-gram set, so only matching n-grams leave the Python worker;
the counting per item is a Spark join + groupBy.

:func:`find_contamination` and :func:`drop_contaminated` are the reusable DataFrame -> DataFrame entry
points (documents here; SFT and preference items in the datasets stage).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from medcorpus.core.config import REPO_ROOT, DecontaminateConfig
from medcorpus.core.errors import InputError
from medcorpus.text.ngrams import WORD as _WORD
from medcorpus.text.ngrams import char_ngram_hashes, word_ngram_hashes
from medcorpus.text.script import HAN as _HAN

log = logging.getLogger(__name__)

_NOT_WORDCHAR = re.compile(r"[\W_]+")
_WORD_SALT = np.uint64(0x2545F4914F6CDD1D)


# ---------------------------------------------------------------------------------------------------
# n-grams (pure)
# ---------------------------------------------------------------------------------------------------
def compact(text: str) -> str:
    """Lower-cased letters, digits and Han only: the form character n-grams are taken from."""
    return _NOT_WORDCHAR.sub("", unicodedata.normalize("NFKC", text).lower())


def is_chinese(text: str) -> bool:
    c = compact(text)
    return bool(c) and len(_HAN.findall(c)) / len(c) >= 0.3


def char_ngrams(text: str, n: int, whole_if_shorter: bool = False) -> np.ndarray:
    c = compact(text)
    if len(c) < n and not whole_if_shorter:
        return np.empty(0, dtype=np.uint64)
    return char_ngram_hashes(c, n)


def word_ngrams(text: str, n: int, whole_if_shorter: bool = False) -> np.ndarray:
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    if len(words) < n and not (whole_if_shorter and words):
        return np.empty(0, dtype=np.uint64)
    return word_ngram_hashes(words, n) ^ _WORD_SALT


def item_ngrams(text: str, cfg: DecontaminateConfig) -> np.ndarray:
    """Distinct n-grams of a benchmark item; an item shorter than n is one n-gram (its whole text)."""
    if len(compact(text)) < cfg.min_item_chars:
        return np.empty(0, dtype=np.uint64)
    if is_chinese(text):
        return np.unique(char_ngrams(text, cfg.zh_ngram_chars, whole_if_shorter=True))
    return np.unique(word_ngrams(text, cfg.en_ngram_words, whole_if_shorter=True))


def text_ngrams(text: str, cfg: DecontaminateConfig) -> np.ndarray:
    """All n-grams of a text that could match an item of either language (both kinds, distinct).

    Short items hash their whole text as one n-gram; those match only a text that is exactly that item,
    so they are added as one more n-gram of the text.
    """
    parts = [char_ngrams(text, cfg.zh_ngram_chars, whole_if_shorter=True),
             word_ngrams(text, cfg.en_ngram_words, whole_if_shorter=True)]
    return np.unique(np.concatenate(parts))


# ---------------------------------------------------------------------------------------------------
# benchmarks
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchItem:
    benchmark: str
    item_id: str
    question: str
    text: str


def _field(row: dict, names: Sequence[str]) -> str | None:
    for name in names:
        value = row.get(name)
        if isinstance(value, list):
            value = " ".join(str(v) for v in value if v is not None)
        if value is not None and str(value).strip() and str(value) != "nan":
            return str(value)
    return None


def _rows(path: Path) -> Iterator[dict]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            yield from csv.DictReader(fh)
    elif suffix in (".xlsx", ".xls"):
        import pandas as pd

        yield from pd.read_excel(path, dtype=str).to_dict("records")
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        yield from (data if isinstance(data, list) else data.values())
    else:
        raise InputError(f"unsupported benchmark file {path} (use .csv, .xlsx, .jsonl or .json)")


def benchmarks_root(cfg: DecontaminateConfig) -> Path:
    root = Path(cfg.benchmarks_dir)
    return root if root.is_absolute() else (REPO_ROOT / root).resolve()


def benchmark_files(cfg: DecontaminateConfig) -> list[Path]:
    """The configured benchmark files, sorted (an error when the folder is missing)."""
    root = benchmarks_root(cfg)
    if not root.is_dir():
        raise InputError(f"benchmarks folder not found: {root} (set decontaminate.benchmarks_dir)")
    return sorted({Path(p) for g in cfg.benchmark_globs for p in glob.glob(str(root / g), recursive=True)})


def load_benchmark_items(cfg: DecontaminateConfig) -> list[BenchItem]:
    """Question (+ options) of every item in the configured benchmark files (small: read on the driver)."""
    root = benchmarks_root(cfg)
    files = benchmark_files(cfg)
    items: list[BenchItem] = []
    for path in files:
        rel = str(path.relative_to(root))
        for i, row in enumerate(_rows(path)):
            question = _field(row, cfg.question_fields)
            if question is None:
                continue
            items.append(BenchItem(rel, str(i), question, matchable_text(question, row, cfg)))
    log.info("loaded %d benchmark items from %d files under %s", len(items), len(files), root)
    return items


def matchable_text(question: str, row: dict, cfg: DecontaminateConfig) -> str:
    """The text an item is matched by: its question when that alone gives a few n-grams; otherwise the
    question followed by its labelled options ("A 卵巢 B 前庭大腺 ...": the labels survive punctuation
    removal, so copies formatted "A. ..." or "(A) ..." still match)."""
    if is_chinese(question):
        long_enough = len(compact(question)) >= cfg.zh_ngram_chars + 4
    else:
        long_enough = len(_WORD.findall(question)) >= cfg.en_ngram_words + 4
    if long_enough:
        return question
    options: list[str] = []
    for key in cfg.option_fields:
        value = row.get(key)
        if value is None or str(value) in ("", "nan"):
            continue
        if isinstance(value, list):
            options.extend(f"{chr(65 + j)} {v}" for j, v in enumerate(value))
        else:
            options.append(f"{key} {value}" if len(key) == 1 else str(value))
    return " ".join([question, *options])


@dataclass
class BenchmarkIndex:
    """Sorted distinct n-gram hashes (for the workers), (gram, item_key) rows for the counting join, and one
    row per item with its details. Item details are not repeated per n-gram: with ~18k benchmark items and
    ~100 n-grams each, a question column per gram row made the index hundreds of MB, which the counting
    join then broadcast (a 1 GB driver ran out of memory)."""

    grams: np.ndarray  # sorted distinct uint64
    item_grams: DataFrame  # gram long, item_key int
    item_details: DataFrame  # item_key int, benchmark, bench_item_id, item_ngrams, question (one row per item)
    items: int


_ITEM_GRAM_SCHEMA = StructType(
    [StructField("gram", LongType(), False), StructField("item_key", IntegerType(), False)]
)
_ITEM_SCHEMA = StructType(
    [
        StructField("item_key", IntegerType(), False),
        StructField("benchmark", StringType(), False),
        StructField("bench_item_id", StringType(), False),
        StructField("item_ngrams", LongType(), False),
        StructField("question", StringType(), True),
    ]
)


def build_index(spark: SparkSession, items: Sequence[BenchItem], cfg: DecontaminateConfig) -> BenchmarkIndex:
    grams_per_item = [(item, item_ngrams(item.text, cfg)) for item in items]
    grams_per_item = [(item, g) for item, g in grams_per_item if len(g)]
    if grams_per_item:
        all_grams = np.concatenate([g for _, g in grams_per_item])
        lengths = np.array([len(g) for _, g in grams_per_item])
        idx = np.repeat(np.arange(len(grams_per_item)), lengths)
    else:
        all_grams, lengths, idx = np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.int64)
    details = pa.table({
        "item_key": pa.array(np.arange(len(grams_per_item)), type=pa.int32()),
        "benchmark": [it.benchmark for it, _ in grams_per_item],
        "bench_item_id": [it.item_id for it, _ in grams_per_item],
        "item_ngrams": pa.array(lengths, type=pa.int64()),
        "question": [it.question[:300] for it, _ in grams_per_item],
    })
    pairs = pa.table({"gram": pa.array(all_grams.view(np.int64)), "item_key": pa.array(idx, type=pa.int32())})

    def frame(table: pa.Table, schema: StructType) -> DataFrame:
        return spark.createDataFrame(table.to_pandas(), schema) if table.num_rows else spark.createDataFrame([], schema)

    return BenchmarkIndex(np.unique(all_grams), frame(pairs, _ITEM_GRAM_SCHEMA), frame(details, _ITEM_SCHEMA),
                          len(grams_per_item))


#: indexes built in this process, by :func:`index_fingerprint` (at most _INDEX_CACHE_SIZE, newest last)
_INDEXES: dict[str, BenchmarkIndex] = {}
_INDEX_CACHE_SIZE = 2


def index_fingerprint(spark: SparkSession, cfg: DecontaminateConfig) -> str:
    """What an index depends on: the Spark application (its frames live there), the decontaminate config,
    and every benchmark file's path, size and modification time (an edited or added file changes it)."""
    files = [(str(p), st.st_size, st.st_mtime_ns) for p in benchmark_files(cfg) for st in (p.stat(),)]
    key = json.dumps([spark.sparkContext.applicationId, cfg.model_dump(mode="json"), files], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def load_index(spark: SparkSession, cfg: DecontaminateConfig) -> BenchmarkIndex:
    """The benchmark index, built once per process for the same files and config. The decontaminate,
    sft and preference stages of one run all match against it; reading and hashing ~18k items took
    about 10 s each time."""
    key = index_fingerprint(spark, cfg)
    if key in _INDEXES:
        log.info("benchmark index: reused (%d items, files unchanged)", _INDEXES[key].items)
        return _INDEXES[key]
    index = build_index(spark, load_benchmark_items(cfg), cfg)
    _INDEXES[key] = index
    while len(_INDEXES) > _INDEX_CACHE_SIZE:
        del _INDEXES[next(iter(_INDEXES))]
    return index


# ---------------------------------------------------------------------------------------------------
# Spark: DataFrame -> DataFrame
# ---------------------------------------------------------------------------------------------------
_MATCH_SCHEMA = StructType([StructField("item_id", StringType(), False), StructField("gram", LongType(), False)])


def _match_batches(batches: Iterable[pa.RecordBatch], grams: np.ndarray, cfg: DecontaminateConfig) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        ids, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        out_ids: list[str] = []
        out_grams: list[np.ndarray] = []
        for doc_id, text in zip(ids, texts):
            if not text or len(grams) == 0:
                continue
            g = text_ngrams(text, cfg)
            pos = np.searchsorted(grams, g)
            hit = g[(pos < len(grams)) & (grams[np.minimum(pos, len(grams) - 1)] == g)]
            if len(hit):
                out_ids.extend([doc_id] * len(hit))
                out_grams.append(hit)
        gram_arr = np.concatenate(out_grams).view(np.int64) if out_grams else np.empty(0, np.int64)
        yield pa.RecordBatch.from_arrays(
            [pa.array(out_ids, type=pa.string()), pa.array(gram_arr, type=pa.int64())],
            schema=pa.schema([pa.field("item_id", pa.string(), False), pa.field("gram", pa.int64(), False)]),
        )


def find_contamination(
    df: DataFrame,
    index: BenchmarkIndex,
    cfg: DecontaminateConfig,
    *,
    id_col: str = "doc_id",
    text_cols: Sequence[str] = ("text",),
    kind: str = "document",
) -> DataFrame:
    """Rows of ``df`` overlapping a benchmark item -> contamination_hits rows (without run_id).

    ``text_cols`` are joined with newlines (e.g. prompt and response of an SFT item; for preference
    items pass prompt, chosen and rejected), so an item copied across fields is still found.
    """
    text = F.concat_ws("\n", *[F.coalesce(F.col(c).cast("string"), F.lit("")) for c in text_cols])
    inputs = df.select(F.col(id_col).cast("string").alias("item_id"), text.alias("text"))
    grams = index.grams
    matches = inputs.mapInArrow(lambda it: _match_batches(it, grams, cfg), _MATCH_SCHEMA)
    counted = (
        matches.join(index.item_grams, on="gram", how="inner")
        .groupBy("item_id", "item_key")
        .agg(F.countDistinct("gram").alias("matched_ngrams"))
        .join(F.broadcast(index.item_details), on="item_key", how="inner")  # one small row per item
        .withColumn("overlap", F.col("matched_ngrams") / F.col("item_ngrams"))
    )
    return counted.filter(F.col("overlap") >= F.lit(cfg.min_overlap)).select(
        F.lit(kind).alias("kind"), "item_id", "benchmark", "bench_item_id", "matched_ngrams", "item_ngrams",
        "overlap", "question",
    )


def drop_contaminated(
    df: DataFrame,
    index: BenchmarkIndex,
    cfg: DecontaminateConfig,
    *,
    id_col: str = "doc_id",
    text_cols: Sequence[str] = ("text",),
) -> DataFrame:
    """``df`` without the rows that overlap a benchmark item (same columns)."""
    hits = find_contamination(df, index, cfg, id_col=id_col, text_cols=text_cols).select(
        F.col("item_id").alias("_hit_id")
    ).distinct()
    return df.join(hits, df[id_col].cast("string") == hits["_hit_id"], how="left_anti")
