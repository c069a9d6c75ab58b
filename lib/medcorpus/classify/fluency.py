"""A hashed character n-gram language model in numpy: the quality rater's fluency signal (CCNet-style).

CCNet ranks web text by the perplexity of a language model trained on a reference corpus (Wikipedia);
text that a model of edited prose finds improbable (garbled character order, OCR noise, mojibake, keyword
lists) scores low. Here the reference is edited medical and general prose from the labelled sources, and
the model is deliberately small enough to ship in the repo and broadcast:

* n-gram counts for orders 1..``order`` (3 by default) are hashed (splitmix64 of a polynomial code of the
  characters) into one table per order of ``2**bits`` buckets, each count stored log-quantised in a byte
  (``quantise``), so the artifact is a few MB whatever the training corpus;
* P(c | h) is a fixed-weight interpolation (Jelinek-Mercer) of count(h c) / count(h) over the orders plus a
  uniform floor, computed for every character of a batch of texts at once (texts are joined with a boundary
  character that also starts every context, so training and scoring see the same n-grams);
* the output per text is the mean log10 probability per character and the mean over its worst windows
  (local garbage such as an injected spam line or a mojibake span moves the tail, not the mean).

Everything is deterministic and vectorised; no Python loop runs per character.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOUNDARY = 0x2  # joins texts; never in normalized text
_MULT = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def codes_of(texts: Sequence[str], max_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """(code points of all texts joined, each preceded by BOUNDARY; start offset of each text's first char)."""
    heads = [t[:max_chars] for t in texts]
    joined = "".join(chr(BOUNDARY) + t for t in heads)
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    lengths = np.fromiter((len(t) + 1 for t in heads), dtype=np.int64, count=len(heads))
    starts = np.cumsum(lengths) - lengths + 1  # position of each text's first character
    return codes, starts


def gram_buckets(codes: np.ndarray, order: int, bits: int) -> list[np.ndarray]:
    """For n = 1..order: the bucket of the n-gram ending at each position (padded with BOUNDARY on the left)."""
    return [(_splitmix(_ngram_code(codes, n) + np.uint64(n)) >> np.uint64(64 - bits)).astype(np.int64)
            for n in range(1, order + 1)]


def _ngram_code(codes: np.ndarray, n: int) -> np.ndarray:
    """Polynomial code of the n-gram ending at each position (wrapping uint64 arithmetic)."""
    code = np.zeros_like(codes)
    for k in range(n - 1, -1, -1):
        part = np.full_like(codes, BOUNDARY)
        part[k:] = codes[: len(codes) - k]
        code = code * _MULT + part
    return code


_QSTEP = 8.0  # log-quantised counts: q = round(8 * log2(1 + count)), stored as uint8 (counts up to 2**31)


def quantise(counts: np.ndarray) -> np.ndarray:
    return np.minimum(np.round(_QSTEP * np.log2(1.0 + counts)), 255).astype(np.uint8)


def dequantise(q: np.ndarray) -> np.ndarray:
    return np.exp2(q.astype(np.float64) / _QSTEP) - 1.0


@dataclass
class CharLM:
    """Hashed interpolated character n-gram model; ``tables[n-1]`` holds log-quantised counts of n-grams."""

    order: int
    bits: int
    tables: np.ndarray  # (order, 2**bits) uint8, see quantise()
    weights: np.ndarray  # (order + 1,) interpolation weights: uniform floor, then orders 1..order
    vocab: float  # size of the uniform floor's alphabet
    total: float  # number of training characters
    window: int = 24
    tail_frac: float = 0.2

    @classmethod
    def train(cls, texts: Sequence[str], order: int = 3, bits: int = 20, max_chars: int = 3000,
              weights: Sequence[float] = (0.02, 0.1, 0.3, 0.58)) -> CharLM:
        """Counts of every n-gram of the texts (each text starts and ends with BOUNDARY, so the model also
        learns how texts end)."""
        codes, _ = codes_of(list(texts) + [""], max_chars)
        size = 1 << bits
        tables = np.stack([quantise(np.bincount(b, minlength=size)[:size].astype(np.float64))
                           for b in gram_buckets(codes, order, bits)])
        vocab = float(max(len(np.unique(codes)), 2))
        return cls(order, bits, tables, np.asarray(weights, dtype=np.float64), vocab, float(len(codes)))

    def char_logprobs(self, codes: np.ndarray) -> np.ndarray:
        """log10 P(c_i | c_{i-order+1..i-1}) for every position of ``codes``."""
        buckets = gram_buckets(codes, self.order, self.bits)
        counts = [dequantise(self.tables[n][buckets[n]]) for n in range(self.order)]
        p = np.full(len(codes), self.weights[0] / self.vocab)
        p += self.weights[1] * counts[0] / max(self.total, 1.0)
        for n in range(1, self.order):
            ctx = np.zeros_like(counts[n - 1])
            ctx[1:] = counts[n - 1][:-1]  # count of the context: the n-gram ending one character earlier
            safe = np.where(ctx > 0, ctx, 1.0)
            p += self.weights[n + 1] * np.where(ctx > 0, np.minimum(counts[n] / safe, 1.0), 0.0)
        return np.log10(p)

    def end_logprobs(self, texts: Sequence[str], tail_chars: int = 8) -> np.ndarray:
        """log10 P(end of text | its last characters): low for a text cut mid-sentence."""
        if not texts:
            return np.zeros(0)
        codes, starts = codes_of([t.rstrip()[-tail_chars:] for t in texts] + [""], tail_chars)
        lp = self.char_logprobs(codes)
        return lp[starts[1:] - 1]  # the BOUNDARY that follows each tail

    def word_end_logprobs(self, texts: Sequence[str], tail_chars: int = 8) -> np.ndarray:
        """log10 P(a space | the text's last characters, its final punctuation set aside): is the last word
        complete? Low for English cut in the middle of a word ("treatm")."""
        if not texts:
            return np.zeros(0)
        tails = [t.rstrip().rstrip(".,;:!?\"')]}…。！？；：”’）】」』》")[-tail_chars:] + " " for t in texts]
        codes, starts = codes_of(tails + [""], tail_chars + 1)
        lp = self.char_logprobs(codes)
        return lp[starts[1:] - 2]  # the space after each tail

    def newline_logprobs(self, tails: Sequence[str], tail_chars: int = 8) -> np.ndarray:
        """log10 P(a line break | each tail's last characters): how much a line ending there looks like the end
        of a line (a complete sentence, a list item, a heading) rather than a cut."""
        if not tails:
            return np.zeros(0)
        heads = [t.rstrip()[-tail_chars:] + "\n" for t in tails]
        codes, starts = codes_of(heads + [""], tail_chars + 1)
        lp = self.char_logprobs(codes)
        ends = starts[:-1] + np.fromiter((len(h) - 1 for h in heads), dtype=np.int64, count=len(heads))
        return lp[ends]

    def score(self, texts: Sequence[str], max_chars: int = 3000) -> tuple[np.ndarray, np.ndarray]:
        """(mean log10 P per character, mean over the worst ``tail_frac`` of windows) per text; 0 for empty."""
        n = len(texts)
        if n == 0:
            return np.zeros(0), np.zeros(0)
        codes, starts = codes_of(texts, max_chars)
        lp = self.char_logprobs(codes)
        lengths = np.fromiter((min(len(t), max_chars) for t in texts), dtype=np.int64, count=n)
        mean = np.zeros(n)
        tail = np.zeros(n)
        csum = np.concatenate([[0.0], np.cumsum(lp)])
        for i in range(n):
            s, k = int(starts[i]), int(lengths[i])
            if k == 0:
                continue
            mean[i] = (csum[s + k] - csum[s]) / k
            w = min(self.window, k)
            win = (csum[s + w: s + k + 1] - csum[s: s + k - w + 1]) / w
            m = max(1, int(np.ceil(len(win) * self.tail_frac)))
            tail[i] = float(np.partition(win, m - 1)[:m].mean()) if len(win) > m else float(win.min())
        return mean, tail

    def arrays(self) -> dict[str, np.ndarray]:
        return {"lm_tables": self.tables, "lm_weights": self.weights,
                "lm_shape": np.array([self.order, self.bits, self.window], dtype=np.int64),
                "lm_scalars": np.array([self.vocab, self.total, self.tail_frac], dtype=np.float64)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> CharLM:
        order, bits, window = (int(v) for v in a["lm_shape"])
        vocab, total, tail_frac = (float(v) for v in a["lm_scalars"])
        return cls(order, bits, a["lm_tables"], a["lm_weights"], vocab, total, window, tail_frac)
