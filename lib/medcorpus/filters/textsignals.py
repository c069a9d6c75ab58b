"""The filter's character-class and line signals in Python, in the Arrow pass that already computes the
n-gram repetition signals (:func:`medcorpus.filters.rules.signals_column`): the same values as the Spark
expressions of :func:`medcorpus.filters.rules.reference_score_documents`, which cost a full Java regex
pass over the text each (about 1 M characters/s; 14 s of 25 s on 2.5 M characters of real text).

Character classes are one lookup table from code point to class bits, built once per Python worker from
``unicodedata`` and the Java regex class strings of :mod:`~medcorpus.filters.rules`; a batch of documents
is counted with numpy (code points via UTF-32, cumulative sums per document). Java regex semantics kept:

* ``\\s`` is ASCII whitespace only (``[ \\t\\n\\x0B\\f\\r]``), Spark's ``trim`` removes only U+0020;
* ``\\p{L}``, ``\\p{M}``, ``\\p{N}``, ``\\p{Nd}``, ``\\p{Co}`` follow the JVM's Unicode data (Java 17: Unicode 13),
  while Python 3.11 has Unicode 14: the code points Unicode 14 assigned (:data:`UNICODE_14_ADDED`) are
  unassigned (``Cn``) to Java, so they are unassigned here too (a test compares every code point with the
  JVM);
* ``$`` (without MULTILINE) also matches before one final line terminator (``\\r``, U+0085, U+2028,
  U+2029), which a line split on ``\\n`` can still end with;
* ``regexp_count`` counts leftmost, non-overlapping matches.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

#: Java regex ``\s`` (without UNICODE_CHARACTER_CLASS)
JAVA_SPACE = " \t\n\x0b\x0c\r"
#: Java's line terminators, which ``$`` may precede at the end of the input (``\n`` never ends a line here)
_FINAL_TERMINATORS = frozenset("\r\x85\u2028\u2029")
#: code points that Unicode 14.0 assigned as letters, marks or numbers (Python 3.11) and that are unassigned
#: (Cn) to Java 17 (Unicode 13.0): the difference of the two, measured on every code point
UNICODE_14_ADDED: tuple[tuple[int, int], ...] = (
    (0x0870, 0x0887), (0x0889, 0x088E), (0x0898, 0x089F), (0x08B5, 0x08B5), (0x08C8, 0x08D2), (0x0C3C, 0x0C3C),
    (0x0C5D, 0x0C5D), (0x0CDD, 0x0CDD), (0x170D, 0x170D), (0x1715, 0x1715), (0x171F, 0x171F), (0x180F, 0x180F),
    (0x1AC1, 0x1ACE), (0x1B4C, 0x1B4C), (0x1DFA, 0x1DFA), (0x2C2F, 0x2C2F), (0x2C5F, 0x2C5F), (0x9FFD, 0x9FFF),
    (0xA7C0, 0xA7C1), (0xA7D0, 0xA7D1), (0xA7D3, 0xA7D3), (0xA7D5, 0xA7D9), (0xA7F2, 0xA7F4),
    (0x10570, 0x1057A), (0x1057C, 0x1058A), (0x1058C, 0x10592), (0x10594, 0x10595), (0x10597, 0x105A1),
    (0x105A3, 0x105B1), (0x105B3, 0x105B9), (0x105BB, 0x105BC), (0x10780, 0x10785), (0x10787, 0x107B0),
    (0x107B2, 0x107BA), (0x10F70, 0x10F85), (0x11070, 0x11075), (0x110C2, 0x110C2), (0x11740, 0x11746),
    (0x11AB0, 0x11ABF), (0x12F90, 0x12FF0), (0x16A70, 0x16ABE), (0x16AC0, 0x16AC9), (0x1AFF0, 0x1AFF3),
    (0x1AFF5, 0x1AFFB), (0x1AFFD, 0x1AFFE), (0x1B11F, 0x1B122), (0x1CF00, 0x1CF2D), (0x1CF30, 0x1CF46),
    (0x1DF00, 0x1DF1E), (0x1E290, 0x1E2AE), (0x1E7E0, 0x1E7E6), (0x1E7E8, 0x1E7EB), (0x1E7ED, 0x1E7EE),
    (0x1E7F0, 0x1E7FE), (0x2A6DE, 0x2A6DF), (0x2B735, 0x2B738),
)

# class bits of the lookup table
SPACE, SPECIAL, DIGIT, MOJI_CHAR, LATIN_HIGH, LATIN_CONT, WORD, APOSTROPHE = (1 << i for i in range(8))
#: the multi-character alternatives of rules.MOJIBAKE that are literals; its other alternatives are
#: U+FFFD and private use (one character, MOJI_CHAR) and a character U+00C0-U+00FF followed by one
#: U+0080-U+00BF (LATIN_HIGH, LATIN_CONT). No alternative can start inside a match of another, so the
#: leftmost non-overlapping count of the alternation is the sum of their counts.
MOJIBAKE_LITERALS = ("锟斤拷", "烫烫烫", "屯屯屯", "â€")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\n\x0b\x0c\r]*\n")  # rules.paragraphs_of: split on \n\s*\n
_CHUNK = 1 << 20  # code points counted in one numpy pass


def java_class_chars(body: str) -> frozenset[str]:
    """The characters of a Java regex character class body (no brackets) made of literals, ``\\x{...}``,
    ``\\``-escaped punctuation and ``a-b`` ranges, as rules.ORDINARY_PUNCT and END_PUNCT_LINE are."""
    items: list[tuple[str, bool]] = []  # (character, is an unescaped "-")
    i = 0
    while i < len(body):
        m = re.match(r"\\x\{([0-9A-Fa-f]+)\}", body[i:])
        if m:
            items.append((chr(int(m.group(1), 16)), False))
            i += m.end()
        elif body[i] == "\\":
            if body[i + 1].isalnum():
                raise ValueError(f"unsupported escape {body[i:i + 2]!r} in a character class")
            items.append((body[i + 1], False))
            i += 2
        else:
            items.append((body[i], body[i] == "-"))
            i += 1
    chars: set[str] = set()
    k = 0
    while k < len(items):
        if k + 2 < len(items) and items[k + 1][1]:
            chars.update(chr(c) for c in range(ord(items[k][0]), ord(items[k + 2][0]) + 1))
            k += 3
        else:
            chars.add(items[k][0])
            k += 1
    return frozenset(chars)


def _java_category(cp: int) -> str:
    return unicodedata.category(chr(cp))


@lru_cache(maxsize=4)
def class_table(ordinary_punct: str) -> np.ndarray:
    """uint8 class bits of every code point; ``ordinary_punct``: the body of rules.ORDINARY_PUNCT."""
    table = np.zeros(sys.maxunicode + 1, dtype=np.uint8)
    unassigned = np.zeros(sys.maxunicode + 1, dtype=bool)
    for a, b in UNICODE_14_ADDED:
        unassigned[a : b + 1] = True
    # planes 4 to 13 hold no assigned character (Cn): special; planes 15 and 16 are private use (Co)
    cats = {cp: _java_category(cp) for cp in (*range(0x40000), *range(0xE0000, 0xF0000))}
    for cp, cat in cats.items():
        if unassigned[cp]:
            cat = "Cn"
        bits = 0
        if cat[0] in "LN":
            bits |= WORD
        if cat == "Nd":
            bits |= DIGIT
        if cat == "Co":
            bits |= MOJI_CHAR
        if cat[0] not in "LMN":
            bits |= SPECIAL
        table[cp] = bits
    table[0x40000:0xE0000] = SPECIAL
    table[0xF0000:] = SPECIAL | MOJI_CHAR
    for plane_end in (0xFFFFE, 0x10FFFE):
        table[plane_end : plane_end + 2] = SPECIAL
    for ch in JAVA_SPACE:
        table[ord(ch)] = (int(table[ord(ch)]) | SPACE) & ~SPECIAL & 0xFF
    for ch in java_class_chars(ordinary_punct):
        table[ord(ch)] = int(table[ord(ch)]) & ~SPECIAL & 0xFF
    table[0xFFFD] |= MOJI_CHAR
    table[0xC0:0x100] |= LATIN_HIGH
    table[0x80:0xC0] |= LATIN_CONT
    table[ord("'")] |= APOSTROPHE
    table[ord("’")] |= APOSTROPHE
    return table


def _counts(starts: np.ndarray, ends: np.ndarray, mask: np.ndarray) -> np.ndarray:
    cum = np.zeros(len(mask) + 1, dtype=np.int64)
    np.cumsum(mask, out=cum[1:])
    return cum[ends] - cum[starts]


def char_counts(texts: Sequence[str], table: np.ndarray) -> dict[str, np.ndarray]:
    """Per text: ``chars``, ``nonspace``, ``special``, ``digit``, ``mojibake`` and ``words`` (matches of
    rules.EN_WORD), as int64 arrays."""
    names = ("chars", "nonspace", "special", "digit", "mojibake", "words")
    out = {k: np.zeros(len(texts), dtype=np.int64) for k in names}
    i = 0
    while i < len(texts):
        j, size = i, 0
        while j < len(texts) and (j == i or size + len(texts[j]) < _CHUNK):
            size += len(texts[j]) + 1
            j += 1
        _count_chunk(texts[i:j], table, {k: v[i:j] for k, v in out.items()})
        i = j
    return out


def _count_chunk(texts: Sequence[str], table: np.ndarray, out: dict[str, np.ndarray]) -> None:
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
    ends = starts + lengths
    # NUL between texts: no class bit, so no match or word runs across two texts
    cps = np.frombuffer("\x00".join(texts).encode("utf-32-le"), dtype=np.uint32)
    bits = table[cps]
    out["chars"][:] = lengths
    out["nonspace"][:] = lengths - _counts(starts, ends, (bits & SPACE) != 0)
    out["special"][:] = _counts(starts, ends, (bits & SPECIAL) != 0)
    out["digit"][:] = _counts(starts, ends, (bits & DIGIT) != 0)
    pairs = np.zeros(len(bits), dtype=bool)
    pairs[:-1] = ((bits[:-1] & LATIN_HIGH) != 0) & ((bits[1:] & LATIN_CONT) != 0)
    literals = np.fromiter((sum(t.count(s) for s in MOJIBAKE_LITERALS) for t in texts), dtype=np.int64,
                           count=len(texts))
    out["mojibake"][:] = _counts(starts, ends, ((bits & MOJI_CHAR) != 0) | pairs) + literals
    # a match of [\p{L}\p{N}][\p{L}\p{N}'’]* per run of word and apostrophe characters holding a word
    # character: a word character starts one when the last non-apostrophe before it is no word character
    word = (bits & WORD) != 0
    not_apos = (bits & APOSTROPHE) == 0
    last = np.where(not_apos, np.arange(len(bits), dtype=np.int64), -1)
    np.maximum.accumulate(last, out=last)
    prev = np.full(len(bits), -1, dtype=np.int64)
    prev[1:] = last[:-1]
    first = word & ((prev < 0) | ~word[np.maximum(prev, 0)])
    out["words"][:] = _counts(starts, ends, first)


def _ends_like_a_sentence(line: str, end_punct: frozenset[str]) -> bool:
    """rules.END_PUNCT_LINE on ``trim(line)`` (only U+0020 trimmed; the line holds no ``\\n``)."""
    s = line.rstrip(" ")
    if not s:
        return False
    if s[-1] in end_punct:
        return True
    return s[-1] in _FINAL_TERMINATORS and len(s) > 1 and s[-2] in end_punct


def _long_units(units: list[str], min_chars: int) -> list[str]:
    out = []
    for u in units:
        k = len(u.strip(" "))
        if k > 0 and k >= min_chars:
            out.append(u)
    return out


def _repeated(units: list[str]) -> tuple[float, float]:
    """(rules.repeated_share, rules.repeated_char_share) of ``units``."""
    if not units:
        return 0.0, 0.0
    distinct = set(units)
    total = sum(map(len, units))
    share = float(len(units) - len(distinct)) / float(len(units))
    char_share = float(total - sum(map(len, distinct))) / float(total) if total > 0 else 0.0
    return share, char_share


def _ratio(num: int, den: int) -> float:
    return float(num) / float(den) if den > 0 else 0.0


LINE_SIGNALS = (
    "length", "mojibake_ratio", "special_char_ratio", "digit_ratio", "n_lines", "mean_line_length",
    "end_punct_frac", "n_dup_lines", "dup_line_frac", "dup_line_char_frac", "n_paragraphs", "dup_para_frac",
)


def text_signals(texts: Sequence[str | None], langs: Sequence[str | None], quotes: Sequence[tuple[float, float]],
                 min_unit_chars: int, ordinary_punct: str, end_punct: str) -> list[dict[str, float | None]]:
    """:data:`LINE_SIGNALS` of each text, as rules.reference_score_documents computes them.

    ``quotes``: (quote_start, quote_end) of each text from the repetition signals (-1 without a quote),
    left out of the duplicate line and paragraph signals; ``end_punct``: the body of the class of
    rules.END_PUNCT_LINE. A None text gets the reference's values for a null text.
    """
    table = class_table(ordinary_punct)
    punct = java_class_chars(end_punct)
    present = [t for t in texts if t is not None]
    counts = char_counts(present, table)
    rows: list[dict[str, float | None]] = []
    k = 0
    for text, lang, (q0, q1) in zip(texts, langs, quotes):
        if text is None:
            rows.append(dict(NULL_TEXT_SIGNALS))
            continue
        nonspace = int(counts["nonspace"][k])
        length = int(counts["words"][k]) if lang == "en" else nonspace
        lines = [line for line in text.split("\n") if line.strip(" ")]
        n_lines = len(lines)
        # a line's length (words, or non-space characters) sums to the text's: no word spans a \n, and
        # the lines left out hold only spaces
        row: dict[str, float | None] = {
            "length": float(length),
            "mojibake_ratio": _ratio(int(counts["mojibake"][k]), nonspace),
            "special_char_ratio": _ratio(int(counts["special"][k]), nonspace),
            "digit_ratio": _ratio(int(counts["digit"][k]), nonspace),
            "n_lines": float(n_lines),
            "mean_line_length": _ratio(length, n_lines),
            "end_punct_frac": _ratio(sum(1 for line in lines if _ends_like_a_sentence(line, punct)), n_lines),
        }
        k += 1
        start, end = int(q0), int(q1)
        rest = text[: max(start, 0)] + text[end:] if end > start else text
        long_lines = _long_units(rest.split("\n"), min_unit_chars)
        row["n_dup_lines"] = float(len(long_lines))
        row["dup_line_frac"], row["dup_line_char_frac"] = _repeated(long_lines)
        paras = _long_units(_PARAGRAPH_BREAK.split(rest), min_unit_chars)
        row["n_paragraphs"] = float(len(paras))
        row["dup_para_frac"] = _repeated(paras)[0]
        rows.append(row)
    return rows


#: what the reference's Spark expressions give for a null text (null length and sizes, ratios 0)
NULL_TEXT_SIGNALS: dict[str, float | None] = {
    "length": None, "mojibake_ratio": 0.0, "special_char_ratio": 0.0, "digit_ratio": 0.0, "n_lines": None,
    "mean_line_length": 0.0, "end_punct_frac": 0.0, "n_dup_lines": None, "dup_line_frac": 0.0,
    "dup_line_char_frac": 0.0, "n_paragraphs": None, "dup_para_frac": 0.0,
}
