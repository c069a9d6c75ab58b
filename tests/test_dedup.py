"""Dedup: shingling/MinHash helpers, distributed connected components, and the stage on real Delta tables
(exact + near duplicates, template chains, keeper order, rerun identity, incremental batches)."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from medcorpus.core.config import DedupConfig
from medcorpus.core.errors import ConfigError
from medcorpus.core.pipeline import RunContext
from medcorpus.core.warehouse import table_spec
from medcorpus.dedup.minhash import (
    _bucket_scan_batches,
    _minhash_numpy,
    bucket_pair_indices,
    char_shingles,
    check_banding,
    connected_components,
    dedup_documents,
    estimated_jaccard,
    exact_jaccard,
    greedy_keepers,
    intersection_sizes,
    lsh_midpoint,
    minhash,
    packed_sketches,
    permutations,
    priority,
    shingles,
    sketch_estimates,
    triaged_pairs,
    word_shingles,
)
from medcorpus.stages import run_stage
from medcorpus.text.ngrams import span_hashes, span_hashes_numpy
from tests.conftest import as_table

CFG = DedupConfig()
ZH = (
    "高血压病人可以口服党参的。党参有降血脂，降血压的作用，可以彻底消除血液中的垃圾，从而对冠心病以及心血管疾病的"
    "患者都有一定的稳定预防工作作用，因此平时口服党参能远离三高的危害。另外党参除了益气养血，降低中枢神经作用，"
    "调整消化系统功能，健脾补肺的功能。感谢您的咨询，期望我的解释对你有所帮助。"
)


def _words(seed: int, n: int = 120) -> list[str]:
    rng = random.Random(seed)
    return [f"w{rng.randrange(3000)}" for _ in range(n)]


def _edit(words: list[str], positions) -> list[str]:
    out = list(words)
    for p in positions:
        out[p] = f"x{p}"
    return out


# A~B and B~C (J≈0.77) but A!~C (J≈0.59): a template-family chain.
CHAIN_A = _words(3)
CHAIN_B = _edit(CHAIN_A, (10, 22, 34))
CHAIN_C = _edit(CHAIN_B, (70, 82, 94))


def test_chinese_uses_character_shingles_and_english_word_shingles():
    assert len(shingles(ZH, "zh", CFG)) == len(ZH) - CFG.zh_shingle_chars + 1  # no spaces in ZH
    assert len(shingles(ZH, "en", CFG)) < len(ZH) / 10  # a word split sees whole clauses as tokens
    en = " ".join(CHAIN_A)
    assert np.array_equal(shingles(en, "en", CFG), word_shingles(en, CFG.en_shingle_words))
    # lang=other falls back on the script
    assert np.array_equal(shingles(ZH, "other", CFG), char_shingles(ZH, CFG.zh_shingle_chars))


def test_shingle_hash_is_position_independent():
    h = char_shingles("abcdeXabcde", 5)
    assert h[0] == h[-1] and len(np.unique(h)) == len(h) - 1


def test_minhash_estimates_jaccard_and_is_deterministic():
    a = shingles(" ".join(CHAIN_A), "en", CFG)
    b = shingles(" ".join(CHAIN_B), "en", CFG)
    sa, sb = minhash(a, 256, 7), minhash(b, 256, 7)
    assert abs(estimated_jaccard(sa, sb) - exact_jaccard(a, b)) < 0.08
    assert np.array_equal(sa, minhash(a[::-1].copy(), 256, 7))  # order and repeats do not matter
    assert not np.array_equal(sa, minhash(a, 256, 8))  # the seed matters


def test_banding_midpoint_is_below_threshold():
    assert lsh_midpoint(CFG.bands, CFG.rows) < CFG.threshold
    check_banding(CFG)
    with pytest.raises(ConfigError, match="centres its S-curve"):
        check_banding(DedupConfig(num_perm=128, bands=14, rows=9))
    with pytest.raises(ConfigError, match="exceeds"):
        check_banding(DedupConfig(num_perm=64, bands=32, rows=5))


def test_connected_components_large_small_star(spark):
    edges = spark.createDataFrame(
        [("f", "e"), ("e", "d"), ("d", "c"), ("c", "b"), ("b", "a"), ("z", "y"), ("q", "p"), ("p", "r")], "a string, b string"
    )
    got = {r["node"]: r["root"] for r in connected_components(edges).collect()}
    assert got == {"a": "a", "b": "a", "c": "a", "d": "a", "e": "a", "f": "a", "y": "y", "z": "y", "p": "p", "q": "p", "r": "p"}


def _documents(spark, rows):
    """documents rows from (doc_id, source, text, lang)."""
    schema = table_spec("documents").schema
    full = [
        (d, s, f"{s}/f", "jsonl", None, None, None, t, lang, 0.9, False, len(t), len(t), f"h{d}", "n1")
        for d, s, t, lang in rows
    ]
    return spark.createDataFrame(full, schema)


BATCH1 = [
    ("d01", "toyhom_csv", ZH, "zh"),
    ("d02", "toyhom_txt", ZH + "\n", "zh"),  # exact duplicate after normalisation
    ("d03", "toyhom_txt", ZH.replace("党参", "人参", 1), "zh"),  # near duplicate (J≈0.9)
    ("d04", "medquad", " ".join(CHAIN_A), "en"),
    ("d05", "medquad", " ".join(CHAIN_B), "en"),
    ("d06", "medquad", " ".join(CHAIN_C), "en"),
    ("d07", "medquad", " ".join(_words(11)), "en"),
    ("d08", "other", "完全不同的一段文字，讲述感冒的治疗方法和注意事项，多喝水多休息，不要熬夜。", "zh"),
]


def _clusters(wh):
    return sorted(
        (r["doc_id"], r["cluster_id"], r["is_keeper"], r["reason"], round(r["similarity"], 6))
        for r in wh.read("dedup_clusters").collect()
    )


def test_dedup_stage_rerun_and_incremental(spark, make_config):
    ctx = RunContext.create(spark, make_config("run_id=dedup-1"))
    wh = ctx.warehouse
    wh.append_rows("scored_documents", as_table(_documents(spark, BATCH1), "scored_documents"), stage="classify")

    report = run_stage(ctx, "dedup")
    got = {r[0]: r[1:4] for r in _clusters(wh)}
    # longest doc of the exact group wins (d02 has a trailing newline), d03 joins it as a near duplicate
    assert got["d02"] == ("d02", True, "keeper")
    assert got["d01"] == ("d02", False, "exact_duplicate")
    assert got["d03"] == ("d02", False, "near_duplicate")
    # chain: d04 keeps d05 (near), d06 is far from d04 so it is re-clustered alone and kept
    assert got["d04"] == ("d04", True, "keeper")
    assert got["d05"] == ("d04", False, "near_duplicate")
    assert got["d06"] == ("d06", True, "unique")
    assert got["d07"] == ("d07", True, "unique") and got["d08"] == ("d08", True, "unique")
    assert (report.rows_in, report.rows_out, report.rows_removed) == (8, 5, 3)
    assert report.removed_by_reason == {"exact_duplicate": 1, "near_duplicate": 2}
    assert sorted(r["doc_id"] for r in wh.read("unique_documents").collect()) == ["d02", "d04", "d06", "d07", "d08"]
    stats = {(r["metric"], r["key"]): r["value"] for r in wh.read("dedup_stats").collect()}
    assert stats[("duplicate_rate", "all")] == pytest.approx(3 / 8)
    assert stats[("source_duplicate_rate", "toyhom_csv")] == pytest.approx(1.0)
    assert stats[("cluster_size_histogram", "1")] == 3

    first = _clusters(wh)
    again = run_stage(RunContext.create(spark, make_config("run_id=dedup-2")), "dedup")
    assert again.rows_in == 0 and _clusters(wh) == first  # rerun: identical table

    # a run killed after its signature and keeper commits, before dedup_clusters (written last): the rerun
    # redoes the batch without comparing it with its own leftovers, and ends with the same tables
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, wh.path("dedup_clusters")).delete()
    redo = run_stage(RunContext.create(spark, make_config("run_id=dedup-2b")), "dedup")
    assert redo.rows_in == 8 and _clusters(wh) == first
    assert sorted(r["doc_id"] for r in wh.read("unique_documents").collect()) == ["d02", "d04", "d06", "d07", "d08"]

    # incremental: a near copy of a kept doc and a new doc; old signatures are not recomputed
    new = [("d09", "web", ZH.replace("党参", "黄芪", 2), "zh"), ("d10", "web", " ".join(_words(99)), "en")]
    wh.append_rows("scored_documents", as_table(_documents(spark, new), "scored_documents"), stage="classify")
    inc = run_stage(RunContext.create(spark, make_config("run_id=dedup-3")), "dedup")
    got = {r[0]: r[1:4] for r in _clusters(wh)}
    assert inc.rows_in == 2 and got["d09"] == ("d02", False, "near_duplicate") and got["d10"][2] == "unique"
    sig_runs = {r["doc_id"]: r["dedup_run_id"] for r in wh.read("dedup_signatures").collect()}
    assert sig_runs["d01"] == "dedup-1" and sig_runs["d09"] == "dedup-3" and len(sig_runs) == 10
    # the stored rows hold the LSH band keys, sort keys and triage sketch, not the 256-value signature
    stored = wh.read("dedup_signatures")
    assert "signature" not in stored.columns
    row = stored.filter(F.col("doc_id") == "d01").first()
    cfg = ctx.config.dedup
    assert (len(row["lsh_buckets"]), len(row["lsh_orders"]), len(row["sketch"])) == (cfg.bands, cfg.bands, cfg.num_perm // 16)

    # determinism: a fresh computation on shuffled, repartitioned input gives the same assignments
    docs = wh.read("scored_documents").filter(F.col("doc_id") <= "d08").repartition(3).orderBy(F.rand(5))
    fresh = sorted(
        (r["doc_id"], r["cluster_id"], r["is_keeper"], r["reason"], round(r["similarity"], 6))
        for r in dedup_documents(docs, ctx.config.dedup).assignments.collect()
    )
    assert [row for row in fresh] == [
        (d, c, k, "keeper" if reason == "unique" else reason, s) for d, c, k, reason, s in first
    ]


def test_compiled_span_hashes_give_the_numpy_hashes_bit_for_bit():
    rng = np.random.default_rng(5)
    for n in (1, 4, 5, 6, 900):
        cps = rng.integers(0, 0x10FFFF, n, dtype=np.uint32)
        starts = rng.integers(0, n, 50)
        ends = np.minimum(starts + rng.integers(1, 8, 50), n)
        assert np.array_equal(span_hashes(cps, starts, ends), span_hashes_numpy(cps, starts, ends)), n


def test_compiled_minhash_gives_the_numpy_signature_bit_for_bit():
    rng = np.random.default_rng(0)
    a, b = permutations(CFG.num_perm, CFG.seed)
    for n in (0, 1, 7, 300, 5000):
        hashes = rng.integers(0, 2**63, n, dtype=np.uint64)
        numpy_sig = np.minimum(_minhash_numpy(hashes, a, b), np.uint64(0xFFFFFFFF)).astype(np.uint32)
        assert np.array_equal(minhash(hashes, CFG.num_perm, CFG.seed), numpy_sig), n


def test_packed_sketch_estimate_counts_equal_low_nibbles():
    """The triage estimate from packed 4-bit sketches equals the estimate computed position by position."""
    rng = np.random.default_rng(7)
    for num_perm in (256, 200):  # 200: the last long is only half used
        got, want = [], []
        for agree in (0.0, 0.3, 0.7, 0.85, 1.0):
            a = rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32)
            b = np.where(rng.random(num_perm) < agree, a, rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32))
            equal = np.mean((a & 15) == (b & 15))
            sk = packed_sketches(np.stack([a, b]))
            assert sk.shape == (2, -(-num_perm // 16))
            got.append(float(sketch_estimates(sk[:1], sk[1:], num_perm)[0]))
            want.append(float(max(0.0, (equal - 1 / 16) / (1 - 1 / 16))))
        assert got == pytest.approx(want, abs=1e-12)
        assert got[4] == 1.0 and got[0] < 0.15


def test_intersection_sizes_of_sorted_runs_match_numpy():
    rng = np.random.default_rng(3)
    xs = [np.unique(rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)) for n in (0, 1, 50, 400, 3)]
    ys = [np.unique(np.concatenate([x[: len(x) // 2], rng.integers(0, 2**32, 30, dtype=np.uint64).astype(np.uint32)]))
          for x in xs]
    def ragged(arrays):
        return np.concatenate(arrays), np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
    got = intersection_sizes(*ragged(xs), *ragged(ys))
    assert got.tolist() == [len(np.intersect1d(x, y)) for x, y in zip(xs, ys)]
    assert got[3] >= 200  # half of the 400 are shared


def test_bucket_pairs_are_all_pairs_up_to_the_window_then_a_sorted_neighbourhood():
    runs = np.array([0] * 4 + [1] + [2] * 10)  # a bucket of 4, a singleton, a bucket of 10
    i, j = bucket_pair_indices(runs, 4)
    pairs = sorted(zip(i.tolist(), j.tolist()))
    small = [(a, b) for a, b in pairs if b < 4]
    giant = [(a - 5, b - 5) for a, b in pairs if a >= 5]
    assert small == [(a, b) for a in range(4) for b in range(a + 1, 4)]  # 4 members, window 4: every pair
    # 10 members, window 4: each member meets its next 3 neighbours only (linear, not 45 pairs)
    assert giant == [(a, b) for a in range(10) for b in range(a + 1, min(a + 4, 10))]
    assert len(pairs) == len(small) + len(giant)  # the singleton pairs with nobody
    i, j = bucket_pair_indices(runs, 4, first=7)  # rows before 7 were carried over: only pairs ending at >= 7
    assert sorted(zip(i.tolist(), j.tolist())) == [(a, b) for a, b in pairs if b >= 7]


def _band_batch(rows):
    return pa.RecordBatch.from_pylist(
        [{"doc_id": d, "band": band, "bucket": bucket, "sketch": sk} for d, band, bucket, sk in rows],
        schema=pa.schema([("doc_id", pa.string()), ("band", pa.int32()), ("bucket", pa.int64()),
                          ("sketch", pa.list_(pa.int64()))]),
    )


def test_bucket_scan_finds_the_same_pairs_when_buckets_span_arrow_batches():
    """A bucket cut by a batch boundary gives the same pairs (and no pair twice) as in one batch."""
    rng = np.random.default_rng(11)
    cfg = DedupConfig(max_bucket_size=4)
    base = rng.integers(0, 2**62, (1, 16), dtype=np.int64)
    rows = []
    for k in range(23):  # band 0: buckets of 3, 1 and 12 members; band 1: one bucket of 7; all sketches alike
        band, bucket = (0, 10) if k < 3 else (0, 11) if k < 4 else (0, 12) if k < 16 else (1, 10)
        sk = base[0].copy()
        sk[k % 16] ^= 1  # one differing nibble: estimate about 0.996
        rows.append((f"d{k:02d}", band, bucket, sk.tolist()))
    whole = pa.Table.from_batches(list(_bucket_scan_batches(iter([_band_batch(rows)]), cfg, 0.5)))
    cut = pa.Table.from_batches(list(_bucket_scan_batches(
        iter([_band_batch(rows[:2]), _band_batch(rows[2:9]), _band_batch(rows[9:10]), _band_batch(rows[10:])]), cfg, 0.5)))
    pairs = sorted(zip(whole["a"].to_pylist(), whole["b"].to_pylist()))
    assert sorted(zip(cut["a"].to_pylist(), cut["b"].to_pylist())) == pairs
    assert len(pairs) == 3 + (9 * 3 + 2 + 1) + (4 * 3 + 2 + 1)  # all 3 of the 3-bucket; windowed 12 and 7
    assert all(a < b for a, b in pairs)
    assert min(whole["similarity"].to_pylist()) > 0.98
    # a floor above every estimate keeps nothing
    assert list(_bucket_scan_batches(iter([_band_batch(rows)]), DedupConfig(max_bucket_size=4), 0.999)) == []


def test_triaged_pairs_skip_lone_rows_and_keep_bands_apart(spark):
    """Rows alone in their bucket are dropped before the scan; a bucket key that two bands share (the window
    partitions by key alone) still pairs only rows of the same band."""
    sketch = [7] * 16
    rows = [("d0", 0, 10), ("d1", 0, 10), ("d2", 1, 10), ("d3", 0, 11), ("d4", 2, 12), ("d5", 2, 12), ("d6", 2, 12),
            ("d7", 3, 13), ("d8", 3, 13), ("d8", 4, 14)]
    keys = spark.createDataFrame(
        [(d, band, bucket, i, sketch) for i, (d, band, bucket) in enumerate(rows)],
        "doc_id string, band int, bucket long, order long, sketch array<long>",
    ).repartition(3)
    got = {(r.a, r.b, r.similarity) for r in triaged_pairs(keys, DedupConfig(), 0.5).collect()}
    assert got == {("d0", "d1", 1.0), ("d4", "d5", 1.0), ("d4", "d6", 1.0), ("d5", "d6", 1.0), ("d7", "d8", 1.0)}


def _sequential_greedy(prio: dict[str, int], edges: set[tuple[str, str]]) -> dict[str, str]:
    """Reference: documents one by one from the best; removed when linked to a kept better one."""
    keeper: dict[str, str] = {}
    for doc in sorted(prio, key=prio.get):
        kept_better = [o for o in prio if keeper.get(o) == o and prio[o] < prio[doc]
                       and ((doc, o) in edges or (o, doc) in edges)]
        keeper[doc] = min(kept_better, key=prio.get) if kept_better else doc
    return keeper


def test_greedy_keepers_match_one_by_one_selection_on_random_graphs(spark):
    rng = random.Random(4)
    for trial in range(3):
        docs = [f"d{i:02d}" for i in range(24)]
        quality = {d: rng.random() for d in docs}
        edges = {(a, b) for a in docs for b in docs if a < b and rng.random() < 0.12}
        nodes = spark.createDataFrame([(d, quality[d], 100) for d in docs], "doc_id string, q double, n long")
        nodes = nodes.withColumn("prio", priority(F.lit(True), F.col("q"), F.col("n"), F.col("doc_id")))
        edge_df = spark.createDataFrame([(a, b, 0.9) for a, b in sorted(edges)], "a string, b string, similarity double")
        got = {r["doc_id"]: r["keeper_id"] for r in greedy_keepers(nodes, edge_df, CFG).collect()}
        order = {d: i for i, d in enumerate(sorted(docs, key=lambda d: -quality[d]))}
        assert got == _sequential_greedy(order, edges), trial
        # no removed document is left without a direct verified link to its keeper
        assert all(k == d or (min(d, k), max(d, k)) in edges for d, k in got.items())


def test_greedy_keepers_on_a_long_chain_and_under_a_round_cap(spark):
    """A path d0 - d1 - ... - d7 in keeper order needs one round per link (three convergence checks): every
    second document is removed. Capped at 3 rounds, the documents still undecided are kept, never removed."""
    docs = [f"d{i}" for i in range(8)]
    nodes = spark.createDataFrame([(d, 1.0 - i / 10, 100) for i, d in enumerate(docs)], "doc_id string, q double, n long")
    nodes = nodes.withColumn("prio", priority(F.lit(True), F.col("q"), F.col("n"), F.col("doc_id")))
    edge_df = spark.createDataFrame([(docs[i], docs[i + 1], 0.9) for i in range(7)], "a string, b string, similarity double")
    got = {r["doc_id"]: r["keeper_id"] for r in greedy_keepers(nodes, edge_df, CFG).collect()}
    assert got == {d: (docs[i - 1] if i % 2 else d) for i, d in enumerate(docs)}
    capped = {r["doc_id"]: r["keeper_id"] for r in greedy_keepers(nodes, edge_df, DedupConfig(greedy_max_rounds=3)).collect()}
    assert capped == {d: ("d0" if d == "d1" else d) for d in docs}


@pytest.mark.parametrize("clustering", ["greedy", "components"])
def test_quality_score_decides_keeper(spark, clustering):
    docs = spark.createDataFrame(
        [("a", ZH, "zh", len(ZH), 0.2), ("b", ZH.replace("党参", "人参", 1), "zh", len(ZH), 0.9),
         ("c", ZH + "。", "zh", len(ZH) + 1, None)],
        "doc_id string, text string, lang string, char_count long, quality_score double",
    )
    cfg = CFG.model_copy(update={"clustering": clustering})
    got = {r["doc_id"]: (r["cluster_id"], r["is_keeper"]) for r in dedup_documents(docs, cfg).assignments.collect()}
    assert got == {"a": ("b", False), "b": ("b", True), "c": ("b", False)}


def test_incremental_run_from_stored_lsh_columns_equals_one_from_whole_signatures(spark):
    """dedup_signatures keeps no whole signature; verify=signature and clustering=components recompute the
    previous documents' signatures from their kept text, so the assignments equal those computed with the
    whole signatures given."""
    from medcorpus.dedup.minhash import STORED_COLUMNS, with_signatures

    cfg = CFG.model_copy(update={"verify": "signature", "clustering": "components"})
    cols = "doc_id string, text string, lang string, char_count long, quality_score double"
    old = spark.createDataFrame([("p1", ZH, "zh", len(ZH), 0.9), ("p2", " ".join(CHAIN_A), "en", 900, 0.5)], cols)
    new = spark.createDataFrame(
        [("n1", ZH.replace("党参", "人参", 1), "zh", len(ZH), 0.1), ("n2", " ".join(CHAIN_B), "en", 900, 0.1),
         ("n3", " ".join(_words(7)), "en", 900, 0.1)], cols)
    first = dedup_documents(old, cfg)
    stored = first.signatures.select(*STORED_COLUMNS)
    assert "signature" not in stored.columns
    previous = stored.join(old.select("doc_id", "text", "lang"), on="doc_id")
    whole = with_signatures(old.select("doc_id", "text", "lang"), cfg).select("doc_id", "signature").join(
        previous, on="doc_id")

    def got(prev):
        return sorted(tuple(r) for r in dedup_documents(new, cfg, prev).assignments.select(
            "doc_id", "cluster_id", "reason", F.round("similarity", 6)).collect())

    from_stored = got(previous)
    assert from_stored == got(whole)
    assert dict((r[0], r[1]) for r in from_stored)["n1"] == "p1"
