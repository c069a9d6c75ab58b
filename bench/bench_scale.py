"""Scaling: the pipeline on a corpus built from ../shared/data at 1x, 2x, 4x and 8x size.

Each size runs as its own ``medcorpus run`` process (its own driver JVM), so the memory figures of one
size do not inherit the heap of the previous one. While it runs, the driver's resident memory — the
Python driver plus its JVM (in local mode the JVM also hosts the executor threads; Python workers are
executor-side and not counted) — is sampled from /proc. Stage timings come from the run's ``run_log``
rows, read back with the shared session after each run.

The corpus is built from the real sources in ../shared/data (medical and general, Chinese and English,
read by the labelled builder's readers): the records are ordered by a stable hash and cut into 8
disjoint slices; size Nx is the first N slices, written as JSONL shards under /tmp. Nothing is copied
into the repository.
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
SCALES = (1, 2, 4, 8)
CORES = 2
SHARD_ROWS = 2_000


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


def build_corpus(slices: list[list[dict[str, str]]], scale: int, out: Path) -> tuple[int, int, int]:
    """The first ``scale`` disjoint slices as JSONL shards of SHARD_ROWS; returns (files, bytes, records).

    Slices are disjoint, so 8x is eight times as many different documents, not eight copies."""
    import json

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rows = [r for part in slices[:scale] for r in part]
    nbytes = files = 0
    for i in range(0, len(rows), SHARD_ROWS):
        path = out / f"part-{i // SHARD_ROWS:05d}.jsonl"
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[i: i + SHARD_ROWS]).encode("utf-8")
        path.write_bytes(data)
        nbytes += len(data)
        files += 1
    return files, nbytes, len(rows)


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
    quick = bool(getattr(args, "quick", False))
    per_source = int(os.environ.get("MEDCORPUS_BENCH_PER_SOURCE", 60 if quick else 400))
    scales = (1, 2) if quick else SCALES
    driver_memory = "1g"
    records = real_records(per_source)
    n_slices = max(scales)
    slices = [records[i::n_slices] for i in range(n_slices)]
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "corpus": {"records_total": len(records), "per_source_cap": per_source, "slices": n_slices,
                   "records_per_slice": len(slices[0]), "sources": sorted({r["source"] for r in records})},
        "cores": CORES,
        "until": os.environ.get("MEDCORPUS_BENCH_UNTIL", "decontaminate"),
        "driver_memory": driver_memory,
        "scales": {},
    }
    rows = {}
    for scale in scales:
        corpus = WORK / f"corpus-{scale}x"
        files, nbytes, nrecords = build_corpus(slices, scale, corpus)
        run_id = f"bench-{scale}x"
        warehouse = WORK / f"wh-{scale}x"
        print(f"  scale {scale}x: {files} files, {nbytes / 1e6:.1f} MB", file=sys.stderr, flush=True)
        load_before = round(os.getloadavg()[0], 1)
        proc = run_scale(corpus, warehouse, run_id, driver_memory)
        figs = stage_figures(spark, warehouse, run_id)
        stage_s = {name: round(s["seconds"], 2) for name, s in figs["stages"].items()}  # type: ignore[union-attr]
        total = round(sum(stage_s.values()), 2)
        row = {
            "files": files,
            "bytes": nbytes,
            "records": nrecords,
            "docs": figs["docs"],
            "chars": figs["chars"],
            "stage_seconds": stage_s,
            "stages_total_s": total,
            "process_wall_s": proc["wall_s"],
            "docs_per_s_per_core": round(figs["docs"] / total / CORES, 2) if total else None,
            "chars_per_s_per_core": round(figs["chars"] / total / CORES) if total else None,
            **{k: v for k, v in proc.items() if k.startswith("driver_peak")},
            "load_avg_1m": [load_before, proc["load_avg_1m_after"]],
            **({"error": proc["error"]} if "error" in proc else {}),
        }
        rows[scale] = row
        results["scales"][f"{scale}x"] = row  # type: ignore[index]
        _save_partial(args, results)
        print(f"  scale {scale}x: {total}s stages, driver peak {row['driver_peak_total_mb']} MB", file=sys.stderr, flush=True)
        shutil.rmtree(corpus, ignore_errors=True)
    first = rows[scales[0]]
    results["ratios_vs_1x"] = {
        f"{s}x": {
            "data": round(rows[s]["chars"] / first["chars"], 2),
            "time": round(rows[s]["stages_total_s"] / first["stages_total_s"], 2),
            "driver_peak_memory": round(rows[s]["driver_peak_total_mb"] / first["driver_peak_total_mb"], 2),
            "throughput": round(rows[s]["chars_per_s_per_core"] / first["chars_per_s_per_core"], 2),
        }
        for s in scales
    }
    last = scales[-1]
    results["driver_memory_flat"] = results["ratios_vs_1x"][f"{last}x"]["driver_peak_memory"] <= 1.5  # type: ignore[index]
    return results
