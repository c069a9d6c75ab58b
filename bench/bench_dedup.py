"""Dedup speed and quality: medcorpus (Spark, this session's cores; default greedy clustering and the
connected-components mode) beside datasketch's MinHashLSH (single process) and datatrove's MinHash pipeline
(LocalPipelineExecutor, same number of workers), side by side on two real-corpus samples
(bench/dedup_corpus.py): the core sample (Toyhom, Huatuo, MedQuAD and edited copies: ~15k documents, ~7M
characters, where Spark's fixed cost per job dominates) and the mixed corpus (the core sample plus ~30M
characters from every other source in ../shared/data and edited copies: ~73k documents, ~40M characters);
then medcorpus alone on 1/8, 1/4, 1/2 and all of the mixed corpus (1x/2x/4x/8x).

Peers run with: datasketch at its defaults (``MinHash(num_perm=128, seed=1)``, ``MinHashLSH(threshold=0.7)``),
single process; datatrove's MinhashConfig defaults (5-grams, 14 buckets x 8 hashes). ``compare`` times
medcorpus's transforms inside the bench's warm session (no Delta I/O, no stats) against datasketch's
in-process loop; ``processes`` is the honest figure: ``medcorpus dedup`` as a fresh process (JVM start,
Delta reads and writes, stats, validation) against datasketch as a whole process on the mixed corpus
(>= 25M characters), with the issue's two quality figures for both.

Quality is measured against the brute-force exact Jaccard of medcorpus's shingles (>= threshold):
``pairs`` = verified duplicate pairs (medcorpus) or LSH candidate pairs (datasketch); ``cluster_pairs`` =
every pair of documents put in the same cluster (all three tools; datatrove exposes only clusters).
``detected_pair_f1`` compares the pairs each tool reports as duplicates (for datatrove its cluster pairs), the
F1 the speed target is judged at. medcorpus's clusters are stars around a keeper (a removed document is a
verified duplicate of its keeper, not of everything transitively linked), so its ``cluster_pairs`` recall is
low by design where template families form chains.

    .venv/bin/python bench/run.py --only dedup            # full sizes
    .venv/bin/python bench/run.py --only dedup --quick    # smoke
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import struct
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dedup_corpus import build_corpus, build_mixed_corpus, lang_of, pair_scores, true_pairs  # noqa: E402

SHARED = Path(os.environ.get("MEDCORPUS_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
DATASKETCH_NUM_PERM = 128  # datasketch's default


def _cluster_pairs(labels: dict[str, str]) -> set[tuple[str, str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for doc, label in labels.items():
        groups[label].append(doc)
    return {(a, b) for g in groups.values() for a, b in itertools.combinations(sorted(g), 2)}


def _union_find(ids: list[str], pairs: set[tuple[str, str]]) -> dict[str, str]:
    parent = {i: i for i in ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {i: find(i) for i in ids}


def run_medcorpus(spark, corpus, cfg, workdir: Path) -> dict:
    from medcorpus.dedup.minhash import dedup_documents

    src = workdir / "corpus.parquet"
    if not src.exists():
        import pandas as pd

        df = pd.DataFrame(corpus, columns=["doc_id", "source", "text"])
        df["lang"] = [lang_of(t) for t in df["text"]]
        df["char_count"] = df["text"].str.len()
        df.to_parquet(src, index=False)
    t0 = time.perf_counter()
    docs = spark.read.parquet(str(src)).repartition(spark.sparkContext.defaultParallelism * 4)
    result = dedup_documents(docs, cfg)
    out = workdir / "assignments.parquet"
    result.assignments.write.mode("overwrite").parquet(str(out))
    seconds = time.perf_counter() - t0
    edges = {(r["a"], r["b"]) for r in result.edges.select("a", "b").collect()}  # small: the duplicates
    labels = {r["doc_id"]: r["cluster_id"] for r in spark.read.parquet(str(out)).select("doc_id", "cluster_id").collect()}
    removed = sum(1 for d, c in labels.items() if d != c)
    return {"seconds": seconds, "pairs": edges, "labels": labels, "removed": removed}


def run_datasketch(corpus, cfg) -> dict:
    from datasketch import MinHash, MinHashLSH

    from medcorpus.dedup.minhash import _SPACE
    from medcorpus.text.ngrams import WORD as _WORD

    t0 = time.perf_counter()
    # datasketch at its defaults (128 permutations; the point: 256 made it look 2x slower than it is)
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=DATASKETCH_NUM_PERM)
    sigs = {}
    for doc_id, _, text in corpus:
        if lang_of(text) == "zh":
            s = _SPACE.sub("", text.lower())
            grams = {s[i : i + cfg.zh_shingle_chars] for i in range(max(1, len(s) - cfg.zh_shingle_chars + 1))}
        else:
            w = _WORD.findall(text.lower())
            grams = {" ".join(w[i : i + cfg.en_shingle_words]) for i in range(max(1, len(w) - cfg.en_shingle_words + 1))}
        m = MinHash(num_perm=DATASKETCH_NUM_PERM, seed=1)
        m.update_batch([g.encode("utf-8") for g in grams])
        lsh.insert(doc_id, m)
        sigs[doc_id] = m
    pairs = set()
    for doc_id, m in sigs.items():
        for other in lsh.query(m):
            if other != doc_id:
                pairs.add((min(doc_id, other), max(doc_id, other)))
    seconds = time.perf_counter() - t0
    labels = _union_find([d for d, _, _ in corpus], pairs)
    return {"seconds": seconds, "pairs": pairs, "labels": labels, "removed": sum(1 for d, c in labels.items() if d != c)}


def run_datatrove(corpus, cfg, workdir: Path, workers: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader

    base = workdir / "datatrove"
    shutil.rmtree(base, ignore_errors=True)
    (base / "input").mkdir(parents=True)
    shards = [corpus[i::workers] for i in range(workers)]
    for i, shard in enumerate(shards):
        with (base / "input" / f"{i:05d}.jsonl").open("w", encoding="utf-8") as fh:
            for doc_id, _, text in shard:
                fh.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
    mcfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)  # datatrove's defaults (~0.7-0.75)
    t0 = time.perf_counter()
    reader = JsonlReader(str(base / "input"))
    LocalPipelineExecutor(
        pipeline=[reader, MinhashDedupSignature(output_folder=str(base / "sigs"), config=mcfg)],
        tasks=workers, workers=workers, logging_dir=str(base / "logs/sigs"),
    ).run()
    LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(input_folder=str(base / "sigs"), output_folder=str(base / "buckets"), config=mcfg)],
        tasks=mcfg.num_buckets, workers=workers, logging_dir=str(base / "logs/buckets"),
    ).run()
    LocalPipelineExecutor(
        pipeline=[MinhashDedupCluster(input_folder=str(base / "buckets"), output_folder=str(base / "remove"),
                                      config=mcfg, save_cluster_id=True)],
        tasks=1, workers=1, logging_dir=str(base / "logs/cluster"),
    ).run()
    seconds = time.perf_counter() - t0
    labels = {d: d for d, _, _ in corpus}
    for path in sorted((base / "remove").glob("*.clusters")):
        shard = shards[int(path.name.split(".")[0])]
        data = path.read_bytes()
        for doc, cluster in struct.iter_unpack("<2I", data):
            labels[shard[doc][0]] = f"c{cluster}"
    removed = sum(len(p.read_bytes()) // 4 for p in (base / "remove").glob("*.remove"))
    return {"seconds": seconds, "pairs": None, "labels": labels, "removed": removed}


def _figures(name: str, res: dict, corpus, truth, chars: int) -> dict:
    out = {
        "seconds": round(res["seconds"], 2),
        "docs_per_s": round(len(corpus) / res["seconds"], 1),
        "chars_per_s": round(chars / res["seconds"]),
        "removed": res["removed"],
        "cluster_pairs": pair_scores(_cluster_pairs(res["labels"]), truth),
    }
    if res["pairs"] is not None:
        out["pairs"] = pair_scores(res["pairs"], truth)
    print(f"  {name}: {out}", file=sys.stderr, flush=True)
    return out


def _first_chars(docs: list[tuple[str, str, str]], budget: int) -> list[tuple[str, str, str]]:
    """The leading documents whose text adds up to ``budget`` characters (at least one)."""
    out, n = [], 0
    for doc in docs:
        if out and n + len(doc[2]) > budget:
            break
        out.append(doc)
        n += len(doc[2])
    return out


def compare(spark, corpus, cfg, work: Path, cores: int, with_components: bool) -> dict:
    """medcorpus (first run after a small warm-up, then the same corpus again), optionally its
    connected-components mode, datasketch and datatrove, one after the other on the same corpus."""
    chars = sum(len(t) for _, _, t in corpus)
    t0 = time.perf_counter()
    truth = true_pairs(corpus, cfg)
    out: dict = {"docs": len(corpus), "chars": chars, "true_pairs": len(truth),
                 "truth_seconds": round(time.perf_counter() - t0, 1)}
    work.mkdir()
    for name in ("warm", "cmp", "cmp_again", "cmp_components"):
        (work / name).mkdir()
    run_medcorpus(spark, corpus[:200], cfg, work / "warm")  # Python workers and JIT warm-up, untimed
    first = run_medcorpus(spark, corpus, cfg, work / "cmp")
    med = _figures("medcorpus", first, corpus, truth, chars)
    # the same run again: what a long job sees once the JVM has compiled the hot paths and every Python
    # worker has loaded numba's kernels (the 200-document warm-up reaches only some of them)
    again = run_medcorpus(spark, corpus, cfg, work / "cmp_again")
    if again["labels"] != first["labels"]:
        raise AssertionError("dedup is not deterministic: a second run on the same corpus clustered differently")
    med["seconds_second_run"] = round(again["seconds"], 2)
    out["medcorpus"] = med
    if with_components:
        components = cfg.model_copy(update={"clustering": "components"})
        comp = _figures("medcorpus_components", run_medcorpus(spark, corpus, components, work / "cmp_components"),
                        corpus, truth, chars)
        out["medcorpus_components"] = comp
        out["greedy_vs_components"] = round(comp["seconds"] / med["seconds"], 2)
    ds = _figures("datasketch", run_datasketch(corpus, cfg), corpus, truth, chars)
    out["datasketch"] = ds
    try:
        dt = _figures("datatrove", run_datatrove(corpus, cfg, work, cores), corpus, truth, chars)
        out["datatrove"] = dt
        out["speedup_vs_datatrove"] = round(dt["seconds"] / med["seconds"], 2)
        out["speedup_vs_datatrove_second_run"] = round(dt["seconds"] / med["seconds_second_run"], 2)
    except ImportError as err:
        out["datatrove"] = f"not installed: {err}"
    # F1 of the duplicate pairs each tool reports: medcorpus's verified pairs, datasketch's LSH candidates,
    # and for datatrove (which reports clusters only, built from chains of bucket neighbours) its cluster pairs
    detected = {"medcorpus": med["pairs"]["f1"], "datasketch": ds["pairs"]["f1"]}
    if isinstance(out.get("datatrove"), dict):
        detected["datatrove"] = out["datatrove"]["cluster_pairs"]["f1"]
    out["detected_pair_f1"] = detected
    out["f1_equal_or_better"] = all(detected["medcorpus"] >= v for v in detected.values())
    out["speedup_vs_datasketch"] = round(ds["seconds"] / med["seconds"], 2)
    out["speedup_vs_datasketch_second_run"] = round(ds["seconds"] / med["seconds_second_run"], 2)
    print(f"  ratios: { {k: v for k, v in out.items() if k.startswith('speedup')} }", file=sys.stderr, flush=True)
    return out


def _scored_documents_table(spark, corpus, root: Path) -> None:
    """A warehouse holding ``corpus`` as scored_documents (setup of the process comparison, not timed)."""
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from medcorpus.core.warehouse import Warehouse, table_spec

    pdf = pd.DataFrame(corpus, columns=["doc_id", "source", "text"])
    pdf["lang"] = [lang_of(t) for t in pdf["text"]]
    pdf["char_count"] = pdf["text"].str.len()
    df = spark.createDataFrame(pdf)
    defaults = {T.StringType: F.lit("bench"), T.BooleanType: F.lit(False), T.TimestampType: F.current_timestamp()}
    cols = []
    for f in table_spec("scored_documents").schema.fields:
        if f.name in df.columns:
            col = F.col(f.name)
        elif f.nullable:
            col = F.lit(None)
        elif type(f.dataType) in defaults:
            col = defaults[type(f.dataType)]
        elif isinstance(f.dataType, (T.MapType, T.ArrayType)):
            col = F.create_map() if isinstance(f.dataType, T.MapType) else F.array()
        else:
            col = F.lit(0.5 if f.name == "quality_score" else 0)
        cols.append(col.cast(f.dataType).alias(f.name))
    wh = Warehouse(spark, str(root), run_id="bench-setup", config_hash="bench")
    wh.append_rows("scored_documents", df.select(cols), stage="classify")


def _removal_quality(labels: dict[str, str], truth: set[tuple[str, str]]) -> dict:
    """The issue's two quality figures: the share of removed documents that are not a true near duplicate
    (Jaccard >= threshold by brute force) of the document kept in their place, and the share of true pairs
    of which both documents survive."""
    removed = [(d, k) for d, k in labels.items() if d != k]
    wrong = sum(1 for d, k in removed if (min(d, k), max(d, k)) not in truth)
    survive = sum(1 for a, b in truth if labels.get(a, a) == a and labels.get(b, b) == b)
    return {"removed": len(removed), "removed_below_threshold_share": round(wrong / max(1, len(removed)), 4),
            "true_pairs_surviving_share": round(survive / max(1, len(truth)), 4)}


def compare_processes(spark, corpus, cfg, work: Path, cores: int) -> dict:
    """``medcorpus dedup`` and datasketch each as a whole process on the same corpus, wall time as a user
    sees it. medcorpus: a fresh ``python -m medcorpus.cli dedup`` (its JVM start, the Delta read of
    scored_documents, MinHash, LSH, verification, clustering, the writes of dedup_clusters,
    unique_documents, dedup_signatures and dedup_stats, GX validation and the run log) with
    ``spark.master=local[cores]`` and the default config (256 permutations, 32x5 bands, exact
    verification, greedy clustering). datasketch: its defaults (``MinHash(num_perm=128)``,
    ``MinHashLSH(threshold=0.7)``), one Python process reading the same documents from JSONL, union-find
    over the LSH candidate pairs, its labels written to JSONL (bench/dedup_datasketch_process.py)."""
    import subprocess

    chars = sum(len(t) for _, _, t in corpus)
    truth = true_pairs(corpus, cfg)
    work.mkdir(parents=True, exist_ok=True)
    wh_root = work / "warehouse"
    _scored_documents_table(spark, corpus, wh_root)
    jsonl = work / "corpus.jsonl"
    with jsonl.open("w", encoding="utf-8") as fh:
        for doc_id, _, text in corpus:
            fh.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    cmd = [sys.executable, "-m", "medcorpus.cli", "dedup", "--warehouse", str(wh_root), "--run-id", "bench-dedup",
           "--set", f"spark.master=local[{cores}]"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=HERE.parent, env=env, capture_output=True, text=True)
    med_s = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": f"medcorpus dedup rc={proc.returncode}: {proc.stderr[-600:]}"}
    from pyspark.sql import functions as F

    log = spark.read.format("delta").load(str(wh_root / "run_log")).filter(F.col("run_id") == "bench-dedup")
    stage_s = {r["stage"]: r["seconds"] for r in log.collect()}
    labels = {r["doc_id"]: r["cluster_id"]
              for r in spark.read.format("delta").load(str(wh_root / "dedup_clusters")).select("doc_id", "cluster_id").collect()}
    sizes = {name: sum(f.stat().st_size for f in (wh_root / name).rglob("*.parquet"))
             for name in ("scored_documents", "dedup_signatures", "unique_documents", "dedup_clusters")}
    out_ds = work / "datasketch.jsonl"
    t0 = time.perf_counter()
    ds_proc = subprocess.run([sys.executable, str(HERE / "dedup_datasketch_process.py"), str(jsonl), str(out_ds)],
                             capture_output=True, text=True)
    ds_s = time.perf_counter() - t0
    result: dict = {
        "docs": len(corpus), "chars": chars, "true_pairs": len(truth), "cores": cores,
        "medcorpus": {"run_with": f"medcorpus dedup, default config, spark.master=local[{cores}], fresh process",
                      "process_seconds": round(med_s, 2), "stage_seconds": stage_s,
                      "table_bytes": sizes, **_removal_quality(labels, truth)},
    }
    if ds_proc.returncode != 0:
        result["datasketch"] = {"error": ds_proc.stderr[-600:]}
        return result
    ds_labels = {}
    with out_ds.open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            ds_labels[r["id"]] = r["cluster"]
    result["datasketch"] = {"run_with": "datasketch MinHash(num_perm=128) + MinHashLSH(threshold=0.7), its defaults; "
                                        "one Python process, union-find over candidates",
                            "process_seconds": round(ds_s, 2), **_removal_quality(ds_labels, truth)}
    result["speedup_vs_datasketch_process"] = round(ds_s / med_s, 2)
    print(f"  processes: medcorpus {med_s:.1f}s, datasketch {ds_s:.1f}s", file=sys.stderr, flush=True)
    return result


def run(spark, args) -> dict:
    from medcorpus.core.config import DedupConfig

    cfg = DedupConfig()
    compare_docs = 800 if args.quick else 20000  # as large as the four sources allow (~15k after exact dups)
    mixed_chars = 300_000 if args.quick else 30_000_000
    cores = spark.sparkContext.defaultParallelism
    work = Path(tempfile.mkdtemp(prefix="bench_dedup_"))
    results: dict = {"config": cfg.model_dump(), "cores": cores}
    try:
        # side by side on one corpus: the core sample (four medical sources, ~15k documents, ~7M characters)
        print("  compare: core sample", file=sys.stderr, flush=True)
        results["compare"] = compare(spark, build_corpus(SHARED, compare_docs), cfg, work / "core", cores, True)
        # ... and on the core sample plus ~30M characters of every other source (~73k documents, ~40M characters)
        print("  compare: mixed corpus", file=sys.stderr, flush=True)
        mixed = build_mixed_corpus(SHARED, mixed_chars, core_docs=compare_docs)
        results["compare_mixed"] = compare(spark, mixed, cfg, work / "mixed", cores, False)
        # the figures a user would see: each tool as a whole process (reads, writes, stats, JVM start)
        print("  compare: whole processes on the mixed corpus", file=sys.stderr, flush=True)
        results["processes"] = compare_processes(spark, mixed, cfg, work / "processes", cores)

        # scaling: 1/8, 1/4, 1/2 and all of the mixed corpus (documents in a fixed random order, cut by characters)
        mixed = list(mixed)
        random.Random(3).shuffle(mixed)
        total = sum(len(t) for _, _, t in mixed)
        scaling = {}
        for factor in (1, 2, 4, 8):
            corpus = _first_chars(mixed, total * factor // 8)
            chars = sum(len(t) for _, _, t in corpus)
            d = work / f"x{factor}"
            d.mkdir()
            res = run_medcorpus(spark, corpus, cfg, d)
            scaling[f"{factor}x"] = {"docs": len(corpus), "chars": chars, "seconds": round(res["seconds"], 2),
                                     "docs_per_s": round(len(corpus) / res["seconds"], 1),
                                     "chars_per_s": round(chars / res["seconds"])}
            print(f"  scale {factor}x: {scaling[f'{factor}x']}", file=sys.stderr, flush=True)
        scaling["time_ratio_8x_1x"] = round(scaling["8x"]["seconds"] / scaling["1x"]["seconds"], 2)
        results["scaling"] = scaling
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results
