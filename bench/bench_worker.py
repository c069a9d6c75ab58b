"""Python worker overhead per Spark task, with and without medcorpus.core.zipcache, side by side.

Spark's Python worker calls importlib.invalidate_caches() before every task; on Python 3.11 that re-reads
pyspark.zip once per cached zipimporter. Each variant runs in its own process (a fresh Spark session, since
the workers inherit MEDCORPUS_ZIPCACHE from the driver), alternating off/on, and times a job of many tiny
Arrow UDF tasks that import medcorpus, as every medcorpus UDF does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = 32

CHILD = r"""
import json, sys, time
import pyarrow as pa
from medcorpus.core.config import load_config
from medcorpus.core.session import build_spark
from medcorpus.dedup.minhash import _list_parts  # any medcorpus function: the UDF's unpickling imports medcorpus

spark = build_spark(load_config(overrides=["spark.shuffle_partitions=4"]))
tasks = int(sys.argv[1])
df = spark.range(tasks * 100).repartition(tasks).localCheckpoint(eager=True)

def touch(batches):
    for batch in batches:
        _list_parts  # keeps the reference
        yield batch

times = []
for _ in range(4):
    t0 = time.perf_counter()
    df.mapInArrow(touch, df.schema).write.format("noop").mode("overwrite").save()
    times.append(time.perf_counter() - t0)
print("RESULT " + json.dumps({"first": times[0], "warm": sorted(times[1:])}))
"""


def _one(mode: str, tasks: int) -> dict[str, object]:
    env = dict(os.environ, MEDCORPUS_ZIPCACHE=mode, PYSPARK_PYTHON=sys.executable)
    out = subprocess.run([sys.executable, "-c", CHILD, str(tasks)], env=env, cwd=REPO, capture_output=True,
                         text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def run(spark, args) -> dict[str, object]:  # type: ignore[no-untyped-def]
    tasks = 8 if args.quick else TASKS
    runs: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(2):
        for mode in ("off", "on"):
            r = _one(mode, tasks)
            runs[mode] += r["warm"]  # type: ignore[operator]
            print(f"  zipcache {mode}: warm job of {tasks} UDF tasks {min(r['warm']):.2f}s", file=sys.stderr, flush=True)
    best = {mode: min(v) for mode, v in runs.items()}
    cores = os.cpu_count() or 1
    return {
        "tasks_per_job": tasks,
        "python": sys.version.split()[0],
        "job_seconds_best": {m: round(v, 3) for m, v in best.items()},
        "job_seconds_all": {m: [round(x, 3) for x in v] for m, v in runs.items()},
        # wall seconds per task on `cores` cores: tasks run cores at a time
        "seconds_per_task": {m: round(v * cores / tasks, 4) for m, v in best.items()},
        "speedup_on_vs_off": round(best["off"] / best["on"], 2),
    }
