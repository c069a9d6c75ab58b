"""Hashed n-grams: 64-bit hashes of character and word n-grams, shared by MinHash dedup and decontamination.

A span of code points c_0..c_{k-1} hashes to splitmix64(sum_j c_j P^j) modulo 2**64 (a polynomial rolling
hash with an odd P, so P is invertible and a span hashes the same wherever it occurs). With prefix sums
H[i] = sum_{j<i} c_j P^j every span is (H[end] - H[start]) * P^-start: all the n-grams of a text in one
pass. A compiled loop (numba) and the numpy expression give the same bits; the loop makes no temporaries.

Callers choose the text form (what is lower-cased, stripped, NFKC'd) and salt word n-grams with their own
constant, so the same words never collide with a character n-gram of the same code points.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

import numpy as np

_POLY = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64
_POLY_INV = pow(_POLY, -1, 1 << 64)

#: A word: a run of letters and digits (no underscore).
WORD = re.compile(r"[^\W_]+")


@lru_cache(maxsize=8)
def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P**j and P**-j modulo 2**64 for j < n (uint64 arithmetic wraps, which is the modulus)."""
    with np.errstate(over="ignore"):
        pw = np.cumprod(np.full(n, _POLY, dtype=np.uint64), dtype=np.uint64)
        inv = np.cumprod(np.full(n, _POLY_INV, dtype=np.uint64), dtype=np.uint64)
    pw = np.concatenate([np.ones(1, np.uint64), pw[:-1]])
    inv = np.concatenate([np.ones(1, np.uint64), inv[:-1]])
    return pw, inv


def _grow(n: int) -> int:
    size = 1024
    while size < n:
        size *= 2
    return size


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the polynomial hash's bits evenly."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def codepoints(text: str) -> np.ndarray:
    """The text's code points as uint32."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def span_hashes_numpy(cps: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """:func:`span_hashes` in numpy expressions (the reference the compiled loop is tested against)."""
    n = len(cps)
    pw, inv = _powers(_grow(n + 1))
    with np.errstate(over="ignore"):
        prefix = np.empty(n + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(cps.astype(np.uint64) * pw[:n], dtype=np.uint64, out=prefix[1:])
        raw = (prefix[ends] - prefix[starts]) * inv[starts]
    return mix64(raw)


try:  # a compiled loop: same arithmetic, same bits, no temporaries
    from numba import njit

    # cache the compiled code beside the module, unless it is imported from a zip (spark-submit --py-files),
    # where numba has nowhere to put it and compiles once per Python worker instead
    @njit(cache=os.path.isfile(__file__), nogil=True)
    def _span_kernel(cps, starts, ends, pw, inv):  # type: ignore[no-untyped-def]
        n = cps.shape[0]
        prefix = np.empty(n + 1, dtype=np.uint64)
        acc = np.uint64(0)
        prefix[0] = acc
        for i in range(n):
            acc += np.uint64(cps[i]) * pw[i]
            prefix[i + 1] = acc
        out = np.empty(starts.shape[0], dtype=np.uint64)
        for i in range(starts.shape[0]):
            x = (prefix[ends[i]] - prefix[starts[i]]) * inv[starts[i]]
            x ^= x >> np.uint64(30)
            x *= np.uint64(0xBF58476D1CE4E5B9)
            x ^= x >> np.uint64(27)
            x *= np.uint64(0x94D049BB133111EB)
            out[i] = x ^ (x >> np.uint64(31))
        return out

except ImportError:  # pragma: no cover - numba is a dependency; the numpy path gives the same hashes
    _span_kernel = None  # type: ignore[assignment]


def span_hashes(cps: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hashes of the code point spans [start, end), all at once."""
    if _span_kernel is not None and len(cps):
        pw, inv = _powers(_grow(len(cps) + 1))
        return _span_kernel(np.ascontiguousarray(cps, dtype=np.uint32), np.ascontiguousarray(starts, dtype=np.int64),
                            np.ascontiguousarray(ends, dtype=np.int64), pw, inv)
    return span_hashes_numpy(cps, starts, ends)


def char_ngram_hashes(text: str, n: int) -> np.ndarray:
    """Hashes of the character n-grams of ``text`` as given; a text shorter than n is one n-gram (all of it),
    an empty one has none."""
    cps = codepoints(text)
    if len(cps) == 0:
        return np.empty(0, dtype=np.uint64)
    starts = np.arange(max(1, len(cps) - n + 1))
    return span_hashes(cps, starts, np.minimum(starts + n, len(cps)))


def word_ngram_hashes(words: list[str], n: int) -> np.ndarray:
    """Hashes of the n-grams of ``words`` (joined by one space, unsalted); fewer than n words are one n-gram
    (all of them), no words none."""
    if not words:
        return np.empty(0, dtype=np.uint64)
    joined = " ".join(words)
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    ends = starts + lengths
    k = max(1, len(words) - n + 1)
    last = np.minimum(np.arange(k) + n - 1, len(words) - 1)
    return span_hashes(codepoints(joined), starts[:k], ends[last])
