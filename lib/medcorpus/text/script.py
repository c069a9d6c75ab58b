"""What counts as a Han character: one definition for Python (``re``) and Spark (Java regex).

Han here means the CJK ideographs of the Basic Multilingual Plane: Extension A (U+3400-4DBF), the Unified
Ideographs (U+4E00-9FFF) and the Compatibility Ideographs (U+F900-FAFF). This is the set the versioned
text-model features (:mod:`medcorpus.classify.textmodel`, ``FEATURE_VERSION``), the quality rater, MinHash
shingling and decontamination were built on; widening it changes those features, so it needs a new
feature version and retrained models. Not counted: the supplementary-plane extensions (rare ideographs of
classical texts), radicals, 〇 and 々.

Language guessing, token estimates, shingling, the text models' features and the labelled-data
builders all read the script from here.
"""

from __future__ import annotations

import re

from pyspark.sql import Column
from pyspark.sql import functions as F

#: Inclusive code-point ranges of the Han ideographs.
HAN_RANGES: tuple[tuple[int, int], ...] = (
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
)

#: The body of a character class (``[...]``) for Python's ``re``.
HAN_CLASS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in HAN_RANGES)
#: The same class for Spark's (Java) regular expressions.
HAN_CLASS_JAVA = "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in HAN_RANGES)

HAN = re.compile(f"[{HAN_CLASS}]")
HAN_RUN = re.compile(f"[{HAN_CLASS}]+")
NOT_HAN_RUN = re.compile(f"[^{HAN_CLASS}]+")

#: How much of a text's head :func:`mostly_han` reads.
HEAD_CHARS = 400


def is_han_char(c: str) -> bool:
    o = ord(c)
    return any(lo <= o <= hi for lo, hi in HAN_RANGES)


def han_share(text: str) -> float:
    """Share of Han characters in ``text`` (0 for an empty string)."""
    return len(HAN.findall(text)) / len(text) if text else 0.0


def mostly_han(text: str, head: int = HEAD_CHARS) -> bool:
    """More than a third of the first ``head`` characters are Han (the builders' and rater's script test)."""
    sample = text[:head]
    return len(HAN.findall(sample)) > len(sample) / 3


def han_count(text: Column) -> Column:
    """Spark: the number of Han characters in ``text``."""
    return F.char_length(F.regexp_replace(text, f"[^{HAN_CLASS_JAVA}]", ""))
