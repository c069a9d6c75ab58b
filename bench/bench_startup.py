"""What a fresh process pays before and in its first queries, without and with the class-data-sharing archive.

Each measurement is a new process (a new driver JVM), as a user's ``medcorpus`` command is; the two modes
alternate, twice, and the best of each is reported:

* ``session``: ``build_spark`` (pyspark launches the JVM), then the first Delta write and read of 200 rows;
* ``demo_until_normalize``: ``medcorpus run --until normalize`` on the demo corpus into a fresh warehouse, whole
  process (JVM start, two stages, their Delta writes and Great Expectations validations, the report).

``spark.class_data_sharing=false`` is the "off" mode; "on" maps the archive ``make setup`` built (built here
first if it is missing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REPS = 2

_SESSION_CODE = """
import json, sys, tempfile, time
t0 = time.perf_counter()
from medcorpus.core.config import load_config
from medcorpus.core.session import build_spark
spark = build_spark(load_config(overrides=[f"spark.class_data_sharing={sys.argv[1]}"]))
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as d:
    spark.range(200).selectExpr("id", "sha2(cast(id as string), 256) as text").write.format("delta").save(d + "/t")
    n = spark.read.format("delta").load(d + "/t").count()
t2 = time.perf_counter()
print(json.dumps({"session_s": round(t1 - t0, 2), "first_delta_write_read_s": round(t2 - t1, 2), "rows": n}))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def _session_once(mode: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _SESSION_CODE, mode], cwd=REPO, env=_env(), capture_output=True,
                          text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {**figures, "process_s": round(time.perf_counter() - t0, 2)}


def _demo_once(mode: str) -> float:
    with tempfile.TemporaryDirectory(prefix="medcorpus-startup-") as wh:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "medcorpus.cli", "run", "--until", "normalize", "--warehouse", wh,
                        "--set", f"spark.class_data_sharing={mode}"],
                       cwd=REPO, env=_env(), capture_output=True, text=True, check=True)
        return round(time.perf_counter() - t0, 2)


def run(spark: Any, args: Any) -> dict[str, Any]:
    from medcorpus.core.config import load_config
    from medcorpus.core.jvmcache import build_archive
    from medcorpus.demo import ensure_demo_corpus

    archive = build_archive(load_config())
    if archive is None:
        return {"skipped": "no java answered `java -version`"}
    ensure_demo_corpus(REPO / "build" / "demo")
    sessions: dict[str, list[dict[str, Any]]] = {"false": [], "true": []}
    demos: dict[str, list[float]] = {"false": [], "true": []}
    for _ in range(REPS):
        for mode in ("false", "true"):
            sessions[mode].append(_session_once(mode))
    for _ in range(REPS):
        for mode in ("false", "true"):
            demos[mode].append(_demo_once(mode))

    def best(mode: str) -> dict[str, Any]:
        rows = sessions[mode]
        return {key: min(r[key] for r in rows) for key in ("session_s", "first_delta_write_read_s", "process_s")}

    out = {
        "archive": {"path": str(archive.relative_to(REPO)) if archive.is_relative_to(REPO) else str(archive),
                    "mb": round(archive.stat().st_size / 1e6, 1)},
        "method": f"fresh process per measurement, off/on alternating, best of {REPS}",
        "without_archive": {**best("false"), "demo_until_normalize_s": min(demos["false"])},
        "with_archive": {**best("true"), "demo_until_normalize_s": min(demos["true"])},
        "all_runs": {"sessions": sessions, "demo_until_normalize": demos},
    }
    off, on = out["without_archive"], out["with_archive"]
    out["saved_s"] = {key: round(off[key] - on[key], 2) for key in off}
    return out
