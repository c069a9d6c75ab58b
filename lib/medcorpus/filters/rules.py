"""Filter: documents -> clean_documents (kept, PII redacted) and filtered_out (removed, with the rule).

Score first, decide after. :func:`score_documents` computes every quality signal once, as one
``signals`` map column (length, symbol/digit/mojibake ratios, line measures, Gopher repetition,
lexicon hits); :func:`decide` applies the thresholds of :class:`~medcorpus.core.config.FilterConfig` to that
map in a fixed rule order and records the *first* rule that fails and its measured value. Because the
signals are stored with every row, a threshold can be re-applied without recomputing them.

The signals are defined as Spark built-in expressions (regular expressions, ``split``, higher-order
functions, ``array_distinct``; :func:`reference_score_documents`), and so is the PII redaction with its
ID-card (GB 11643) and bank-card (Luhn) checksums (:mod:`medcorpus.text.pii`; normalize already applied it
to ``documents``, the filter runs it again so its output is clean whatever wrote ``documents``). The Gopher
n-gram repetition signals need Python (see :func:`repetition_column` for why); :func:`score_documents`
computes the character-class and line signals in that same Arrow pass (:func:`signals_column`,
:mod:`medcorpus.filters.textsignals`) instead of a Java regex pass over the text each, with equal values;
the lexicon hits stay Spark regular expressions.

Units: Chinese (and ``other``) documents are measured in characters and their n-grams are character
n-grams (no whitespace tokenisation of Chinese); English documents are measured in words.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from medcorpus.core.config import REPO_ROOT, FilterConfig, NormalizeConfig
from medcorpus.core.errors import InputError
from medcorpus.filters.repetition import repetition_signals as _fast_repetition
from medcorpus.filters.textsignals import LINE_SIGNALS, text_signals
from medcorpus.text.normalize import token_estimate
from medcorpus.text.pii import redact_pii  # the PII policy: one module for every table and the LLM prompts

if TYPE_CHECKING:
    from medcorpus.core.context import RunContext

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------
# character classes (Java regex)
# ---------------------------------------------------------------------------------------------------
#: Punctuation and symbols that ordinary prose, and medical prose in particular, uses. Everything else
#: that is not a letter, mark, digit or space counts as a special character (# @ * | ★ ■ emoji ...).
ORDINARY_PUNCT = (
    r".,;:!?'\"()\[\]{}\-\x{2010}-\x{2015}_/\\%+=<>~·•、，。；：！？“”‘’（）《》〈〉【】「」『』…～"
    r"±×÷°℃℉μµ‰′″→←↑↓≤≥≈≠∶"
)
SPECIAL_CHAR = rf"[^\p{{L}}\p{{M}}\p{{N}}\s{ORDINARY_PUNCT}]"
#: U+FFFD, private use, the GBK "锟斤拷/烫烫烫" artefacts, UTF-8 read as Latin-1 (Ã©, â€™).
MOJIBAKE = r"\x{FFFD}|\p{Co}|锟斤拷|烫烫烫|屯屯屯|[\x{00C0}-\x{00FF}][\x{0080}-\x{00BF}]|â€"
#: Lines ending like a sentence (C4/Gopher "terminal punctuation"), closing quotes and brackets allowed.
END_PUNCT_LINE = r"[.!?;:。！？；：…\"'”’)）」』】\]]$"
EN_WORD = r"[\p{L}\p{N}][\p{L}\p{N}'’]*"


def is_en(lang: Column) -> Column:
    return lang == F.lit("en")


def _ratio(num: Column, den: Column) -> Column:
    return F.when(den > 0, num.cast("double") / den.cast("double")).otherwise(F.lit(0.0))


def _sum_lengths(arr: Column, length: Callable[[Column], Column]) -> Column:
    return F.aggregate(arr, F.lit(0).cast("long"), lambda acc, x: acc + length(x).cast("long"))


# ---------------------------------------------------------------------------------------------------
# signals: Column -> Column
# ---------------------------------------------------------------------------------------------------
def nonspace_chars(text: Column) -> Column:
    return F.char_length(F.regexp_replace(text, r"\s", ""))


def word_count(text: Column) -> Column:
    return F.regexp_count(text, F.lit(EN_WORD))


def doc_length(text: Column, lang: Column) -> Column:
    """Words for English, non-space characters otherwise."""
    return F.when(is_en(lang), word_count(text)).otherwise(nonspace_chars(text))


def pattern_ratio(text: Column, pattern: str) -> Column:
    """Matches of ``pattern`` per non-space character."""
    return _ratio(F.regexp_count(text, F.lit(pattern)), nonspace_chars(text))


def lines_of(text: Column) -> Column:
    return F.filter(F.split(text, r"\n"), lambda line: F.length(F.trim(line)) > 0)


def paragraphs_of(text: Column) -> Column:
    return F.filter(F.split(text, r"\n\s*\n"), lambda p: F.length(F.trim(p)) > 0)


def repeated_share(items: Column) -> Column:
    """Share of array elements that repeat an earlier element (Gopher's duplicate line/paragraph fraction)."""
    return _ratio(F.size(items) - F.size(F.array_distinct(items)), F.size(items))


def repeated_char_share(items: Column) -> Column:
    """Share of the characters of an array of strings that sit in repeats of an earlier element."""
    total = _sum_lengths(items, F.char_length)
    return _ratio(total - _sum_lengths(F.array_distinct(items), F.char_length), total)


def without_span(text: Column, start: Column, end: Column) -> Column:
    """``text`` without its characters ``[start, end)`` (0-based, as Python counts them); unchanged when
    ``end <= start`` (no span)."""
    start, end = start.cast("int"), end.cast("int")
    cut = F.concat(text.substr(F.lit(1), start), text.substr(end + 1, F.lit(1 << 30)))
    return F.when(end > start, cut).otherwise(text)


def line_length(line: Column, lang: Column) -> Column:
    return F.when(is_en(lang), word_count(line)).otherwise(nonspace_chars(line))


# N-gram repetition (Gopher top / duplicated n-grams) runs in one vectorised pandas_udf. It is expressible
# with higher-order functions (transform/slice/array_sort/aggregate), and was first written so, but those
# run interpreted row by row: on 200 docs of 1,500 characters the duplicated-5-gram signal alone took
# 20.8 s against 1.5 s for tokenising, so the six dup + three top n-gram signals would dominate the stage.
_ZH_DROP_CATEGORIES = ("P", "S", "Z", "C")
_EN_WORD_PY = re.compile(r"[^\W_][\w'’]*")
#: extra fields of the repetition struct that are not signals: where the forgiven quote sits in the text
QUOTE_SPAN_FIELDS = ("quote_start", "quote_end")


def repetition_tokens(text: str, english: bool, max_tokens: int) -> tuple[list[str], list[tuple[int, int]]]:
    """(units, their [start, end) character offsets in ``text``).

    English: lower-cased words. Chinese and other: characters that are not space, punctuation or symbol,
    except that a run of ASCII letters and digits (an English word or abbreviation, a drug or gene name,
    leftover markup such as ``strong``) is one lower-cased unit, as it would be in English text.
    """
    units: list[str] = []
    spans: list[tuple[int, int]] = []
    if english:
        for m in _EN_WORD_PY.finditer(text[: max_tokens * 12]):
            units.append(m.group().lower())
            spans.append(m.span())
            if len(units) == max_tokens:
                break
        return units, spans
    head = text[: max_tokens * 2]
    run = -1
    for i, ch in enumerate(head):
        if ch.isascii() and ch.isalnum():
            run = i if run < 0 else run
            continue
        if run >= 0:
            units.append(head[run:i].lower())
            spans.append((run, i))
            run = -1
        if not unicodedata.category(ch).startswith(_ZH_DROP_CATEGORIES):
            units.append(ch)
            spans.append((i, i + 1))
    if run >= 0:
        units.append(head[run:].lower())
        spans.append((run, len(head)))
    return units[:max_tokens], spans[:max_tokens]


def repetition_units(text: str, english: bool, max_tokens: int) -> list[str]:
    """Lower-cased words (en) or characters that are not space/punctuation/symbol (zh, other)."""
    return repetition_tokens(text, english, max_tokens)[0]


def top_ngram_char_frac(units: list[str], n: int) -> float:
    """Gopher: characters of the most frequent n-gram times its count, over all characters (0 if unique)."""
    total = sum(len(u) for u in units)
    if total == 0 or len(units) < n:
        return 0.0
    counts = Counter(tuple(units[i : i + n]) for i in range(len(units) - n + 1))
    gram, count = counts.most_common(1)[0]
    return min(1.0, count * sum(len(u) for u in gram) / total) if count > 1 else 0.0


def dup_ngram_char_frac(units: list[str], n: int) -> float:
    """Gopher (as in datatrove): characters in n-grams that repeat an earlier one, skipping past each
    repeat; over all characters."""
    total = sum(len(u) for u in units)
    if total == 0:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeated, i = 0, 0
    while i < len(units) - n + 1:
        gram = tuple(units[i : i + n])
        if gram in seen:
            repeated += sum(len(u) for u in gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return repeated / total


def longest_repeat(units: list[str], n: int) -> tuple[int, int, int] | None:
    """(start, end, source) of the longest passage ``units[start:end]`` that repeats the earlier, not
    overlapping ``units[source:source + end - start]``, found from n-gram seeds; None without a repeat."""
    grams = [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
    first: dict[tuple[str, ...], int] = {}
    best: tuple[int, int, int, int] | None = None  # (chars, start, end, source)
    i = 0
    while i < len(grams):
        p = first.setdefault(grams[i], i)
        if p + n > i:  # first occurrence, or overlapping its earlier one
            i += 1
            continue
        length = n
        while i + length < len(units) and p + length < i and units[i + length] == units[p + length]:
            length += 1
        chars = sum(len(u) for u in units[i : i + length])
        if best is None or chars > best[0]:
            best = (chars, i, i + length, p)
        i += length
    return None if best is None else best[1:]


def find_quote(text: str, units: list[str], spans: list[tuple[int, int]], n: int, cfg: FilterConfig) -> tuple[int, int] | None:
    """Unit range ``[start, end)`` of the document's quote, or None.

    Dialogues and QA pages repeat one passage once on purpose: the question in a title and again in the
    first turn, an answer again in a summary. Gopher's repetition measures cannot tell that from
    spam, so the longest repeated passage is forgiven when it is such a quote: it occurs exactly twice
    (its seed n-gram has two occurrences), spans at most ``max_quote_lines`` lines and holds at most
    ``max_quote_frac`` of the characters. A document pasted twice, a line repeated three times, or
    repetition spread over many passages is not a quote.
    """
    if cfg.max_quote_frac <= 0 or len(units) < 2 * n:
        return None
    found = longest_repeat(units, n)
    if found is None:
        return None
    start, end, source = found
    total = sum(len(u) for u in units)
    if sum(len(u) for u in units[start:end]) > cfg.max_quote_frac * total:
        return None
    # exactly two occurrences of its first, middle and last n-gram: a passage whose core also occurs a
    # third time (a question asked three times, each copy with a different label) is not a quote
    for at in sorted({start, (start + end - n) // 2, end - n}):
        probe = units[at : at + n]
        if sum(1 for i in range(len(units) - n + 1) if units[i] == probe[0] and units[i : i + n] == probe) != 2:
            return None
    if text.count("\n", spans[start][0], spans[end - 1][1]) + 1 > cfg.max_quote_lines:
        return None
    return start, end


def repetition_signals(text: str | None, lang: str | None, cfg: FilterConfig) -> dict[str, float]:
    """N-gram repetition signals, measured without the document's quote (see :func:`find_quote`).

    ``quote_frac`` is the share of characters of the forgiven quote (0 without one); ``quote_start`` /
    ``quote_end`` its character offsets in ``text`` (-1 without one), so the line and paragraph
    repetition signals can leave it out too.
    """
    fast = _fast_repetition(text, lang, cfg)  # the same values, about 4x faster (filters/repetition.py)
    if fast is not None:
        return fast
    text = text or ""
    units, spans = repetition_tokens(text, lang == "en", cfg.max_repetition_tokens)
    scale = 1 if lang == "en" else cfg.zh_chars_per_ngram_unit
    out: dict[str, float] = {"repetition_tokens": float(len(units)), "quote_frac": 0.0,
                             "quote_start": -1.0, "quote_end": -1.0}
    quote = find_quote(text, units, spans, min(cfg.dup_ngram_sizes) * scale, cfg) if cfg.dup_ngram_sizes else None
    if quote is not None:
        start, end = quote
        out["quote_frac"] = sum(len(u) for u in units[start:end]) / sum(len(u) for u in units)
        out["quote_start"], out["quote_end"] = float(spans[start][0]), float(spans[end - 1][1])
        units = units[:start] + units[end:]
    for n in cfg.top_ngram_sizes:
        out[f"top_{n}gram_frac"] = top_ngram_char_frac(units, n * scale)
    for n in cfg.dup_ngram_sizes:
        out[f"dup_{n}gram_frac"] = dup_ngram_char_frac(units, n * scale)
    return out


def reference_repetition_signals(text: str | None, lang: str | None, cfg: FilterConfig) -> dict[str, float]:
    """:func:`repetition_signals` by the definitions above only (what the fast path is tested against)."""
    global _fast_repetition
    saved, _fast_repetition = _fast_repetition, lambda *_: None
    try:
        return repetition_signals(text, lang, cfg)
    finally:
        _fast_repetition = saved


def repetition_names(cfg: FilterConfig) -> list[str]:
    """Signals of the repetition struct (its quote offsets are not signals)."""
    return ["repetition_tokens", "quote_frac", *(f"top_{n}gram_frac" for n in cfg.top_ngram_sizes),
            *(f"dup_{n}gram_frac" for n in cfg.dup_ngram_sizes)]


def repetition_column(text: Column, lang: Column, cfg: FilterConfig) -> Column:
    """struct of the n-gram repetition signals, one Arrow-batched pass (iterator pandas_udf)."""
    names = [*repetition_names(cfg), *QUOTE_SPAN_FIELDS]
    schema = StructType([StructField(n, DoubleType(), False) for n in names])

    @F.pandas_udf(schema)  # type: ignore[call-overload]
    def _repetition(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        for texts, langs in batches:
            rows = [repetition_signals(t, lg, cfg) for t, lg in zip(texts, langs)]
            yield pd.DataFrame(rows, columns=names, dtype="float64")

    return _repetition(text, lang)


def signals_column(text: Column, lang: Column, cfg: FilterConfig) -> Column:
    """struct of the n-gram repetition signals (with the quote offsets) and the character-class and line
    signals (:data:`~medcorpus.filters.textsignals.LINE_SIGNALS`), in one Arrow-batched pass: the text
    crosses to Python once. The line signals equal :func:`reference_score_documents`' Spark expressions
    (:mod:`medcorpus.filters.textsignals`), which cost a Java regex pass each."""
    rep_names = [*repetition_names(cfg), *QUOTE_SPAN_FIELDS]
    names = [*rep_names, *LINE_SIGNALS]
    schema = StructType([StructField(n, DoubleType(), n not in rep_names) for n in names])
    end_punct = END_PUNCT_LINE[1:-2]  # the class body of "[...]$"

    @F.pandas_udf(schema)  # type: ignore[call-overload]
    def _signals(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        for texts, langs in batches:
            tx, lg = texts.tolist(), langs.tolist()
            rep = [repetition_signals(t, g, cfg) for t, g in zip(tx, lg)]
            quotes = [(r["quote_start"], r["quote_end"]) for r in rep]
            lines = text_signals(tx, lg, quotes, cfg.min_dup_unit_chars, ORDINARY_PUNCT, end_punct)
            yield pd.DataFrame([{**r, **x} for r, x in zip(rep, lines)], columns=names, dtype="float64")

    return _signals(text, lang)


# ---------------------------------------------------------------------------------------------------
# lexicons
# ---------------------------------------------------------------------------------------------------
def lexicon_dirs(cfg: FilterConfig) -> list[Path]:
    out = []
    for d in cfg.lexicon_dirs:
        p = Path(d)
        out.append(p if p.is_absolute() else REPO_ROOT / p)
    return out


def read_terms(path: Path) -> list[str]:
    terms = []
    for line in path.read_text(encoding="utf-8").splitlines():
        term = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if term:
            terms.append(term)
    return terms


def merged_terms(cfg: FilterConfig, category: str) -> dict[str, list[str]]:
    """{lang: unique terms, longest first} of ``<category>.<lang>.txt`` over every lexicon folder (may be empty)."""
    found: dict[str, set[str]] = {"zh": set(), "en": set()}
    for folder in lexicon_dirs(cfg):
        for lang in found:
            path = folder / f"{category}.{lang}.txt"
            if path.exists():
                found[lang].update(read_terms(path))
    return {lang: sorted(terms, key=lambda t: (-len(t), t)) for lang, terms in found.items()}


def load_lexicon(cfg: FilterConfig, category: str) -> dict[str, list[str]]:
    """{lang: sorted unique terms} of one category, merged over every lexicon folder."""
    found = merged_terms(cfg, category)
    if not any(found.values()):
        raise FileNotFoundError(
            f"no lexicon files {category}.zh.txt / {category}.en.txt in {', '.join(map(str, lexicon_dirs(cfg)))}"
        )
    return found


def _quote(term: str) -> str:
    return r"\Q" + term.replace(r"\E", r"\E\\E\Q") + r"\E"


def lexicon_pattern(terms: dict[str, list[str]]) -> str:
    """One regex: Chinese terms as substrings, English ones case-insensitive between non-letters."""
    parts = []
    if terms.get("zh"):
        parts.append("(?:" + "|".join(_quote(t) for t in terms["zh"]) + ")")
    if terms.get("en"):
        en = "|".join(_quote(t) for t in terms["en"])
        parts.append(r"(?i:(?<![\p{L}\p{N}])(?:" + en + r")(?![\p{L}\p{N}]))")
    return "|".join(parts) if parts else "(?!)"


@lru_cache(maxsize=32)
def _cached_patterns(cfg: FilterConfig) -> tuple[tuple[str, str], ...]:
    return tuple((cat, lexicon_pattern(load_lexicon(cfg, cat))) for cat in cfg.lexicon_categories)


PROTECT_CATEGORY = "protect"


@lru_cache(maxsize=32)
def protected_pattern(cfg: FilterConfig) -> str | None:
    """One regex of the protected words (``protect.<lang>.txt`` in the lexicon folders), or None.

    Protected words are medical or ordinary words that contain a lexicon term (珍黄片 contains 黄片, 皮下注射
    contains 下注, 非线性服务 contains 性服务); they are blanked out before the terms are counted, so a term
    never matches inside one of them.
    """
    found = merged_terms(cfg, PROTECT_CATEGORY)
    return lexicon_pattern(found) if any(found.values()) else None


def lexicon_text(text: Column, cfg: FilterConfig) -> Column:
    """The text the lexicon terms are counted in: protected words replaced by U+0001 (lengths unchanged
    elsewhere, so per-1k densities still divide by the document's own length)."""
    pattern = protected_pattern(cfg)
    return text if pattern is None else F.regexp_replace(text, F.lit(pattern), "\u0001")


# ---------------------------------------------------------------------------------------------------
# scoring: DataFrame -> DataFrame (+ signals map)
# ---------------------------------------------------------------------------------------------------
def signal_names(cfg: FilterConfig) -> list[str]:
    names = [*LINE_SIGNALS, *repetition_names(cfg)]
    for cat in cfg.lexicon_categories:
        names += [f"{cat}_hits", f"{cat}_per_1k"]
    return names


def score_documents(df: DataFrame, cfg: FilterConfig) -> DataFrame:
    """Add ``signals`` (map<string,double>): every rule's measured value, computed once.

    Needs ``text`` and ``lang``. The repetition, character-class and line signals come from one Arrow
    pass (:func:`signals_column`), the lexicon hits from Spark regular expressions; the values are those
    of :func:`reference_score_documents`.
    """
    text, lang = F.col("text"), F.col("lang")
    staged = df.withColumn("_f_sig", signals_column(text, lang, cfg)).withColumn("_f_lex_text", lexicon_text(text, cfg))
    sig = {name: F.col("_f_sig")[name] for name in (*LINE_SIGNALS, *repetition_names(cfg))}
    return _with_signals_map(staged, sig, cfg).drop("_f_sig", "_f_lex_text")


def _with_signals_map(staged: DataFrame, sig: dict[str, Column], cfg: FilterConfig) -> DataFrame:
    """``staged`` (with ``_f_lex_text``) plus ``signals``: ``sig`` and the lexicon hits, rounded to 6 decimals.

    Each category's hits are a column of their own, used twice in the map (hits, per 1k): written inline
    there, the map cost about 7 s more on 2.5 M characters, as if each expression ran twice per row."""
    text = F.col("text")
    hit_cols = {f"_f_hits_{cat}": F.regexp_count(F.col("_f_lex_text"), F.lit(pattern))
                for cat, pattern in _cached_patterns(cfg)}
    staged = staged.withColumns(hit_cols)
    for cat in cfg.lexicon_categories:
        hits = F.col(f"_f_hits_{cat}")
        sig[f"{cat}_hits"] = hits
        sig[f"{cat}_per_1k"] = _ratio(hits * 1000, F.char_length(text))
    pairs: list[Column] = []
    for name in signal_names(cfg):
        pairs += [F.lit(name), F.round(sig[name].cast("double"), 6)]
    return staged.withColumn("signals", F.create_map(*pairs)).drop(*hit_cols)


def reference_score_documents(df: DataFrame, cfg: FilterConfig) -> DataFrame:
    """:func:`score_documents` as Spark expressions (a Java regex pass per character-class and line
    signal): the definition of the signals, which tests/test_filter_signals_fast.py holds the fast path to.

    Intermediate arrays (lines, paragraphs, tokens) are columns of their own so Spark computes each once
    per row.
    """
    text, lang = F.col("text"), F.col("lang")

    def long_unit(x: Column) -> Column:
        return F.char_length(F.trim(x)) >= cfg.min_dup_unit_chars

    staged = (
        df.withColumn("_f_lines", lines_of(text))
        .withColumn("_f_nonspace", nonspace_chars(text))
        .withColumn("_f_rep", repetition_column(text, lang, cfg))
        .withColumn("_f_lex_text", lexicon_text(text, cfg))
        # line/paragraph repetition leaves out the forgiven quote, as the n-gram signals do
        .withColumn("_f_rep_text", without_span(text, F.col("_f_rep.quote_start"), F.col("_f_rep.quote_end")))
        # repetition counts only lines/paragraphs long enough to carry content: speaker labels
        # ("医生:", "Patient:") and section markers ("<目录>第三卷") repeat in clean dialogues and books
        .withColumn("_f_long_lines", F.filter(lines_of(F.col("_f_rep_text")), long_unit))
        .withColumn("_f_paras", F.filter(paragraphs_of(F.col("_f_rep_text")), long_unit))
    )
    lines, paras, nonspace = F.col("_f_lines"), F.col("_f_paras"), F.col("_f_nonspace")
    n_lines = F.size(lines)
    sig: dict[str, Column] = {
        "length": doc_length(text, lang),
        "mojibake_ratio": _ratio(F.regexp_count(text, F.lit(MOJIBAKE)), nonspace),
        "special_char_ratio": _ratio(F.regexp_count(text, F.lit(SPECIAL_CHAR)), nonspace),
        "digit_ratio": _ratio(F.regexp_count(text, F.lit(r"\p{Nd}")), nonspace),
        "n_lines": n_lines,
        "mean_line_length": _ratio(_sum_lengths(lines, lambda x: line_length(x, lang)), n_lines),
        "end_punct_frac": _ratio(F.size(F.filter(lines, lambda x: F.trim(x).rlike(END_PUNCT_LINE))), n_lines),
        "n_dup_lines": F.size(F.col("_f_long_lines")),
        "dup_line_frac": repeated_share(F.col("_f_long_lines")),
        "dup_line_char_frac": repeated_char_share(F.col("_f_long_lines")),
        "n_paragraphs": F.size(paras),
        "dup_para_frac": repeated_share(paras),
    }
    for name in repetition_names(cfg):
        sig[name] = F.col("_f_rep")[name]
    return _with_signals_map(staged, sig, cfg).drop(
        "_f_lines", "_f_long_lines", "_f_paras", "_f_rep", "_f_rep_text", "_f_nonspace", "_f_lex_text")


# ---------------------------------------------------------------------------------------------------
# rules: thresholds applied to the signals
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A named rule: ``fails`` is true when the document goes; ``signal`` is the value reported."""

    name: str
    signal: str
    fails: Column
    threshold: Column


def _sig(name: str) -> Column:
    return F.col("signals")[name]


def _by_lang(en: object, zh: object) -> Column:
    return F.when(is_en(F.col("lang")), F.lit(en)).otherwise(F.lit(zh))


def _above(signal: str, limit: Column, *gates: Column) -> tuple[Column, Column]:
    fails = _sig(signal) > limit
    for g in gates:
        fails = fails & g
    return fails, F.concat(F.lit("> "), limit.cast("string"))


def _below(signal: str, limit: Column, *gates: Column) -> tuple[Column, Column]:
    fails = _sig(signal) < limit
    for g in gates:
        fails = fails & g
    return fails, F.concat(F.lit("< "), limit.cast("string"))


def rules(cfg: FilterConfig) -> list[Rule]:
    """Every rule in the order it is checked; the first failing one is the document's reason."""
    many_lines = _sig("n_lines") >= cfg.min_lines_for_line_rules
    dup_lines_gate = _sig("n_dup_lines") >= cfg.min_lines_for_dup_rules
    dup_paras_gate = _sig("n_paragraphs") >= cfg.min_lines_for_dup_rules
    ngram_gate = _sig("repetition_tokens") >= _by_lang(cfg.en_min_words_for_ngram_rules, cfg.zh_min_chars_for_ngram_rules)
    out: list[Rule] = []

    def add(name: str, signal: str, pair: tuple[Column, Column]) -> None:
        out.append(Rule(name, signal, F.coalesce(pair[0], F.lit(False)), pair[1]))

    add("too_short", "length", _below("length", _by_lang(cfg.en_min_words, cfg.zh_min_chars)))
    add("too_long", "length", _above("length", _by_lang(cfg.en_max_words, cfg.zh_max_chars)))
    add("mojibake", "mojibake_ratio", _above("mojibake_ratio", F.lit(cfg.max_mojibake_ratio)))
    add("special_chars", "special_char_ratio", _above("special_char_ratio", F.lit(cfg.max_special_char_ratio)))
    add("digits", "digit_ratio", _above("digit_ratio", F.lit(cfg.max_digit_ratio)))
    add("short_lines", "mean_line_length", _below(
        "mean_line_length", _by_lang(cfg.en_min_mean_line_words, cfg.zh_min_mean_line_chars), many_lines))
    # C4/FineWeb's end-punctuation rule targets lists of short lines (menus, keywords, titles)
    short_mean_line = _sig("mean_line_length") < _by_lang(
        cfg.en_max_mean_line_words_for_end_punct, cfg.zh_max_mean_line_chars_for_end_punct)
    add("no_end_punct", "end_punct_frac",
        _below("end_punct_frac", F.lit(cfg.min_end_punct_frac), many_lines, short_mean_line))
    add("dup_lines", "dup_line_frac", _above("dup_line_frac", F.lit(cfg.max_dup_line_frac), dup_lines_gate))
    add("dup_line_chars", "dup_line_char_frac",
        _above("dup_line_char_frac", F.lit(cfg.max_dup_line_char_frac), dup_lines_gate))
    add("dup_paragraphs", "dup_para_frac", _above("dup_para_frac", F.lit(cfg.max_dup_para_frac), dup_paras_gate))
    for n, en, zh in zip(cfg.top_ngram_sizes, cfg.en_max_top_ngram_frac, cfg.zh_max_top_ngram_frac):
        add(f"top_{n}gram", f"top_{n}gram_frac", _above(f"top_{n}gram_frac", _by_lang(en, zh), ngram_gate))
    for n, en, zh in zip(cfg.dup_ngram_sizes, cfg.en_max_dup_ngram_frac, cfg.zh_max_dup_ngram_frac):
        add(f"dup_{n}gram", f"dup_{n}gram_frac", _above(f"dup_{n}gram_frac", _by_lang(en, zh), ngram_gate))
    for cat, min_hits, min_per_1k in zip(cfg.lexicon_categories, cfg.lexicon_min_hits, cfg.lexicon_min_per_1k):
        # a lexicon rule fails when both the hits and their density reach the category's minimum
        fails = (_sig(f"{cat}_hits") >= min_hits) & (_sig(f"{cat}_per_1k") >= min_per_1k)
        add(cat, f"{cat}_per_1k", (fails, F.lit(f">= {min_hits} hits and >= {min_per_1k} per 1k chars")))
    return out


def rule_names(cfg: FilterConfig) -> list[str]:
    return [r.name for r in rules(cfg)]


def decide(scored: DataFrame, cfg: FilterConfig) -> DataFrame:
    """Add ``filter_rule`` (first failing rule, null when kept), ``filter_value`` and ``filter_threshold``."""
    first: Column = F.lit(None)
    for rule in reversed(rules(cfg)):
        hit = F.struct(F.lit(rule.name).alias("rule"), _sig(rule.signal).alias("value"), rule.threshold.alias("threshold"))
        first = F.when(rule.fails, hit).otherwise(first)
    return (
        scored.withColumn("_f_first", first)
        .withColumn("filter_rule", F.col("_f_first.rule"))
        .withColumn("filter_value", F.col("_f_first.value"))
        .withColumn("filter_threshold", F.col("_f_first.threshold"))
        .drop("_f_first")
    )


def explain_rules(scored: DataFrame, cfg: FilterConfig) -> DataFrame:
    """One row per rule for each scored document: rule, signal, value, threshold, fails."""
    rows = F.array(*[
        F.struct(
            F.lit(i + 1).alias("order"), F.lit(r.name).alias("rule"), F.lit(r.signal).alias("signal"),
            _sig(r.signal).alias("value"), r.threshold.alias("threshold"), r.fails.alias("fails"),
        )
        for i, r in enumerate(rules(cfg))
    ])
    return scored.select("doc_id", "lang", F.explode(rows).alias("r")).select("doc_id", "lang", "r.*")


# ---------------------------------------------------------------------------------------------------
# the stage's transforms
# ---------------------------------------------------------------------------------------------------
def filter_documents(docs: DataFrame, cfg: FilterConfig) -> DataFrame:
    """documents rows -> redacted ``text`` + ``pii_counts``, then ``signals`` and the decision.

    Signals are measured on the redacted text, the text that would be kept, so an ID number or a phone
    number does not count towards the digit ratio.
    """
    return decide(score_documents(redact_pii(docs, cfg), cfg), cfg)


def clean_rows(decided: DataFrame, norm: NormalizeConfig, run_id: str) -> DataFrame:
    """Kept documents as clean_documents rows: counts and hash follow the redacted text."""
    return (
        decided.filter(F.col("filter_rule").isNull())
        .withColumn("char_count", F.char_length("text").cast("long"))
        .withColumn("token_estimate", token_estimate(F.col("text"), norm))
        .withColumn("text_hash", F.sha2(F.col("text"), 256))
        .withColumn("filter_run_id", F.lit(run_id))
    )


def removed_rows(decided: DataFrame, run_id: str) -> DataFrame:
    """Removed documents as filtered_out rows (text kept, redacted, so removals can be audited)."""
    return (
        decided.filter(F.col("filter_rule").isNotNull())
        .select(
            "doc_id", "source", "source_file", "lang",
            F.col("filter_rule").alias("rule"), F.col("filter_value").alias("value"),
            F.col("filter_threshold").alias("threshold"), "signals", "pii_counts", "text",
            F.lit(run_id).alias("filter_run_id"), F.current_timestamp().alias("filtered_at"),
        )
    )


def summarize(decided: DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    """(rows per rule incl. 'kept', PII redactions per type) in two small aggregations."""
    per_rule = {
        (r["rule"] or "kept"): int(r["n"])
        for r in decided.groupBy(F.col("filter_rule").alias("rule")).agg(F.count(F.lit(1)).alias("n")).collect()
    }
    pii = {
        r["key"]: int(r["n"])
        for r in decided.select(F.explode("pii_counts")).groupBy("key").agg(F.sum("value").alias("n")).collect()
    }
    return per_rule, pii


def format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"



# ---------------------------------------------------------------------------------------------------
# stage runner (the only function here that touches tables)
# ---------------------------------------------------------------------------------------------------
def explain_document(ctx: RunContext, doc_id: str) -> str:
    """Every rule's value, threshold and verdict for one document of ``documents``, as a text table."""
    docs = ctx.warehouse.read("documents").filter(F.col("doc_id") == doc_id)
    cfg = ctx.config.filter
    redacted = redact_pii(docs, cfg).persist()
    try:
        head = redacted.select("lang", "pii_counts", F.substring("text", 1, 120).alias("start")).collect()
        if not head:
            raise InputError(f"doc_id {doc_id!r} is not in documents")
        rows = explain_rules(score_documents(redacted, cfg), cfg).orderBy("order").collect()
    finally:
        redacted.unpersist()
    first = next((r["rule"] for r in rows if r["fails"]), None)
    lines = [
        f"doc {doc_id} lang={head[0]['lang']} verdict={'removed by ' + first if first else 'kept'}",
        f"pii: {format_counts(dict(head[0]['pii_counts']))}",
        f"text: {head[0]['start']!r}",
        f"{'#':>3} {'rule':<16} {'signal':<20} {'value':>12}  {'threshold':<36} fails",
    ]
    for r in rows:
        value = "null" if r["value"] is None else f"{r['value']:.6g}"
        lines.append(f"{r['order']:>3} {r['rule']:<16} {r['signal']:<20} {value:>12}  {r['threshold']:<36} "
                     f"{'FAIL' if r['fails'] else 'ok'}")
    return "\n".join(lines)
