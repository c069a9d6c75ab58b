"""A class-data-sharing (CDS) archive for the driver JVM of local runs: ``python -m medcorpus.core.jvmcache build``.

A local run's driver JVM loads and verifies some 20,000 classes (Spark, Hadoop, Delta, Parquet) while it starts
and runs its first queries. On a 2-core machine that is most of the 16 s a session takes to start and of the
9 s its first job takes. A dynamic CDS archive (JDK 13+), dumped once by ``make setup`` from a short workload
of the calls a pipeline makes, maps those classes instead: a fresh process starts its session in 10.0 s instead of
15.6 s, and ``medcorpus run --until normalize`` on the demo corpus takes 130.6 s instead of 145.6 s as a whole
process (``bench/run.py --only startup``, best of 2, alternating). Dumping it takes about 2 minutes, once.

The archive only changes how classes are loaded, never what runs. It is keyed by the ``java`` build, the
pyspark version and the JVM class path, so another JDK or Spark gets its own file; a JVM that still cannot
map it (a damaged file) warns on stderr and runs without it. It is applied only where medcorpus starts the
JVM itself (plain ``python``/``medcorpus``): under ``spark-submit`` the JVM runs before our code does.
Turn it off with ``spark.class_data_sharing=false``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from medcorpus.core.config import Config, load_config

log = logging.getLogger(__name__)

ARCHIVE_FLAG = "-XX:SharedArchiveFile="
DUMP_FLAG = "-XX:ArchiveClassesAtExit="
_FORMAT = "v1"
DUMP_TIMEOUT_S = 1200


def java_executable() -> str:
    """The ``java`` that pyspark's launcher runs: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java") or "java"


@lru_cache(maxsize=4)
def java_build(java: str) -> str:
    """``java -version``'s text (its exact build: an archive maps only into the JVM that dumped it)."""
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stderr.strip()


def jvm_class_path() -> list[str]:
    """The driver's class path as pyspark's launcher builds it: ``$SPARK_HOME/jars/*`` (file names, sorted)."""
    import pyspark

    home = Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).parent)
    return sorted(str(p) for p in (home / "jars").glob("*.jar"))


def archive_key(config: Config) -> str | None:
    """Names the archive after what it depends on; None when no ``java`` answers."""
    import pyspark

    build = java_build(java_executable())
    if not build:
        return None
    extra = config.spark.conf.get("spark.driver.extraClassPath", "")
    parts = [_FORMAT, build, pyspark.__version__, *jvm_class_path(), extra]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def archive_dir(config: Config) -> Path:
    from medcorpus.core.session import ivy_dir

    return ivy_dir(config) / "cds"


def archive_path(config: Config) -> Path | None:
    key = archive_key(config)
    return None if key is None else archive_dir(config) / f"driver-{key}.jsa"


def driver_java_options(config: Config, user_options: str = "") -> str | None:
    """``spark.driver.extraJavaOptions`` with the archive added: None when there is nothing to add (sharing off,
    no archive built yet, or the user's options already choose an archive or turn sharing off)."""
    if not config.spark.class_data_sharing or not config.spark.master.startswith("local"):
        return None
    if "SharedArchiveFile" in user_options or "Xshare" in user_options or "ArchiveClassesAtExit" in user_options:
        return None
    path = archive_path(config)
    if path is None or not path.is_file():
        return None
    return " ".join(x for x in (user_options.strip(), f"{ARCHIVE_FLAG}{path}") if x)


def mapped_archive_bytes(pid: int) -> int | None:
    """Bytes of class-data-sharing archives the running JVM ``pid`` mapped (``jcmd VM.info``): the JDK's base
    archive alone is ~13 MB, with ours ~200 MB more. None when jcmd cannot tell."""
    jcmd = Path(java_executable()).resolve().with_name("jcmd")
    try:
        done = subprocess.run([str(jcmd), str(pid), "VM.info"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"CDS archive\(s\) mapped at: .*?size (\d+)", done.stdout)
    return int(match.group(1)) if match else (0 if "CDS: off" in done.stdout else None)


# ---------------------------------------------------------------------------------------------------
# building the archive
# ---------------------------------------------------------------------------------------------------
def run_workload(spark: object, work: Path) -> None:
    """The calls a pipeline makes, on a few rows: Delta create/append/merge/overwrite/read-as-of/history,
    zstd parquet, a shuffle, a join, a window, a pandas (Arrow) UDF, collect. Their classes go in the archive."""
    from delta.tables import DeltaTable
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    assert isinstance(spark, SparkSession)

    def char_counts(batches: Any) -> Any:  # an Arrow (pandas) UDF like the stages' scorers
        for batch in batches:
            yield batch.assign(n=batch["text"].str.len().astype("int64"))

    path = str(work / "t")
    rows = spark.range(200).select(F.col("id"), F.concat(F.lit("文本 text "), F.col("id").cast("string")).alias("text"))
    rows.write.format("delta").save(path)
    more = spark.range(150, 300).select("id", F.sha2(F.col("id").cast("string"), 256).alias("text"))
    (DeltaTable.forPath(spark, path).alias("t").merge(more.alias("s"), "t.id = s.id")
     .whenNotMatchedInsertAll().execute())
    table = spark.read.format("delta").load(path)
    scored = table.mapInPandas(char_counts, "id long, text string, n long").withColumn("bucket", F.col("id") % 7)
    ranked = scored.withColumn("rank", F.row_number().over(Window.partitionBy("bucket").orderBy(F.col("n").desc())))
    stats = ranked.groupBy("bucket").agg(F.count(F.lit(1)).alias("rows"), F.max("n").alias("longest"))
    joined = ranked.join(stats, "bucket").filter(F.col("rank") <= 3)
    joined.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)
    spark.read.format("delta").option("versionAsOf", 0).load(path).agg(F.countDistinct("text")).collect()
    DeltaTable.forPath(spark, path).history(5).collect()
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('medcorpus.cds' = 'dump')")
    DeltaTable.forPath(spark, path).delete(F.col("rank") == 1)
    spark.read.format("delta").load(path).filter(F.col("text").rlike("^[a-f0-9]+$")).count()


def _dump_in_this_process(target: Path, overrides: list[str]) -> None:
    """Child process: start a session that dumps its classes at exit, run the workload, wait for the JVM."""
    import tempfile

    from medcorpus.core.session import build_spark

    config = load_config(overrides=[*overrides, "spark.class_data_sharing=false"])
    conf = {**config.spark.conf, "spark.driver.extraJavaOptions": f"{DUMP_FLAG}{target}"}
    spark = build_spark(config.model_copy(update={"spark": config.spark.model_copy(update={"conf": conf})}))
    with tempfile.TemporaryDirectory(prefix="medcorpus-cds-") as work:
        run_workload(spark, Path(work))
    gateway: Any = spark.sparkContext._gateway  # type: ignore[attr-defined]
    proc = getattr(gateway, "proc", None)
    spark.stop()
    if proc is not None:  # the JVM writes the archive as it exits: wait for it (closing stdin ends it)
        gateway.shutdown()
        proc.stdin.close()
        proc.wait(timeout=600)


def build_archive(config: Config, force: bool = False) -> Path | None:
    """Dump the archive for this JDK, pyspark and class path unless it exists; returns its path (None: no java)."""
    target = archive_path(config)
    if target is None:
        log.warning("no java answered `java -version`: no class-data-sharing archive built")
        return None
    if target.is_file() and not force:
        log.info("class-data-sharing archive already built: %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.stem}.{os.getpid()}.partial")
    t0 = time.perf_counter()
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    cmd = [sys.executable, "-m", "medcorpus.core.jvmcache", "_dump", str(partial)]
    extra = config.spark.conf.get("spark.driver.extraClassPath")
    if extra:  # the dumping JVM needs the class path the archive is named after
        cmd += ["--set", "spark.conf=" + json.dumps({"spark.driver.extraClassPath": extra})]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=DUMP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"dumping the class-data-sharing archive took over {DUMP_TIMEOUT_S} s") from None
    if done.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        tail = "\n".join((done.stderr or "").splitlines()[-15:])
        raise RuntimeError(f"dumping the class-data-sharing archive failed (exit {done.returncode}):\n{tail}")
    partial.replace(target)
    for old in target.parent.glob("driver-*.jsa"):  # archives of an older JDK, Spark or class path
        if old != target:
            old.unlink(missing_ok=True)
    log.info("class-data-sharing archive %s (%.0f MB) built in %.0f s", target, target.stat().st_size / 1e6,
             time.perf_counter() - t0)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medcorpus.core.jvmcache",
                                     description="Build the driver JVM's class-data-sharing archive (make setup).")
    parser.add_argument("action", choices=["build", "path", "_dump"])
    parser.add_argument("target", nargs="?")
    parser.add_argument("--force", action="store_true", help="rebuild even if the archive exists")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.action == "_dump":
        _dump_in_this_process(Path(args.target), args.set)
        return 0
    config = load_config(overrides=args.set)
    if args.action == "path":
        print(archive_path(config) or "")
        return 0
    try:
        build_archive(config, force=args.force)
    except RuntimeError as err:  # an optimisation only: sessions start without it, as before
        print(f"warning: no class-data-sharing archive; local sessions start without one. {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
