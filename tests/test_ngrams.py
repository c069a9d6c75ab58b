"""Hashed n-grams shared by dedup and decontamination: pinned bits, position independence, the short cases."""

from __future__ import annotations

import numpy as np

from medcorpus.dedup import decontaminate, minhash
from medcorpus.text import ngrams


def _hex(a: np.ndarray) -> list[str]:
    return [hex(int(x)) for x in a]


def test_hashes_are_pinned():
    # The values dedup signatures and the benchmark index were built with (before the module moved here):
    # a change means every stored signature and n-gram index is stale.
    assert _hex(ngrams.char_ngram_hashes("高血压ab", 3)) == ["0x101afa8c75491cb7", "0xf7242f2f2aee25ba",
                                                             "0xf338ae65122346c"]
    assert _hex(ngrams.word_ngram_hashes(["the", "quick", "fox"], 2)) == ["0xca6b835568636984", "0x8aa9230fc67c47ce"]
    assert _hex(minhash.word_shingles("The quick fox", 2)) == ["0x91ba6ac033b28011", "0xd178ca9a9dadae5b"]
    assert _hex(decontaminate.word_ngrams("The quick fox", 2)) == ["0xef2e77c4270fb499", "0xafecd79e89109ad3"]


def test_a_span_hashes_the_same_wherever_it_occurs():
    a = ngrams.char_ngram_hashes("xx肝功能yy", 3)
    b = ngrams.char_ngram_hashes("肝功能", 3)
    assert b[0] in a
    assert ngrams.word_ngram_hashes(["liver", "function"], 2)[0] in ngrams.word_ngram_hashes(
        ["abnormal", "liver", "function", "tests"], 2)


def test_short_and_empty_inputs():
    assert len(ngrams.char_ngram_hashes("", 3)) == 0
    assert len(ngrams.word_ngram_hashes([], 3)) == 0
    assert np.array_equal(ngrams.char_ngram_hashes("ab", 5), ngrams.char_ngram_hashes("ab", 2))  # one: the whole
    assert len(decontaminate.char_ngrams("ab", 5)) == 0
    assert np.array_equal(decontaminate.char_ngrams("ab", 5, whole_if_shorter=True), ngrams.char_ngram_hashes("ab", 2))
    assert len(decontaminate.word_ngrams("one two", 3)) == 0
    assert len(decontaminate.word_ngrams("one two", 3, whole_if_shorter=True)) == 1


def test_compiled_and_numpy_paths_agree():
    cps = ngrams.codepoints("Aspirin 阿司匹林 100mg\U00020000")
    starts = np.arange(len(cps) - 2)
    assert np.array_equal(ngrams.span_hashes(cps, starts, starts + 3), ngrams.span_hashes_numpy(cps, starts, starts + 3))
