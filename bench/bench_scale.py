"""Scaling: the whole document pipeline (ingest .. decontaminate) at two sizes, as a user would run it.

The corpus is built from every real source in ../shared/data (the labelled builder's readers), shuffled
like a web dump into gzip JSONL shards of about 7.2 M characters, with planted duplicates and noise:
8% edited copies (a few words or characters changed), 4% exact copies and 2% noise documents (symbol
spam, mojibake, a line repeated), in the same proportions at both sizes. When the real documents run out
(the larger size, >= 100 M characters, needs more than the sources hold), further documents are spliced
from two real documents of the same source (the first half of one, the second half of another), so they
are new documents, not extra duplicates. Nothing is copied into the repository.

Each size runs as its own ``medcorpus run SHARDS --until decontaminate`` process (its own driver JVM) in a
fresh warehouse, on 2 cores. Reported per stage: seconds at each size (from the run's ``run_log``), the
time ratio, the marginal throughput (extra characters / extra seconds / cores) and bytes written per input
byte (the stage's output tables over the uncompressed input). Fixed costs (JVM start, validation, the
report: the process wall time less the stage times) are reported apart. The driver's resident memory
(Python + JVM) is sampled from /proc.

    .venv/bin/python bench/run.py --only scale                         # 25 M and 100 M characters
    .venv/bin/python bench/run.py --only scale --scale-sizes 1e6,4e6   # a quick check
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDCORPUS_SHARED_DATA", REPO.parent / "shared" / "data"))
WORK = Path(os.environ.get("MEDCORPUS_BENCH_DIR", "/tmp/medcorpus-bench"))
SIZES = (25_000_000, 100_000_000)  # characters
QUICK_SIZES = (1_000_000, 4_000_000)
CORES = 2
SHARD_CHARS = 7_200_000
EDITED_SHARE, EXACT_SHARE, NOISE_SHARE = 0.08, 0.04, 0.02
STAGES = ("ingest", "normalize", "filter", "classify", "dedup", "decontaminate")
#: the tables each stage writes (for bytes written per input byte)
STAGE_TABLES = {
    "ingest": ("raw_documents", "quarantine"),
    "normalize": ("documents",),
    "filter": ("clean_documents", "filtered_out"),
    "classify": ("scored_documents",),
    "dedup": ("dedup_clusters", "unique_documents", "dedup_signatures", "dedup_stats"),
    "decontaminate": ("contamination_hits",),  # it also rewrites unique_documents (counted under dedup)
}


def real_records(per_source_cap: int) -> list[dict[str, str]]:
    """Records of every real source in ../shared/data (the labelled builder's readers: toyhom, huatuo,
    TCM books, MedQuAD, PubMedQA, laws, news, reviews, classical text, Brown ...), as the raw text the
    sources hold. At most ``per_source_cap`` per source, picked and ordered by a stable hash."""
    from medcorpus.classify.labelled import SOURCES, stable_hash

    records = []
    for spec in SOURCES:
        rows = [(stable_hash("scale", spec.name, str(i)), group, text)
                for i, (group, text) in enumerate(spec.reader(SHARED)) if text and text.strip()]
        for _, group, text in sorted(rows)[:per_source_cap]:
            records.append({"source": spec.name, "group": group, "text": text})
    records.sort(key=lambda r: stable_hash("order", r["source"], r["group"], r["text"][:200]))
    return records


def _edited(text: str, rng) -> str:  # type: ignore[no-untyped-def]
    """A near copy: a few words (space-separated text) or characters (Chinese) replaced."""
    words = text.split(" ")
    if len(words) > 20:
        for _ in range(max(1, len(words) // 40)):
            words[rng.randrange(len(words))] = rng.choice(("the", "and", "patient", "treatment"))
        return " ".join(words)
    chars = list(text)
    for _ in range(max(1, len(chars) // 40)):
        chars[rng.randrange(len(chars))] = rng.choice("的是在了和有病人医生治疗")
    return "".join(chars)


def _noise(rng) -> str:  # type: ignore[no-untyped-def]
    kind = rng.randrange(3)
    if kind == 0:
        return " ".join("".join(rng.choice("#@*|★■◆▲") for _ in range(rng.randrange(3, 12))) for _ in range(200))
    if kind == 1:
        return "锟斤拷烫烫烫" * 50 + "\u00c3\u00a9\u00e2\u20ac\u2122" * 100
    line = rng.choice(("点击这里领取优惠券，限时抢购！", "Buy cheap pills online now, best price!!!"))
    return "\n".join([line] * 60)


def corpus_records(pool: list[dict[str, str]], target_chars: int, seed: int = 7) -> list[dict[str, str]]:
    """About ``target_chars`` characters of web-like records: the real documents in a fixed shuffled order,
    then documents spliced from two real ones of the same source, plus planted edited copies, exact copies
    and noise in fixed shares; shuffled."""
    import random

    rng = random.Random(seed)
    order = list(pool)
    random.Random(seed + 1).shuffle(order)
    by_source: dict[str, list[str]] = {}
    for r in order:
        by_source.setdefault(r["source"], []).append(r["text"])
    sources = sorted(by_source)
    originals_chars = target_chars * (1 - EDITED_SHARE - EXACT_SHARE - NOISE_SHARE)
    out: list[dict[str, str]] = []
    n = i = 0
    while n < originals_chars:
        if i < len(order):
            rec = {"source": order[i]["source"], "text": order[i]["text"]}
        else:  # the real documents ran out: a new document from halves of two of one source
            texts = by_source[sources[i % len(sources)]]
            a, b = texts[rng.randrange(len(texts))], texts[rng.randrange(len(texts))]
            rec = {"source": sources[i % len(sources)], "text": a[: len(a) // 2] + b[len(b) // 2 :]}
        if rec["text"].strip():
            out.append(rec)
            n += len(rec["text"])
        i += 1
    originals = len(out)
    for _ in range(int(originals * EDITED_SHARE)):
        r = out[rng.randrange(originals)]
        out.append({"source": r["source"], "text": _edited(r["text"], rng)})
    for _ in range(int(originals * EXACT_SHARE)):
        out.append(dict(out[rng.randrange(originals)]))
    for _ in range(int(originals * NOISE_SHARE)):
        out.append({"source": "noise", "text": _noise(rng)})
    rng.shuffle(out)
    return out


def build_corpus(records: list[dict[str, str]], out: Path) -> dict[str, int]:
    """gzip JSONL shards of about SHARD_CHARS characters each: files, gzip bytes, uncompressed bytes, chars."""
    import gzip
    import json

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    figures = {"files": 0, "gzip_bytes": 0, "input_bytes": 0, "chars": 0, "records": len(records)}
    lines: list[str] = []
    shard_chars = 0

    def flush() -> None:
        data = "".join(lines).encode("utf-8")
        path = out / f"part-{figures['files']:05d}.jsonl.gz"
        with gzip.open(path, "wb", compresslevel=6) as fh:
            fh.write(data)
        figures["gzip_bytes"] += path.stat().st_size
        figures["input_bytes"] += len(data)
        figures["files"] += 1

    for i, r in enumerate(records):
        lines.append(json.dumps({"id": f"web-{i:08d}", "source": r["source"], "text": r["text"]}, ensure_ascii=False) + "\n")
        shard_chars += len(r["text"])
        figures["chars"] += len(r["text"])
        if shard_chars >= SHARD_CHARS:
            flush()
            lines, shard_chars = [], 0
    if lines:
        flush()
    return figures


def table_bytes(warehouse: Path) -> dict[str, int]:
    """Bytes of the data files of every table in the warehouse (Delta's parquet files, also those a later commit
    removed but VACUUM has not deleted yet; not its log)."""
    out = {}
    for table in sorted(p for p in warehouse.iterdir() if p.is_dir()):
        out[table.name] = sum(f.stat().st_size for f in table.rglob("*.parquet"))
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _java_children(pid: int) -> list[int]:
    """The driver JVM(s) started by the Python driver (direct children running java)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and "java" in (entry / "comm").read_text():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


class DriverMemory:
    """Samples VmRSS (and VmHWM, the kernel's own peak) of the Python driver and its JVM."""

    def __init__(self, pid: int, every: float = 0.25):
        self.pid, self.every = pid, every
        self.peak_kb = {"python": 0, "jvm": 0, "total": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> DriverMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            py = max(_status_kb(self.pid, "VmRSS"), _status_kb(self.pid, "VmHWM"))
            jvm = sum(max(_status_kb(j, "VmRSS"), _status_kb(j, "VmHWM")) for j in _java_children(self.pid))
            self.peak_kb["python"] = max(self.peak_kb["python"], py)
            self.peak_kb["jvm"] = max(self.peak_kb["jvm"], jvm)
            self.peak_kb["total"] = max(self.peak_kb["total"], py + jvm)
            self._stop.wait(self.every)


def run_scale(corpus: Path, warehouse: Path, run_id: str, driver_memory: str) -> dict[str, float]:
    if warehouse.exists():
        shutil.rmtree(warehouse)
    cmd = [
        sys.executable, "-m", "medcorpus.cli", "run", str(corpus), "--warehouse", str(warehouse),
        "--run-id", run_id, "--set", f"spark.master=local[{CORES}]", "--set", f"spark.driver_memory={driver_memory}",
    ]
    until = os.environ.get("MEDCORPUS_BENCH_UNTIL", "decontaminate")  # the document pipeline; the dataset stages need SFT sources
    if until:
        cmd += ["--until", until]
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    t0 = time.perf_counter()
    log_path = warehouse.parent / f"{run_id}.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        with DriverMemory(proc.pid) as mem:
            rc = proc.wait()
    wall = time.perf_counter() - t0
    out: dict[str, object] = {"wall_s": round(wall, 2), "load_avg_1m_after": round(os.getloadavg()[0], 1),
                              **{f"driver_peak_{k}_mb": round(v / 1024, 1) for k, v in mem.peak_kb.items()}}
    if rc != 0:  # a later stage failed: keep the figures of the stages that finished, say which one broke
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        out["error"] = f"rc={rc}: " + " | ".join(tail)[-600:]
        print(f"  bench run {run_id} failed (rc={rc}); log: {log_path}", file=sys.stderr, flush=True)
    return out


def stage_figures(spark, warehouse: Path, run_id: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    log = spark.read.format("delta").load(str(warehouse / "run_log")).filter(F.col("run_id") == run_id)
    stages = {r["stage"]: {"seconds": r["seconds"], "rows_in": r["rows_in"], "rows_out": r["rows_out"]}
              for r in log.orderBy("started_at").collect()}
    chars = (spark.read.format("delta").load(str(warehouse / "raw_documents"))
             .agg(F.count(F.lit(1)).alias("docs"), F.sum(F.length("text")).alias("chars")).first())
    return {"stages": stages, "docs": int(chars["docs"]), "chars": int(chars["chars"] or 0)}


def _save_partial(args, results: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    """Write the sizes done so far into the results file, so a long run interrupted late keeps them."""
    import json

    out = Path(getattr(args, "out", "") or REPO / "bench" / "results.json")
    merged = json.loads(out.read_text()) if out.exists() else {}
    merged["scale"] = {**results, "partial": True}
    out.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n")


def run(spark, args) -> dict[str, object]:  # type: ignore[no-untyped-def]
    if not SHARED.exists():
        return {"skipped": f"real dataset not available: {SHARED}"}
    given = getattr(args, "scale_sizes", None)
    sizes = tuple(int(float(x)) for x in given.split(",")) if given else (QUICK_SIZES if getattr(args, "quick", False) else SIZES)
    driver_memory = os.environ.get("MEDCORPUS_BENCH_DRIVER_MEMORY", "4g")  # the default config's
    pool = real_records(int(os.environ.get("MEDCORPUS_BENCH_PER_SOURCE", 10**9)))
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "corpus": {"real_records": len(pool), "real_chars": sum(len(r["text"]) for r in pool),
                   "sources": sorted({r["source"] for r in pool}), "shard_chars": SHARD_CHARS,
                   "planted": {"edited_copies": EDITED_SHARE, "exact_copies": EXACT_SHARE, "noise": NOISE_SHARE}},
        "cores": CORES, "until": os.environ.get("MEDCORPUS_BENCH_UNTIL", "decontaminate"),
        "driver_memory": driver_memory, "sizes": {},
    }
    rows: dict[int, dict[str, object]] = {}
    for size in sizes:
        corpus = WORK / f"corpus-{size}"
        built = build_corpus(corpus_records(pool, size), corpus)
        run_id = f"bench-{size}"
        warehouse = WORK / f"wh-{size}"
        print(f"  scale {size / 1e6:g}M chars: {built['files']} shards, {built['gzip_bytes'] / 1e6:.1f} MB gzip",
              file=sys.stderr, flush=True)
        load_before = round(os.getloadavg()[0], 1)
        proc = run_scale(corpus, warehouse, run_id, driver_memory)
        figs = stage_figures(spark, warehouse, run_id)
        stage_s = {name: round(s["seconds"], 2) for name, s in figs["stages"].items()}  # type: ignore[union-attr]
        total = round(sum(stage_s.values()), 2)
        tables = table_bytes(warehouse)
        row = {
            **built,
            "docs_ingested": figs["docs"],
            "stage_seconds": stage_s,
            "stages_total_s": total,
            "process_wall_s": proc["wall_s"],
            "fixed_s": round(float(proc["wall_s"]) - total, 2),  # JVM start, validation, report, run log
            "chars_per_s_per_core": round(built["chars"] / total / CORES) if total else None,
            "table_bytes": tables,
            "warehouse_bytes_per_input_byte": round(sum(tables.values()) / built["input_bytes"], 3),
            "stage_bytes_per_input_byte": {
                stage: round(sum(tables.get(t, 0) for t in names) / built["input_bytes"], 3)
                for stage, names in STAGE_TABLES.items()
            },
            **{k: v for k, v in proc.items() if k.startswith("driver_peak")},
            "load_avg_1m": [load_before, proc["load_avg_1m_after"]],
            **({"error": proc["error"]} if "error" in proc else {}),
        }
        rows[size] = row
        results["sizes"][str(size)] = row  # type: ignore[index]
        _save_partial(args, results)
        print(f"  scale {size / 1e6:g}M: {total}s in stages, {row['fixed_s']}s fixed", file=sys.stderr, flush=True)
        shutil.rmtree(corpus, ignore_errors=True)
    small, large = rows[sizes[0]], rows[sizes[-1]]
    extra_chars = large["chars"] - small["chars"]  # type: ignore[operator]
    per_stage = {}
    for stage in [*STAGES, "all stages"]:
        if stage == "all stages":
            a, b = small["stages_total_s"], large["stages_total_s"]
        else:
            a, b = small["stage_seconds"].get(stage), large["stage_seconds"].get(stage)  # type: ignore[union-attr]
        if a is None or b is None:
            continue
        per_stage[stage] = {
            "seconds": [a, b],
            "time_ratio": round(b / a, 2) if a else None,
            "marginal_M_chars_per_s_per_core": round(extra_chars / (b - a) / CORES / 1e6, 3) if b > a else None,
            "bytes_per_input_byte": large["stage_bytes_per_input_byte"].get(stage)  # type: ignore[union-attr]
            if stage != "all stages" else large["warehouse_bytes_per_input_byte"],
        }
    results["per_stage"] = per_stage
    results["data_ratio"] = round(large["chars"] / small["chars"], 2)  # type: ignore[operator]
    results["fixed_seconds"] = [small["fixed_s"], large["fixed_s"]]
    results["driver_memory_flat"] = large["driver_peak_total_mb"] <= 1.5 * small["driver_peak_total_mb"]  # type: ignore[operator]
    return results
