"""Deduplication: exact (normalised-text hash) and near-duplicate (MinHash LSH), clustered distributedly.

Pipeline of pure DataFrame transforms, called by the dedup stage (:mod:`medcorpus.stages.dedup`):

1. ``norm_hash``: sha256 of the text lower-cased with whitespace and punctuation removed.
2. ``exact_groups``: one representative per normalised hash (best by the keeper order).
3. ``with_signatures``: MinHash signatures in one ``mapInArrow`` pass that carries the other columns
   through (no join back). Shingles are character n-grams for Chinese (a whitespace split would turn a
   Chinese paragraph into one token) and word n-grams otherwise, hashed with a 64-bit polynomial rolling
   hash (:mod:`medcorpus.text.ngrams`), then ``num_perm`` multiply-shift permutations seeded by ``seed``, both in
   compiled loops (numba; the numpy fallbacks give the same bits): the same text gives the same signature on every run and every
   machine.
4. ``triaged_pairs``: the same Arrow pass also computes each band's bucket key (a splitmix64 chain over the
   band's positions), its sort key and a 4-bit (b-bit MinHash) triage sketch. Band rows are exploded,
   shuffled once by bucket and sorted; one Arrow pass walks each bucket, generates its pairs and scores
   them with numpy, keeping only estimates >= threshold - verify_margin. Buckets over ``max_bucket_size``
   (boilerplate) are compared by sorted neighbourhood (members ordered by signature positions outside the
   band, each paired with its next neighbours: linear edges), and reported (:func:`giant_buckets`).
5. ``verified_edges``: estimates >= threshold + verify_margin are accepted; the uncertain ones are decided
   by the exact Jaccard of their shingle sets (computed once per document; sorted sets merged in a compiled
   loop), or by the whole signatures with verify=signature. Band collisions never link documents.
6. Clustering (``clustering``):
   - ``greedy`` (default): in keeper order (previously released first, then highest quality score,
     longest, smallest doc_id) a document is removed when a verified pair links it to a better document
     that is kept, and joins that keeper's cluster. Distributed synchronous rounds over the edge list
     (:func:`greedy_round`), checkpointed; every removed document is a verified near duplicate of its keeper.
   - ``components``: alternating large-star / small-star connected components (Kiveris et al. 2014,
     :func:`connected_components`), the best document of a component keeps, and members whose estimated
     Jaccard to it is below the threshold are re-clustered among themselves for up to ``max_split_rounds``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, LongType, StringType, StructField, StructType

from medcorpus.core.config import DedupConfig
from medcorpus.text.ngrams import WORD, char_ngram_hashes, mix64, word_ngram_hashes
from medcorpus.text.script import HAN as _HAN

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------
# shingles and MinHash (pure numpy; unit-tested directly and reused by the benchmark's brute force)
# ---------------------------------------------------------------------------------------------------
_WORD_SALT = np.uint64(0x5BD1E9955BD1E995)
_SPACE = re.compile(r"\s+")


def uses_char_shingles(text: str, lang: str | None, zh_min_han_ratio: float) -> bool:
    if lang == "zh":
        return True
    if lang == "en":
        return False
    compact = _SPACE.sub("", text[:5000])
    return bool(compact) and len(_HAN.findall(compact)) / len(compact) >= zh_min_han_ratio


def char_shingles(text: str, n: int) -> np.ndarray:
    """Hashes of the character n-grams of the lower-cased text with whitespace removed."""
    return char_ngram_hashes(_SPACE.sub("", text.lower()), n)


def word_shingles(text: str, n: int) -> np.ndarray:
    """Hashes of the word n-grams (words = runs of letters/digits, lower-cased, joined by one space)."""
    words = WORD.findall(text.lower())
    if not words:
        return np.empty(0, dtype=np.uint64)
    return word_ngram_hashes(words, n) ^ _WORD_SALT


def shingles(text: str | None, lang: str | None, cfg: DedupConfig) -> np.ndarray:
    """The shingle hashes that MinHash summarises (and the brute-force ground truth compares)."""
    if not text:
        return np.empty(0, dtype=np.uint64)
    if uses_char_shingles(text, lang, cfg.zh_min_han_ratio):
        return char_shingles(text, cfg.zh_shingle_chars)
    return word_shingles(text, cfg.en_shingle_words)


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multiply-shift hash family h_i(x) = ((a_i x + b_i) mod 2**64) >> 32 with odd a_i: deterministic."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


_CHUNK = 2048


def _minhash_numpy(shingle_hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sig = np.full(len(a), np.iinfo(np.uint64).max, dtype=np.uint64)
    hashes = np.unique(shingle_hashes)
    with np.errstate(over="ignore"):
        for i in range(0, len(hashes), _CHUNK):
            block = hashes[i : i + _CHUNK, None]
            np.minimum(sig, ((block * a + b) >> np.uint64(32)).min(axis=0), out=sig)
    return sig


try:  # a compiled loop: no (shingles x num_perm) temporaries, no sort; same arithmetic, same bits
    from numba import njit

    # cache the compiled code beside the module, unless it is imported from a zip (spark-submit --py-files),
    # where numba has nowhere to put it and compiles once per Python worker instead
    @njit(cache=os.path.isfile(__file__), nogil=True)
    def _minhash_kernel(hashes, a, b):  # type: ignore[no-untyped-def]
        """(a_j x + b_j) >> 32 is below 2**32, so a uint32 accumulator keeps the same bits; with ``min`` and
        no branch the inner loop vectorises (about 2.3x faster than a uint64 accumulator with an ``if``)."""
        sig = np.full(a.shape[0], np.uint32(0xFFFFFFFF))
        shift = np.uint64(32)
        for i in range(hashes.shape[0]):
            x = hashes[i]
            for j in range(a.shape[0]):
                sig[j] = min(sig[j], np.uint32((a[j] * x + b[j]) >> shift))
        return sig

except ImportError:  # pragma: no cover - numba is a dependency; the numpy path gives the same signatures
    _minhash_kernel = None  # type: ignore[assignment]


def _intersection_sizes_numpy(xv, xo, yv, yo):  # type: ignore[no-untyped-def]
    return np.array([len(np.intersect1d(xv[xo[i]:xo[i + 1]], yv[yo[i]:yo[i + 1]], assume_unique=True))
                     for i in range(len(xo) - 1)], dtype=np.int64)


if _minhash_kernel is not None:
    @njit(cache=os.path.isfile(__file__), nogil=True)
    def _intersection_kernel(xv, xo, yv, yo):  # type: ignore[no-untyped-def]
        """Row i: size of the intersection of two sorted, distinct runs xv[xo[i]:xo[i+1]], yv[yo[i]:yo[i+1]]."""
        out = np.zeros(xo.shape[0] - 1, dtype=np.int64)
        for i in range(out.shape[0]):
            p, pe, q, qe = xo[i], xo[i + 1], yo[i], yo[i + 1]
            n = 0
            while p < pe and q < qe:
                if xv[p] == yv[q]:
                    n += 1
                    p += 1
                    q += 1
                elif xv[p] < yv[q]:
                    p += 1
                else:
                    q += 1
            out[i] = n
        return out
else:  # pragma: no cover
    _intersection_kernel = None


def intersection_sizes(xv: np.ndarray, xo: np.ndarray, yv: np.ndarray, yo: np.ndarray) -> np.ndarray:
    """Sizes of the row-wise intersections of two ragged arrays of sorted distinct uint32 runs (values,
    offsets): a merge in a compiled loop (numba), or numpy's intersect1d row by row."""
    if _intersection_kernel is not None:
        return _intersection_kernel(xv, xo, yv, yo)
    return _intersection_sizes_numpy(xv, xo, yv, yo)


def minhash(shingle_hashes: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signature (uint32[num_perm]); an empty set gives all 0xFFFFFFFF."""
    a, b = permutations(num_perm, seed)
    if _minhash_kernel is not None:
        return _minhash_kernel(np.ascontiguousarray(shingle_hashes, dtype=np.uint64), a, b)
    return np.minimum(_minhash_numpy(shingle_hashes, a, b), np.uint64(0xFFFFFFFF)).astype(np.uint32)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    return float(np.mean(sig_a == sig_b))


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = np.unique(a), np.unique(b)
    if len(sa) == 0 and len(sb) == 0:
        return 1.0
    inter = len(np.intersect1d(sa, sb, assume_unique=True))
    return inter / (len(sa) + len(sb) - inter)


def band_hashes(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """int64[n, bands]: one bucket key per band, a splitmix64 chain over the band's ``rows`` positions."""
    out = np.empty((sigs.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            h = np.full(sigs.shape[0], np.uint64(band + 1) * np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
            for r in range(rows):
                h = mix64(h ^ sigs[:, band * rows + r].astype(np.uint64))
            out[:, band] = h
    return out.view(np.int64)


def band_orders(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """int64[n, bands]: two signature positions outside each band, as one sort key. Two documents agree on a
    position with probability = their Jaccard, so sorting a bucket by it puts alike documents side by side."""
    num_perm = sigs.shape[1]
    out = np.empty((sigs.shape[0], bands), dtype=np.uint64)
    for band in range(bands):
        p1, p2 = (band * rows + rows) % num_perm, (band * rows + rows + 1) % num_perm
        out[:, band] = (sigs[:, p1].astype(np.uint64) << np.uint64(32)) | sigs[:, p2].astype(np.uint64)
    return out.view(np.int64)


SKETCH_BITS = 4  # per signature position in the triage sketch
_PER_WORD = 64 // SKETCH_BITS
_NIBBLE_LOW = 0x1111111111111111  # the lowest bit of every 4-bit group


def packed_sketches(sigs: np.ndarray) -> np.ndarray:
    """int64[n, ceil(num_perm / 16)]: the lowest 4 bits of every signature position, 16 to a long: 128 bytes
    for 256 positions (b-bit MinHash, Li & Koenig 2010). Missing positions of the last long are 0 in every
    sketch, so they never differ."""
    n, num_perm = sigs.shape
    words = -(-num_perm // _PER_WORD)
    nib = np.zeros((n, words * _PER_WORD), dtype=np.uint64)
    nib[:, :num_perm] = sigs & np.uint32(15)
    shifts = (np.arange(_PER_WORD, dtype=np.uint64) * np.uint64(SKETCH_BITS))[None, None, :]
    packed = np.bitwise_or.reduce(nib.reshape(n, words, _PER_WORD) << shifts, axis=2)
    return packed.view(np.int64)


def lsh_midpoint(bands: int, rows: int) -> float:
    """Similarity at which the LSH S-curve 1 - (1 - s^rows)^bands crosses roughly one half."""
    return (1.0 / bands) ** (1.0 / rows)


def candidate_probability(s: float, bands: int, rows: int) -> float:
    return 1.0 - (1.0 - s**rows) ** bands


def check_banding(cfg: DedupConfig) -> None:
    """Fail fast on a banding that cannot work or centres its curve above the threshold (recall loss)."""
    from medcorpus.core.errors import ConfigError

    if cfg.bands * cfg.rows > cfg.num_perm:
        raise ConfigError(f"dedup.bands x dedup.rows = {cfg.bands * cfg.rows} exceeds dedup.num_perm = {cfg.num_perm}")
    mid = lsh_midpoint(cfg.bands, cfg.rows)
    if mid >= cfg.threshold:
        raise ConfigError(
            f"dedup banding {cfg.bands}x{cfg.rows} centres its S-curve at {mid:.3f} >= threshold {cfg.threshold}: "
            "pairs just above the threshold would be missed; use more bands or fewer rows"
        )


# ---------------------------------------------------------------------------------------------------
# Spark transforms
# ---------------------------------------------------------------------------------------------------
SIGNATURE_SCHEMA = StructType(
    [
        StructField("doc_id", StringType(), False),
        StructField("signature", ArrayType(IntegerType(), False), False),
        StructField("shingle_count", LongType(), False),
    ]
)


def signature_params(cfg: DedupConfig) -> str:
    """Identifies signatures that can be compared: stored ones with other params are recomputed."""
    return (
        f"minhash-v2:perm={cfg.num_perm}:seed={cfg.seed}:zh={cfg.zh_shingle_chars}c:"
        f"en={cfg.en_shingle_words}w:han={cfg.zh_min_han_ratio}:lsh={cfg.bands}x{cfg.rows}"
    )


#: what dedup_signatures stores of a document: its LSH band keys, band sort keys and triage sketch (640
#: bytes with 256 permutations in 32 bands), not the signature (1,024 bytes): an incremental run finds and
#: triages its candidate pairs with these alone. The whole signature is needed only by verify=signature
#: and clustering=components; those recompute it from the kept text of the previous documents.
STORED_COLUMNS = ("doc_id", "norm_hash", "shingle_count", "char_count", "quality_score",
                  "lsh_buckets", "lsh_orders", "sketch")


def needs_signatures(cfg: DedupConfig) -> bool:
    """Whether pairs or clusters are scored on whole signatures (else the LSH columns are all it uses)."""
    return cfg.verify == "signature" or cfg.clustering == "components"


_SIGNATURE_FIELD = pa.field("signature", pa.list_(pa.field("element", pa.int32(), False)), False)
_COUNT_FIELD = pa.field("shingle_count", pa.int64(), False)


def _signature_batches(
    batches: Iterable[pa.RecordBatch], cfg: DedupConfig, passthrough: list[str], lsh: bool = False
) -> Iterator[pa.RecordBatch]:
    """Arrow batches of (passthrough..., text, lang) -> (passthrough..., signature, shingle_count[, lsh_buckets,
    lsh_orders, sketch])."""
    for batch in batches:
        texts = batch.column("text").to_pylist()
        langs = batch.column("lang").to_pylist()
        sigs = np.empty((len(texts), cfg.num_perm), dtype=np.uint32)
        counts = np.empty(len(texts), dtype=np.int64)
        for i, (text, lang) in enumerate(zip(texts, langs)):
            sh = shingles(text, lang, cfg)
            counts[i] = len(sh)
            sigs[i] = minhash(sh, cfg.num_perm, cfg.seed)
        values = pa.array(sigs.view(np.int32).reshape(-1), type=pa.int32())
        offsets = pa.array(np.arange(0, (len(texts) + 1) * cfg.num_perm, cfg.num_perm, dtype=np.int32))
        fields = [batch.schema.field(name) for name in passthrough] + [_SIGNATURE_FIELD, _COUNT_FIELD]
        columns = [batch.column(name) for name in passthrough] + [
            pa.ListArray.from_arrays(offsets, values), pa.array(counts, type=pa.int64())
        ]
        if lsh:
            fields += _LSH_FIELDS
            columns += [_long_lists(m) for m in lsh_matrices(sigs, cfg)]
        yield pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def with_signatures(docs: DataFrame, cfg: DedupConfig, keep_text: bool = False, lsh: bool = False) -> DataFrame:
    """(doc_id, text, lang, ...) -> the same rows plus ``signature array<int>`` and ``shingle_count``, and with
    ``lsh`` the columns of :func:`with_lsh_columns` too (one Python round trip instead of two).

    One ``mapInArrow`` pass carries the other columns through, so no join back to the documents (a join
    would shuffle every text once more). ``text`` is dropped unless ``keep_text``: the signatures are what
    the later shuffles move.
    """
    if "lang" not in docs.columns:
        docs = docs.withColumn("lang", F.lit(None).cast("string"))
    passthrough = [f for f in docs.schema.fields if keep_text or f.name != "text"]
    schema = StructType(passthrough + list(SIGNATURE_SCHEMA.fields[1:]) + (LSH_SCHEMA.fields if lsh else []))
    names = [f.name for f in passthrough]
    return docs.mapInArrow(lambda it: _signature_batches(it, cfg, names, lsh), schema)


def _long_lists(matrix: np.ndarray) -> pa.ListArray:
    n, k = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix).reshape(-1), type=pa.int64()))


_LSH_FIELDS = [pa.field(name, pa.list_(pa.field("element", pa.int64(), False)), False)
               for name in ("lsh_buckets", "lsh_orders", "sketch")]


LSH_SCHEMA = StructType([
    StructField("lsh_buckets", ArrayType(LongType(), False), False),
    StructField("lsh_orders", ArrayType(LongType(), False), False),
    StructField("sketch", ArrayType(LongType(), False), False),
])


def lsh_matrices(sigs: np.ndarray, cfg: DedupConfig) -> list[np.ndarray]:
    """Band bucket keys, band sort keys and packed triage sketches of uint32[n, num_perm] signatures."""
    return [band_hashes(sigs, cfg.bands, cfg.rows), band_orders(sigs, cfg.bands, cfg.rows), packed_sketches(sigs)]


def _lsh_batches(batches: Iterable[pa.RecordBatch], cfg: DedupConfig, passthrough: list[str]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        sigs = _fixed_width_rows(batch.column("signature"), cfg.num_perm, "signature").view(np.uint32)
        yield pa.RecordBatch.from_arrays(
            [batch.column(name) for name in passthrough] + [_long_lists(m) for m in lsh_matrices(sigs, cfg)],
            schema=pa.schema([batch.schema.field(name) for name in passthrough] + _LSH_FIELDS),
        )


def with_lsh_columns(sigs: DataFrame, cfg: DedupConfig) -> DataFrame:
    """(doc_id, signature, ...) -> the same rows plus ``lsh_buckets`` (one bucket key per band),
    ``lsh_orders`` (the sort key of each band's bucket members, see :func:`band_orders`) and ``sketch``
    (the 4-bit triage sketch, see :func:`packed_sketches`), computed with numpy in one Arrow pass: the same
    work as Spark expressions over 256-element arrays was the slowest step after MinHash itself. Used for
    stored signatures; new documents get these columns in the signature pass."""
    names = sigs.columns
    schema = StructType(list(sigs.schema.fields) + list(LSH_SCHEMA.fields))
    return sigs.mapInArrow(lambda it: _lsh_batches(it, cfg, names), schema)


def norm_hash(text: Column) -> Column:
    """Exact-duplicate key: sha256 of the lower-cased text without whitespace and punctuation."""
    return F.sha2(F.regexp_replace(F.lower(text), r"[\s\p{P}\p{S}]+", ""), 256)


def priority(is_new: Column, quality: Column, length: Column, doc_id: Column) -> Column:
    """Sort key, smallest = best keeper: released before new, highest quality, longest, smallest doc_id."""
    return F.struct(
        is_new.cast("int").alias("p_new"),
        F.coalesce(-quality.cast("double"), F.lit(float("inf"))).alias("p_quality"),
        (-length.cast("long")).alias("p_length"),
        doc_id.alias("p_doc_id"),
    )


def exact_groups(nodes: DataFrame) -> DataFrame:
    """nodes(doc_id, norm_hash, prio, ...) -> the same rows plus ``rep_id``: the best document with the
    same normalised hash. A window over the hash: one shuffle, and the rows are not joined back."""
    best = F.min("prio").over(Window.partitionBy("norm_hash"))
    return nodes.withColumn("rep_id", best["p_doc_id"])


def band_keys(sigs: DataFrame, cfg: DedupConfig) -> DataFrame:
    """(doc_id, lsh_buckets, lsh_orders, sketch) -> (doc_id, band, bucket, order, sketch): one row per band.

    ``order`` sorts a bucket's members so that documents that are alike sit next to each other (see
    :func:`band_orders`); giant buckets are compared by sorted neighbourhood in that order. The sketch
    travels with the row so that pairs are triaged where they are generated, with no join.
    """
    zipped = F.arrays_zip(F.col("lsh_buckets"), F.col("lsh_orders"))
    return sigs.select("doc_id", "sketch", F.posexplode(zipped).alias("band", "k")).select(
        "doc_id", "band", F.col("k.lsh_buckets").alias("bucket"), F.col("k.lsh_orders").alias("order"), "sketch"
    )


def bucket_pair_indices(runs: np.ndarray, window: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i < j < i + window, of rows in the same run, for rows sorted by run.

    ``runs`` labels each row's bucket (equal labels are contiguous). A run of up to ``window`` rows gives all
    its pairs; a longer one (boilerplate skew) pairs each row with its next window - 1 rows only (sorted
    neighbourhood: linear, not quadratic). Only pairs with j >= ``first`` are returned (the rows before it
    were carried over from the previous batch, and their pairs among themselves were emitted then).
    """
    n = len(runs)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    change = np.flatnonzero(runs[1:] != runs[:-1]) + 1
    bounds = np.concatenate([change, [n]])
    run_end = np.repeat(bounds, np.diff(np.concatenate([[0], bounds])))
    idx = np.arange(n, dtype=np.int64)
    counts = np.minimum(run_end, idx + window) - idx - 1
    total = int(counts.sum())
    i = np.repeat(idx, counts)
    step = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    j = i + 1 + step
    keep = j >= first
    return i[keep], j[keep]


def sketch_estimates(x: np.ndarray, y: np.ndarray, num_perm: int) -> np.ndarray:
    """Row-wise Jaccard estimates of two int64[n, words] packed sketch arrays (see :func:`packed_sketches`).

    Positions that differ are counted per long with xor + ``bit_count`` (no per-position loop). Two unequal
    minima agree on 4 bits with probability 1/16, so P(equal) = J + (1 - J) / 16 and J = (P - 1/16) / (1 -
    1/16); at J = 0.7 over 256 positions the estimate's standard deviation is 0.030 (0.029 with whole
    signatures)."""
    z = (x ^ y).view(np.uint64)
    z = z | (z >> np.uint64(1))
    z = z | (z >> np.uint64(2))
    differing = np.bitwise_count(z & np.uint64(_NIBBLE_LOW)).sum(axis=1, dtype=np.int64)
    chance = 1 / (1 << SKETCH_BITS)
    equal = (num_perm - differing) / float(num_perm)
    return np.maximum(0.0, (equal - chance) / (1 - chance))


_PAIR_SCORE_SCHEMA = StructType(
    [StructField("a", StringType(), False), StructField("b", StringType(), False),
     StructField("similarity", DoubleType(), False)]
)
_PAIR_SCORE_ARROW = pa.schema([pa.field("a", pa.string(), False), pa.field("b", pa.string(), False),
                               pa.field("similarity", pa.float64(), False)])
_PAIR_CHUNK = 1 << 17


def _ordered_pairs(ids: pa.Array, i: np.ndarray, j: np.ndarray, sim: np.ndarray) -> pa.RecordBatch:
    x, y = ids.take(pa.array(i)), ids.take(pa.array(j))
    swap = pc.greater(x, y)
    return pa.RecordBatch.from_arrays(
        [pc.if_else(swap, y, x), pc.if_else(swap, x, y), pa.array(sim, type=pa.float64())], schema=_PAIR_SCORE_ARROW
    )


def _bucket_scan_batches(batches: Iterable[pa.RecordBatch], cfg: DedupConfig, floor: float) -> Iterator[pa.RecordBatch]:
    """Rows sorted by (bucket, band, order) -> (a, b, estimate) of the pairs whose sketch estimate >= floor.

    A bucket may continue in the next Arrow batch: the last window - 1 rows of the batch's final bucket are
    carried over, so every pair is generated exactly once per band.
    """
    window = cfg.max_bucket_size
    words = -(-cfg.num_perm // _PER_WORD)
    carry: tuple[np.ndarray, np.ndarray, pa.Array, np.ndarray] | None = None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        band = batch.column("band").to_numpy(zero_copy_only=False).astype(np.int64)
        bucket = batch.column("bucket").to_numpy(zero_copy_only=False)
        ids = batch.column("doc_id")
        sketch = _fixed_width_rows(batch.column("sketch"), words, "sketch")
        first = 0
        if carry is not None:
            first = len(carry[0])
            band, bucket = np.concatenate([carry[0], band]), np.concatenate([carry[1], bucket])
            ids = pa.concat_arrays([carry[2], ids])
            sketch = np.concatenate([carry[3], sketch])
        n = len(band)
        runs = np.concatenate([[0], np.cumsum((band[1:] != band[:-1]) | (bucket[1:] != bucket[:-1]))])
        i, j = bucket_pair_indices(runs, window, first)
        for c in range(0, len(i), _PAIR_CHUNK):
            ci, cj = i[c:c + _PAIR_CHUNK], j[c:c + _PAIR_CHUNK]
            sim = sketch_estimates(sketch[ci], sketch[cj], cfg.num_perm)
            keep = sim >= floor
            if keep.any():
                yield _ordered_pairs(ids, ci[keep], cj[keep], sim[keep])
        last_run = int(np.searchsorted(runs, runs[-1]))
        tail = max(last_run, n - (window - 1))
        carry = (band[tail:], bucket[tail:], ids.slice(tail), sketch[tail:])


def triaged_pairs(keys: DataFrame, cfg: DedupConfig, floor: float) -> DataFrame:
    """Band rows (doc_id, band, bucket, order, sketch) -> distinct (a, b, similarity), a < b: the pairs sharing
    a bucket in any band whose sketch estimate reaches ``floor``.

    One shuffle brings each bucket's rows together, sorted so that alike documents are adjacent; a window
    count drops the rows alone in their bucket (most of them) before they cross to Python; one Arrow pass
    walks the sorted rows, generates each bucket's pairs (:func:`bucket_pair_indices`) and scores them
    with numpy (:func:`sketch_estimates`), so pairs below ``floor`` (most band collisions) never leave the
    task. (Before, pairs were generated with Spark higher-order functions and joined twice with the sketches.)
    """
    # bucket keys are seeded by band (band_hashes), so the key alone partitions; as the window's only sort key
    # (a long) it lets Spark radix-sort the band rows, and only the shared rows are sorted by band and order
    shared = keys.withColumn("_members", F.count(F.lit(1)).over(Window.partitionBy("bucket"))).filter(F.col("_members") > 1)
    scan = shared.drop("_members").sortWithinPartitions("bucket", "band", "order", "doc_id")
    pairs = scan.mapInArrow(lambda it: _bucket_scan_batches(it, cfg, floor), _PAIR_SCORE_SCHEMA)
    return pairs.distinct()


def giant_buckets(keys: DataFrame, cfg: DedupConfig) -> DataFrame:
    """(band, bucket, size) of the buckets over ``max_bucket_size`` (compared by sorted neighbourhood)."""
    sizes = keys.groupBy("band", "bucket").agg(F.count(F.lit(1)).alias("size"))
    return sizes.filter(F.col("size") > cfg.max_bucket_size)


def signature_similarity(sig_a: Column, sig_b: Column, num_perm: int) -> Column:
    """Share of equal signature positions (estimated Jaccard), with Spark higher-order functions."""
    equal = F.zip_with(sig_a, sig_b, lambda x, y: F.when(x == y, 1).otherwise(0))
    return F.aggregate(equal, F.lit(0), lambda acc, v: acc + v) / F.lit(float(num_perm))


_SHINGLE_SET_SCHEMA = StructType(
    [StructField("doc_id", StringType(), False), StructField("shingles", ArrayType(IntegerType(), False), False)]
)


def _shingle_set_batches(batches: Iterable[pa.RecordBatch], cfg: DedupConfig) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        texts = batch.column("text").to_pylist()
        langs = batch.column("lang").to_pylist()
        # low 32 bits of the 64-bit shingle hashes: half the bytes to shuffle; a false match between two
        # different shingles has probability 2**-32 per pair of elements
        sets = [np.unique(shingles(t, lang, cfg).astype(np.uint32)).view(np.int32) for t, lang in zip(texts, langs)]
        lengths = np.fromiter((len(x) for x in sets), dtype=np.int32, count=len(sets))
        offsets = np.concatenate([np.zeros(1, np.int32), np.cumsum(lengths, dtype=np.int32)])
        values = np.concatenate(sets) if sets else np.empty(0, np.int32)
        yield pa.RecordBatch.from_arrays(
            [batch.column("doc_id"), pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.int32()))],
            schema=pa.schema([pa.field("doc_id", pa.string(), False),
                              pa.field("shingles", pa.list_(pa.field("element", pa.int32(), False)), False)]),
        )


def shingle_sets(texts: DataFrame, cfg: DedupConfig) -> DataFrame:
    """(doc_id, text, lang) -> (doc_id, shingles array<int>): the distinct shingle hashes of each document,
    the same sets MinHash summarises. Only built for documents in uncertain pairs."""
    return texts.select("doc_id", "text", "lang").mapInArrow(
        lambda it: _shingle_set_batches(it, cfg), _SHINGLE_SET_SCHEMA
    )


def _fixed_width_rows(arr: pa.Array, width: int, what: str) -> np.ndarray:
    """An Arrow list column whose lists all have ``width`` elements, as a [n, width] array of its value type
    (dedup.num_perm decides the width of signatures and sketches: a stored one of another width is refused)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets = arr.offsets.to_numpy()
    if not np.all(np.diff(offsets) == width):
        raise ValueError(f"dedup: a {what} does not have the {width} elements that dedup.num_perm implies")
    values = arr.values.to_numpy(zero_copy_only=False)
    return values[offsets[0]:offsets[-1]].reshape(len(arr), width)


def _list_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(values as uint32, offsets) of an Arrow list<int> column; offsets index into ``values`` as is."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.values.to_numpy(zero_copy_only=False).view(np.uint32), arr.offsets.to_numpy().astype(np.int64)


def _exact_jaccard_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        xv, xo = _list_parts(batch.column("x"))
        yv, yo = _list_parts(batch.column("y"))
        inter = intersection_sizes(xv, xo, yv, yo)
        union = np.diff(xo) + np.diff(yo) - inter
        sim = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
        yield pa.RecordBatch.from_arrays(
            [batch.column("a"), batch.column("b"), pa.array(sim, type=pa.float64())],
            schema=pa.schema([pa.field("a", pa.string(), False), pa.field("b", pa.string(), False),
                              pa.field("similarity", pa.float64(), False)]),
        )


def exact_pair_jaccard(pairs: DataFrame) -> DataFrame:
    """(a, b, x, y) with x, y the sorted distinct shingle hashes of a and b -> (a, b, similarity): the exact
    Jaccard, by merging the two sorted sets in a compiled loop in one Arrow pass. Spark's
    ``array_intersect`` builds a hash set per pair and was 10x slower on the benchmark corpus."""
    return pairs.select("a", "b", "x", "y").mapInArrow(_exact_jaccard_batches, _PAIR_SCORE_SCHEMA)


def verified_edges(scored: DataFrame, sigs: DataFrame, cfg: DedupConfig, texts: DataFrame | None = None) -> DataFrame:
    """Triaged pairs (a, b, similarity = sketch estimate >= threshold - verify_margin, see :func:`triaged_pairs`)
    -> the pairs whose Jaccard reaches the threshold: (a, b, similarity).

    Estimates at or above threshold + verify_margin are accepted with the estimate as their similarity. The
    uncertain pairs in between (template families pile up there) are decided by, for verify=exact (needs
    ``texts``: doc_id, text, lang), the exact Jaccard of the two shingle sets (each document in an uncertain
    pair is shingled once, in one Arrow pass, and the sorted sets are merged in a compiled loop), or for
    verify=signature, the estimate from the whole signatures (``sigs``: doc_id, signature).
    """
    sure = scored.filter(F.col("similarity") >= F.lit(cfg.threshold + cfg.verify_margin))
    unsure = scored.filter(F.col("similarity") < F.lit(cfg.threshold + cfg.verify_margin)).select("a", "b")
    if cfg.verify == "signature" or texts is None:
        sa = sigs.select(F.col("doc_id").alias("a"), F.col("signature").alias("sig_a"))
        sb = sigs.select(F.col("doc_id").alias("b"), F.col("signature").alias("sig_b"))
        decided = unsure.join(sa, on="a", how="inner").join(sb, on="b", how="inner").select(
            "a", "b", signature_similarity(F.col("sig_a"), F.col("sig_b"), cfg.num_perm).alias("similarity")
        )
    else:
        involved = unsure.select(F.col("a").alias("doc_id")).unionByName(unsure.select(F.col("b").alias("doc_id")))
        sets = _checkpoint(shingle_sets(texts.join(involved.distinct(), on="doc_id", how="left_semi"), cfg))
        xa = sets.select(F.col("doc_id").alias("a"), F.col("shingles").alias("x"))
        xb = sets.select(F.col("doc_id").alias("b"), F.col("shingles").alias("y"))
        decided = exact_pair_jaccard(unsure.join(xa, on="a", how="inner").join(xb, on="b", how="inner"))
    return sure.unionByName(decided.filter(F.col("similarity") >= F.lit(cfg.threshold)))


def _checkpoint(df: DataFrame) -> DataFrame:
    """Cut the lineage each iteration: reliable checkpoint when a directory is set, else a local one."""
    if df.sparkSession.sparkContext.getCheckpointDir():
        return df.checkpoint(eager=True)
    return df.localCheckpoint(eager=True)


def connected_components(edges: DataFrame, max_iterations: int = 60) -> DataFrame:
    """(a, b) undirected edges -> (node, root) with root = the smallest node of its component.

    Alternating large-star / small-star: each step is a groupBy plus a join over the edge list, so the
    work is spread over all partitions; O(log^2 n) rounds. Converged when the graph is a set of stars
    (no edge's parent is itself a child). Every node with an edge is returned, roots included (root = node);
    isolated nodes are not.
    """
    e = edges.select(F.greatest("a", "b").alias("u"), F.least("a", "b").alias("v")).filter(F.col("u") != F.col("v"))
    e = e.distinct()
    for i in range(max_iterations):
        e = _checkpoint(_small_star(_large_star(e)))
        nested = e.alias("x").join(e.alias("y"), F.col("x.v") == F.col("y.u"), how="left_semi")
        if nested.limit(1).count() == 0:
            log.info("connected components converged after %d large/small-star rounds", i + 1)
            break
    else:
        raise RuntimeError(f"connected components did not converge in {max_iterations} iterations")
    leaves = e.select(F.col("u").alias("node"), F.col("v").alias("root"))
    roots = e.select(F.col("v").alias("node"), F.col("v").alias("root")).distinct()
    return leaves.unionByName(roots)


def _large_star(e: DataFrame) -> DataFrame:
    """For each node u: link every larger neighbour to min(N(u) ∪ {u}). Edges oriented (u > v)."""
    sym = e.select("u", "v").unionByName(e.select(F.col("v").alias("u"), F.col("u").alias("v")))
    m = sym.groupBy("u").agg(F.least(F.min("v"), F.col("u")).alias("m"))
    return (
        sym.filter(F.col("v") > F.col("u"))
        .join(m, on="u", how="inner")
        .select(F.col("v").alias("u"), F.col("m").alias("v"))
        .filter(F.col("u") != F.col("v"))
        .distinct()
    )


def _small_star(e: DataFrame) -> DataFrame:
    """For each node u: link u and its smaller neighbours to the smallest of them. Edges oriented (u > v)."""
    m = e.groupBy("u").agg(F.min("v").alias("m"))
    joined = e.join(m, on="u", how="inner")
    moved = joined.select(F.col("v").alias("u"), F.col("m").alias("v"))
    own = m.select("u", F.col("m").alias("v"))
    out = moved.unionByName(own).filter(F.col("u") != F.col("v"))
    return out.select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v")).distinct()


def assign_keepers(
    nodes: DataFrame, edges: DataFrame, cfg: DedupConfig
) -> DataFrame:
    """nodes(doc_id, signature, prio) + verified edges -> (doc_id, keeper_id, similarity).

    Components are computed, a keeper chosen per component, and members whose estimated Jaccard to the
    keeper is below the threshold are re-clustered among themselves (next round), so no document is
    removed unless it is a near duplicate of the document that is kept in its place.
    """
    done: DataFrame | None = None
    remaining = nodes.select("doc_id", "signature", "prio")
    round_edges = edges.select("a", "b")
    for round_no in range(cfg.max_split_rounds):
        comps = connected_components(round_edges, cfg.cc_max_iterations)
        linked = remaining.join(comps.withColumnRenamed("node", "doc_id"), on="doc_id", how="inner")
        keeper = linked.groupBy("root").agg(F.min("prio").alias("kp"))
        keeper = keeper.select("root", F.col("kp.p_doc_id").alias("keeper_id"))
        ksig = remaining.select(F.col("doc_id").alias("keeper_id"), F.col("signature").alias("keeper_sig"))
        scored = (
            linked.join(keeper, on="root", how="inner")
            .join(ksig, on="keeper_id", how="inner")
            .withColumn(
                "similarity",
                F.when(F.col("doc_id") == F.col("keeper_id"), F.lit(1.0)).otherwise(
                    signature_similarity(F.col("signature"), F.col("keeper_sig"), cfg.num_perm)
                ),
            )
        )
        scored = _checkpoint(scored.select("doc_id", "keeper_id", "similarity"))
        close = scored.filter(F.col("similarity") >= F.lit(cfg.threshold))
        far = scored.filter(F.col("similarity") < F.lit(cfg.threshold)).select("doc_id")
        done = close if done is None else done.unionByName(close)
        n_far = far.count()
        log.info("dedup clustering round %d: %d members far from their keeper", round_no + 1, n_far)
        if n_far == 0:
            break
        remaining = remaining.join(far, on="doc_id", how="left_semi")
        fa = far.select(F.col("doc_id").alias("a"))
        fb = far.select(F.col("doc_id").alias("b"))
        round_edges = round_edges.join(fa, on="a", how="left_semi").join(fb, on="b", how="left_semi")
    assert done is not None
    # members still far after the last round keep themselves
    linked_ids = done.select("doc_id")
    rest = nodes.join(linked_ids, on="doc_id", how="left_anti").select(
        "doc_id", F.col("doc_id").alias("keeper_id"), F.lit(1.0).alias("similarity")
    )
    return done.unionByName(rest)


_UNDECIDED, _KEPT, _REMOVED = 0, 1, 2


def orient_edges(nodes: DataFrame, edges: DataFrame) -> DataFrame:
    """(a, b, similarity) + nodes(doc_id, prio) -> (hi, lo, hi_prio, similarity): hi is the better keeper."""
    pa_ = nodes.select(F.col("doc_id").alias("a"), F.col("prio").alias("pa"))
    pb_ = nodes.select(F.col("doc_id").alias("b"), F.col("prio").alias("pb"))
    a_first = F.col("pa") < F.col("pb")
    return edges.join(pa_, on="a", how="inner").join(pb_, on="b", how="inner").select(
        F.when(a_first, F.col("a")).otherwise(F.col("b")).alias("hi"),
        F.when(a_first, F.col("b")).otherwise(F.col("a")).alias("lo"),
        F.when(a_first, F.col("pa")).otherwise(F.col("pb")).alias("hi_prio"),
        "similarity",
    )


def greedy_round(status: DataFrame, directed: DataFrame) -> DataFrame:
    """One synchronous round of greedy selection in keeper order.

    status(doc_id, status) -> the same with more documents decided: an undecided document is removed when
    a better neighbour is kept, and kept when every better neighbour is removed (or it has none). Decisions
    never change, so the result equals processing documents one by one from the best.
    """
    # status is read twice per round (not three times): rounds chained between checkpoints multiply the plan
    hi_status = status.select(F.col("doc_id").alias("hi"), F.col("status").alias("hi_status"))
    blockers = (
        directed.select("hi", "lo")
        .join(hi_status.filter(F.col("hi_status") != _REMOVED), on="hi", how="inner")
        .groupBy("lo")
        .agg(
            F.max((F.col("hi_status") == _KEPT).cast("int")).alias("kept_better"),
            F.max((F.col("hi_status") == _UNDECIDED).cast("int")).alias("undecided_better"),
        )
    )
    nxt = (
        F.when(F.col("status") != _UNDECIDED, F.col("status"))
        .when(F.col("kept_better") == 1, F.lit(_REMOVED))
        .when(F.col("undecided_better") == 1, F.lit(_UNDECIDED))
        .otherwise(F.lit(_KEPT))
    )
    joined = status.join(blockers.withColumnRenamed("lo", "doc_id"), on="doc_id", how="left")
    return joined.select("doc_id", nxt.alias("status"))


# rounds run between two checkpoints and convergence checks: a round after convergence changes nothing, and
# each checkpoint and count is a Spark job whose fixed cost dominates these small rounds
GREEDY_ROUNDS_PER_CHECK = 3


def first_greedy_round(directed: DataFrame) -> DataFrame:
    """The first round without a status table: a document with no better neighbour is kept, every other one
    is undecided. (hi, lo) edges -> (doc_id, status) for every document with an edge."""
    ends = directed.select(F.col("hi").alias("doc_id"), F.lit(0).alias("is_lo")).unionByName(
        directed.select(F.col("lo").alias("doc_id"), F.lit(1).alias("is_lo"))
    )
    first = F.when(F.max("is_lo") == 1, F.lit(_UNDECIDED)).otherwise(F.lit(_KEPT))
    return ends.groupBy("doc_id").agg(first.alias("status"))


def greedy_removals(nodes: DataFrame, edges: DataFrame, cfg: DedupConfig) -> DataFrame:
    """nodes(doc_id, prio) + verified edges (a, b, similarity) -> (doc_id, keeper_id, similarity) of the
    removed documents only (every other document keeps itself, see :func:`greedy_keepers`).

    Every removed document is linked by a verified pair to its keeper (the best kept better neighbour), so
    template families chained A~B~C never remove C for a keeper A it does not resemble, and no cluster can
    grow by chaining. Distributed rounds (joins and groupBys over the edge list, checkpointed), one per link
    of the longest better-to-worse chain: 2 for a template family hanging off one document.
    """
    directed = _checkpoint(orient_edges(nodes, edges))
    status = first_greedy_round(directed)
    undecided = -1
    for round_no in range(2, cfg.greedy_max_rounds + 1, GREEDY_ROUNDS_PER_CHECK):
        last = min(round_no + GREEDY_ROUNDS_PER_CHECK - 1, cfg.greedy_max_rounds)
        for _ in range(round_no, last + 1):
            status = greedy_round(status, directed)
        status = _checkpoint(status)
        undecided = status.filter(F.col("status") == _UNDECIDED).count()
        log.info("dedup greedy round %d: %d documents undecided", last, undecided)
        if undecided == 0:
            break
    if undecided < 0:  # greedy_max_rounds = 1: the first round was all
        undecided = status.filter(F.col("status") == _UNDECIDED).count()
    if undecided > 0:
        log.warning("dedup greedy selection stopped after %d rounds: %d undecided documents are kept",
                    cfg.greedy_max_rounds, undecided)
    removed = status.filter(F.col("status") == _REMOVED).select(F.col("doc_id").alias("lo"))
    kept = status.filter(F.col("status") != _REMOVED).select(F.col("doc_id").alias("hi"))
    best = (
        directed.join(removed, on="lo", how="left_semi").join(kept, on="hi", how="left_semi")
        .groupBy("lo").agg(F.min(F.struct("hi_prio", "hi", "similarity")).alias("k"))
        .select(F.col("lo").alias("doc_id"), F.col("k.hi").alias("keeper_id"), F.col("k.similarity").alias("similarity"))
    )
    return best


def greedy_keepers(nodes: DataFrame, edges: DataFrame, cfg: DedupConfig) -> DataFrame:
    """nodes(doc_id, prio) + verified edges (a, b, similarity) -> (doc_id, keeper_id, similarity) for every
    node: :func:`greedy_removals`, and every other node keeps itself."""
    removed = greedy_removals(nodes, edges, cfg)
    return with_own_keepers(nodes.select("doc_id"), removed, "doc_id")


def with_own_keepers(docs: DataFrame, removals: DataFrame, key: str) -> DataFrame:
    """docs(key, ...) + removals(doc_id, keeper_id, similarity) -> docs plus keeper_id and similarity, where
    documents not removed keep themselves (one left join: no anti-join and union)."""
    joined = docs.join(removals.withColumnRenamed("doc_id", key), on=key, how="left")
    return joined.withColumn("keeper_id", F.coalesce(F.col("keeper_id"), F.col(key))).withColumn(
        "similarity", F.coalesce(F.col("similarity"), F.lit(1.0))
    )


@dataclass
class DedupResult:
    """assignments: (doc_id, cluster_id, is_keeper, reason, similarity) for every input doc."""

    assignments: DataFrame
    giant_buckets: DataFrame
    signatures: DataFrame
    edges: DataFrame | None = None  # verified (a, b, similarity) between exact-group representatives


def dedup_documents(
    new_docs: DataFrame,
    cfg: DedupConfig,
    previous: DataFrame | None = None,
) -> DedupResult:
    """Cluster ``new_docs`` against themselves and ``previous`` (released keepers with stored signatures).

    new_docs: doc_id, text, lang, char_count, quality_score (nullable).
    previous: the :data:`STORED_COLUMNS` of dedup_signatures (LSH band keys, sort keys, sketch), + text and
    lang for verify=exact — their MinHash is not recomputed, except the whole signature where
    :func:`needs_signatures` (verify=signature, clustering=components), from their text.
    Returns one assignment row per new doc (previous docs are never reassigned); ``signatures`` holds the
    new documents' :data:`STORED_COLUMNS`.
    """
    check_banding(cfg)
    quality = F.col("quality_score") if "quality_score" in new_docs.columns else F.lit(None).cast("double")
    if "lang" not in new_docs.columns:
        new_docs = new_docs.withColumn("lang", F.lit(None).cast("string"))
    # the 1 KB signature travels with the nodes only when something reads it
    node_columns = ["doc_id", "norm_hash", "shingle_count", "char_count", "quality_score"]
    if needs_signatures(cfg):
        node_columns.append("signature")
    new = with_signatures(
        new_docs.select(
            "doc_id", "text", "lang", "char_count", quality.alias("quality_score"), norm_hash(F.col("text")).alias("norm_hash")
        ),
        cfg,
        lsh=True,
    )
    new_nodes = new.select(*node_columns, F.lit(True).alias("is_new"), *LSH_SCHEMA.fieldNames())
    nodes = new_nodes
    if previous is not None:
        lsh = LSH_SCHEMA.fieldNames()
        if "signature" in previous.columns:  # given whole signatures (not what dedup_signatures stores)
            old = previous if set(lsh) <= set(previous.columns) else with_lsh_columns(previous, cfg)
        elif needs_signatures(cfg):
            if "text" not in previous.columns:
                raise ValueError("dedup: verify=signature and clustering=components need the previous documents' text")
            old = with_signatures(previous.drop("shingle_count"), cfg)  # recomputed, the same
        else:
            old = previous
        old_nodes = old.select(*node_columns, F.lit(False).alias("is_new"), *lsh)
        nodes = nodes.unionByName(old_nodes)
    nodes = nodes.withColumn(
        "prio", priority(F.col("is_new"), F.col("quality_score"), F.col("char_count"), F.col("doc_id"))
    )
    nodes = _checkpoint(exact_groups(nodes))  # + rep_id
    reps = nodes.filter(F.col("doc_id") == F.col("rep_id"))
    keys = band_keys(reps, cfg)
    scored = _checkpoint(triaged_pairs(keys, cfg, cfg.threshold - cfg.verify_margin))
    texts = new_docs.select("doc_id", "text", "lang")
    if previous is not None and "text" in previous.columns:
        texts = texts.unionByName(previous.select("doc_id", "text", "lang"))
    edges = verified_edges(scored, reps, cfg, texts)
    if previous is not None:
        # released docs were deduplicated against each other already: only links touching a new doc count
        flags = reps.select("doc_id", "is_new")
        edges = (
            edges.join(flags.withColumnRenamed("doc_id", "a").withColumnRenamed("is_new", "a_new"), on="a", how="inner")
            .join(flags.withColumnRenamed("doc_id", "b").withColumnRenamed("is_new", "b_new"), on="b", how="inner")
            .filter(F.col("a_new") | F.col("b_new"))
            .select("a", "b", "similarity")
        )
    edges = _checkpoint(edges)
    if cfg.clustering == "greedy":
        near = greedy_removals(reps, edges, cfg)  # removed rep doc -> keeper doc
    else:
        near = assign_keepers(reps, edges, cfg)  # every rep doc -> keeper doc
    assigned = with_own_keepers(nodes.filter(F.col("is_new")).select("doc_id", "rep_id"), near, "rep_id")
    reason = (
        F.when(F.col("doc_id") == F.col("keeper_id"), F.lit("keeper"))
        .when(F.col("doc_id") != F.col("rep_id"), F.lit("exact_duplicate"))
        .otherwise(F.lit("near_duplicate"))
    )
    assignments = assigned.select(
        "doc_id",
        F.col("keeper_id").alias("cluster_id"),
        (F.col("doc_id") == F.col("keeper_id")).alias("is_keeper"),
        reason.alias("reason"),
        F.when(F.col("doc_id") != F.col("rep_id"), F.lit(1.0)).otherwise(F.col("similarity")).alias("similarity"),
    )
    return DedupResult(assignments, giant_buckets(keys, cfg), nodes.filter(F.col("is_new")).select(*STORED_COLUMNS), edges)


def mark_singletons(assignments: DataFrame) -> DataFrame:
    """Keepers alone in their cluster get reason 'unique' instead of 'keeper'."""
    sizes = assignments.groupBy("cluster_id").agg(F.count(F.lit(1)).alias("cluster_size"))
    out = assignments.join(sizes, on="cluster_id", how="inner")
    return out.withColumn(
        "reason", F.when(F.col("is_keeper") & (F.col("cluster_size") == 1), F.lit("unique")).otherwise(F.col("reason"))
    )


# ---------------------------------------------------------------------------------------------------
# stats (small aggregates)
# ---------------------------------------------------------------------------------------------------
def _stat(metric: str, key: Column, value: Column, count: Column, sample: Column | None = None) -> list[Column]:
    return [
        F.lit(metric).alias("metric"),
        key.cast("string").alias("key"),
        value.cast("double").alias("value"),
        count.cast("long").alias("count"),
        (sample if sample is not None else F.lit(None).cast("string")).alias("sample"),
    ]


def size_bucket(size: Column) -> Column:
    """Cluster size histogram bucket: 1, 2, 3-4, 5-8, 9-16, ... (powers of two)."""
    lo = F.pow(F.lit(2), F.ceil(F.log2(size)) - 1).cast("long") + 1
    hi = F.pow(F.lit(2), F.ceil(F.log2(size))).cast("long")
    return (
        F.when(size <= 2, size.cast("string"))
        .otherwise(F.concat(F.lpad(lo.cast("string"), 6, "0"), F.lit("-"), hi.cast("string")))
    )


def dedup_stats(clusters: DataFrame, texts: DataFrame, giant: DataFrame, cfg: DedupConfig) -> DataFrame:
    """clusters(doc_id, cluster_id, is_keeper, reason, source) of one run -> (metric, key, value, count, sample).

    ``texts`` (doc_id, text) only feeds the samples of the largest clusters.
    """
    total = F.count(F.lit(1))
    removed = F.sum(F.when(~F.col("is_keeper"), 1).otherwise(0))
    rates = clusters.agg(
        total.alias("n"),
        removed.alias("removed"),
        F.sum(F.when(F.col("reason") == "exact_duplicate", 1).otherwise(0)).alias("exact"),
        F.sum(F.when(F.col("reason") == "near_duplicate", 1).otherwise(0)).alias("near"),
    )
    n = F.greatest(F.col("n"), F.lit(1))
    overall = rates.select(F.explode(F.array(
        F.struct(*_stat("duplicate_rate", F.lit("all"), F.col("removed") / n, F.col("removed"))),
        F.struct(*_stat("exact_duplicate_rate", F.lit("all"), F.col("exact") / n, F.col("exact"))),
        F.struct(*_stat("near_duplicate_rate", F.lit("all"), F.col("near") / n, F.col("near"))),
    )).alias("s")).select("s.*")
    per_source = clusters.groupBy(F.coalesce("source", F.lit("?")).alias("src")).agg(
        total.alias("n"), removed.alias("removed")
    ).select(*_stat("source_duplicate_rate", F.col("src"), F.col("removed") / F.col("n"), F.col("n")))
    sizes = clusters.groupBy("cluster_id").agg(total.alias("size"))
    hist = sizes.groupBy(size_bucket(F.col("size")).alias("bucket")).agg(total.alias("clusters")).select(
        *_stat("cluster_size_histogram", F.col("bucket"), F.col("clusters"), F.col("clusters"))
    )
    top = sizes.filter(F.col("size") > 1).orderBy(F.col("size").desc(), F.col("cluster_id")).limit(cfg.stats_top_clusters)
    first_member = (
        clusters.filter(~F.col("is_keeper")).groupBy("cluster_id").agg(F.min("doc_id").alias("member_id"))
    )
    snippet = F.substring(F.col("text"), 1, cfg.stats_sample_chars)
    keeper_text = texts.select(F.col("doc_id").alias("cluster_id"), snippet.alias("keeper_text"))
    member_text = texts.select(F.col("doc_id").alias("member_id"), snippet.alias("member_text"))
    largest = (
        top.join(first_member, on="cluster_id", how="left")
        .join(keeper_text, on="cluster_id", how="left")
        .join(member_text, on="member_id", how="left")
        .select(*_stat(
            "largest_cluster", F.col("cluster_id"), F.col("size"), F.col("size"),
            F.concat_ws(" ||| ", F.concat(F.lit("keeper: "), F.col("keeper_text")),
                        F.concat(F.lit("member: "), F.col("member_text"))),
        ))
    )
    giants = giant.select(*_stat(
        "giant_bucket", F.concat_ws(":", F.col("band"), F.col("bucket")), F.col("size"), F.col("size")
    ))
    return overall.unionByName(per_source).unionByName(hist).unionByName(largest).unionByName(giants)


# ---------------------------------------------------------------------------------------------------
# helpers of the dedup stage
# ---------------------------------------------------------------------------------------------------
def with_optional_columns(docs: DataFrame, wh) -> DataFrame:  # type: ignore[no-untyped-def]
    """Nullable unique_documents columns the input table may lack (e.g. scores when classify has not run)."""
    from medcorpus.core.warehouse import table_spec

    for f in table_spec("unique_documents").schema.fields:
        if f.nullable and f.name not in docs.columns:
            docs = docs.withColumn(f.name, F.lit(None).cast(f.dataType))
    return docs


def previous_note(previous: DataFrame) -> str:
    n = previous.count()
    return f"compared against {n} previously kept documents (stored signatures)" if n else "first batch"


def _log_stats(stats: DataFrame) -> None:
    rows = stats.filter(F.col("metric") != "source_duplicate_rate").orderBy("metric", "key").collect()  # small
    for r in rows:
        extra = f" | {r['sample'][:120]}" if r["sample"] else ""
        log.info("dedup stat %s[%s] = %.4g (n=%s)%s", r["metric"], r["key"], r["value"], r["count"], extra)
    for r in stats.filter(F.col("metric") == "source_duplicate_rate").orderBy(F.col("value").desc()).limit(20).collect():
        log.info("dedup duplicate rate of source %s = %.3f (n=%s)", r["key"], r["value"], r["count"])
