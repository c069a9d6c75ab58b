"""Normalize: raw_documents -> documents.

Python (one vectorised pass, ``pandas_udf`` in iterator form) does only what Spark has no built-in for:
HTML entity unescaping, Unicode NFKC, OpenCC Traditional->Simplified and language id. Everything else —
control and zero-width characters, whitespace, counts, hashes — is Spark built-in expressions.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType

from medcorpus.core.config import NormalizeConfig
from medcorpus.text.pii import Policy, redact_column, redact_columns
from medcorpus.text.script import HAN as _HAN
from medcorpus.text.script import han_count

# ---------------------------------------------------------------------------------------------------
# pure Python helpers (unit-tested directly)
# ---------------------------------------------------------------------------------------------------
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")
_OTHER_LETTER = re.compile(r"[\u0400-\u04ff\u0590-\u06ff\u0900-\u097f\u0e00-\u0e7f]")
_HAN_RUN = re.compile(_HAN.pattern + "+")
_KANA_RUN = re.compile(_KANA.pattern + "+")
_HANGUL_RUN = re.compile(_HANGUL.pattern + "+")
_OTHER_LETTER_RUN = re.compile(_OTHER_LETTER.pattern + "+")

EN_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers him his how i if in into is it its itself just me more most my no nor not now of off on
    once only or other our out over own same she should so some such than that the their them then there these
    they this those through to too under until up very was we were what when where which while who whom why
    will with would you your""".split()
)


@dataclass(frozen=True)
class LangGuess:
    lang: str
    confidence: float


def guess_language(text: str, min_confidence: float = 0.5) -> LangGuess:
    """zh / en / other from script counts and English function words. Cheap and deterministic.

    A Han character weighs like a short word, so a Chinese text with a few English drug names stays
    ``zh`` and an English text quoting a Chinese term stays ``en``.
    """
    sample = text[:20000]
    # characters counted as the lengths of runs: one string per run instead of one per character
    han = sum(map(len, _HAN_RUN.findall(sample)))
    kana = sum(map(len, _KANA_RUN.findall(sample))) if _KANA.search(sample) else 0
    hangul = sum(map(len, _HANGUL_RUN.findall(sample))) if _HANGUL.search(sample) else 0
    other = sum(map(len, _OTHER_LETTER_RUN.findall(sample))) if _OTHER_LETTER.search(sample) else 0
    words = _LATIN_WORD.findall(sample)
    latin_units = len(words)
    total = han + kana + hangul + other + latin_units
    if total == 0:
        return LangGuess("other", 0.0)
    if kana > 0.05 * (han + kana) and kana >= 3:
        return LangGuess("other", round((han + kana) / total, 4))
    zh_share = han / total
    if zh_share >= 0.5:
        return _thresholded("zh", zh_share, min_confidence)
    latin_share = latin_units / total
    if latin_share >= 0.5:
        stop = sum(map(EN_STOPWORDS.__contains__, map(str.lower, words)))
        stop_ratio = stop / max(1, len(words))
        # English prose runs 30-50% function words; short titles have fewer, so scale gently
        english = min(1.0, stop_ratio / 0.2) if len(words) >= 8 else (0.6 if stop_ratio > 0 or _ascii_only(words) else 0.3)
        return _thresholded("en", round(latin_share * english, 4), min_confidence)
    return LangGuess("other", round(max(zh_share, latin_share), 4))


def _ascii_only(words: list[str]) -> bool:
    return all(w.isascii() for w in words)


def _thresholded(lang: str, confidence: float, min_confidence: float) -> LangGuess:
    confidence = round(min(1.0, confidence), 4)
    return LangGuess(lang if confidence >= min_confidence else "other", confidence)


_CONVERTERS: dict[str, Any] = {}


def opencc_converter(config_name: str) -> Any:
    """One OpenCC converter per Python worker process. Converters cannot be pickled, so they are
    built here, lazily, on the executor — never captured in a closure."""
    conv = _CONVERTERS.get(config_name)
    if conv is None:
        import opencc

        conv = opencc.OpenCC(config_name)
        _CONVERTERS[config_name] = conv
    return conv


def to_simplified(text: str, config_name: str, min_changed_ratio: float) -> tuple[str, bool]:
    """Convert to Simplified when enough Han characters change; (text, converted)."""
    han = len(_HAN.findall(text))
    if han == 0:
        return text, False
    converted = opencc_converter(config_name).convert(text)
    if converted == text:
        return text, False
    if len(converted) == len(text):
        changed = sum(1 for a, b in zip(text, converted) if a != b)
    else:
        changed = abs(len(converted) - len(text)) + 1
    if changed / han >= min_changed_ratio:
        return converted, True
    return text, False


def normalize_unicode(text: str) -> str:
    if "&" in text:
        text = html.unescape(text)
    if unicodedata.is_normalized("NFKC", text):  # most text: a quick check instead of a rebuilt copy
        return text
    return unicodedata.normalize("NFKC", text)


def normalize_one(text: str | None, cfg: NormalizeConfig) -> tuple[str | None, str, float, bool]:
    if text is None:
        return None, "other", 0.0, False
    text = normalize_unicode(text)
    guess = guess_language(text, cfg.lang_min_confidence)
    converted = False
    if guess.lang == "zh" or (guess.lang == "other" and _HAN.search(text[:2000])):
        text, converted = to_simplified(text, cfg.t2s_config, cfg.t2s_min_changed_ratio)
    return text, guess.lang, guess.confidence, converted


# ---------------------------------------------------------------------------------------------------
# Spark
# ---------------------------------------------------------------------------------------------------
_PY_RESULT = StructType(
    [
        StructField("text", StringType(), True),
        StructField("lang", StringType(), False),
        StructField("lang_confidence", DoubleType(), False),
        StructField("t2s_converted", BooleanType(), False),
    ]
)


def python_normalize_column(text: Column, cfg: NormalizeConfig) -> Column:
    """unescape + NFKC + OpenCC + language id in one Arrow-batched pass."""

    @F.pandas_udf(_PY_RESULT)  # type: ignore[call-overload]
    def _normalize(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for series in batches:
            rows = [normalize_one(t, cfg) for t in series]
            yield pd.DataFrame(rows, columns=["text", "lang", "lang_confidence", "t2s_converted"])

    return _normalize(text)


# control characters except \t \n; zero-width and BOM; soft hyphen
_CONTROL = r"[\x{0000}-\x{0008}\x{000B}\x{000C}\x{000E}-\x{001F}\x{007F}-\x{009F}]"
_ZERO_WIDTH = r"[\x{200B}-\x{200D}\x{2060}\x{FEFF}\x{00AD}]"


def clean_whitespace(text: Column) -> Column:
    """CRLF/CR -> LF, drop control and zero-width chars, collapse spaces, trim lines, <= 1 blank line."""
    text = F.regexp_replace(text, r"\r\n?", "\n")
    text = F.regexp_replace(text, _CONTROL, "")
    text = F.regexp_replace(text, _ZERO_WIDTH, "")
    text = F.regexp_replace(text, r"[ \t\x{00A0}\x{3000}\x{2000}-\x{200A}]+", " ")
    text = F.regexp_replace(text, r"(?m)^ +| +$", "")
    text = F.regexp_replace(text, r"\n{3,}", "\n\n")
    return F.trim(text)


def token_estimate(text: Column, cfg: NormalizeConfig) -> Column:
    han = han_count(text)
    other = F.char_length(text) - han
    return F.ceil(han * F.lit(cfg.zh_tokens_per_han_char) + other * F.lit(cfg.tokens_per_other_char)).cast("long")


def normalize_documents(raw: DataFrame, cfg: NormalizeConfig, run_id: str, pii: Any = None) -> DataFrame:
    """raw_documents rows -> documents rows; ``text`` may come out empty (:func:`is_empty_text`): the normalize
    stage (:mod:`medcorpus.stages.normalize`) sends those rows to quarantine.

    ``text``, ``title``, ``url`` and ``meta`` leave this stage PII-redacted by the policy of
    :mod:`medcorpus.text.pii` (``pii``: the Config, its FilterConfig or a Policy; None = the defaults), so no
    table after ingest holds raw PII; counts and hash follow the redacted text.
    """
    py = python_normalize_column(F.col("text"), cfg)
    policy = Policy.of(pii)
    out = (
        raw.select("doc_id", "source", "source_file", "source_format", "url", "title", "meta", py.alias("n"))
        .withColumn("text", redact_column(clean_whitespace(F.col("n.text")), policy))
        .withColumn("lang", F.col("n.lang"))
        .withColumn("lang_confidence", F.col("n.lang_confidence"))
        .withColumn("t2s_converted", F.col("n.t2s_converted"))
        .drop("n")
        .transform(redact_columns, ("title", "url", "meta"), policy)
        .withColumn("char_count", F.char_length("text").cast("long"))
        .withColumn("token_estimate", token_estimate(F.col("text"), cfg))
        .withColumn("text_hash", F.sha2(F.col("text"), 256))
        .withColumn("normalize_run_id", F.lit(run_id))
    )
    return out


def is_empty_text() -> Column:
    return F.col("text").isNull() | (F.char_length("text") == 0)
