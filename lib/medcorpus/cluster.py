"""A Spark standalone cluster on loopback, from the pyspark distribution, and spark-submit against it.

``python -m medcorpus.cluster test`` (``make cluster-test``) starts one master and one worker on
127.0.0.1, packages the project for ``spark-submit`` (a zip for ``--py-files`` plus the ``schemas/`` and
``configs/`` it reads), submits ``jobs/pipeline.py`` with ``--master spark://127.0.0.1:PORT``, checks the
tables it wrote with delta-rs (no JVM) and stops the cluster. The same pieces run the suite's cluster test.

This is tooling, not a pipeline stage: it starts processes and reads small table summaries.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcorpus.core.config import REPO_ROOT, Config, load_config

log = logging.getLogger(__name__)


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )


@dataclass
class StandaloneCluster:
    """A running master + worker; ``master_url`` is what ``--master`` takes."""

    work: Path
    master_url: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def worker_dir(self) -> Path:
        return self.work / "worker"

    def executor_logs(self) -> list[Path]:
        return sorted(self.worker_dir.glob("app-*/*/stderr"))

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    handle = log_path.open("w")
    return subprocess.Popen(args, env=_env(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(log_path: Path, needle: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if needle in log_path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.25)
    raise RuntimeError(f"'{needle}' not seen in {log_path} within {timeout}s:\n{log_path.read_text()[-3000:]}")


def start_cluster(work: Path, cores: int = 2, memory: str = "2g", timeout: float = 180) -> StandaloneCluster:
    """Master and one worker as foreground JVMs (``spark-class``), each in its own process group."""
    work.mkdir(parents=True, exist_ok=True)
    spark_class = str(spark_home() / "bin" / "spark-class")
    port = free_port()
    master_url = f"spark://127.0.0.1:{port}"
    cluster = StandaloneCluster(work, master_url)
    master_log, worker_log = work / "master.log", work / "worker.log"
    try:
        master = _spawn([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                         "--port", str(port), "--webui-port", str(free_port())], master_log)
        cluster.processes.append(master)
        _wait_for(master_log, "I have been elected leader", master, timeout)
        worker = _spawn([spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                         "--cores", str(cores), "--memory", memory, "--webui-port", str(free_port()),
                         "--work-dir", str(cluster.worker_dir), master_url], worker_log)
        cluster.processes.append(worker)
        _wait_for(worker_log, "Successfully registered with master", worker, timeout)
    except BaseException:
        cluster.stop()
        raise
    log.info("standalone cluster up at %s (worker: %d cores, %s)", master_url, cores, memory)
    return cluster


@contextmanager
def standalone_cluster(work: Path, cores: int = 2, memory: str = "2g") -> Iterator[StandaloneCluster]:
    cluster = start_cluster(work, cores, memory)
    try:
        yield cluster
    finally:
        cluster.stop()


# Folders the driver reads relative to the project root (schemas, default config, GX suites, lexicons,
# prompt templates, model artifacts) and the spark-submit entry points.
DATA_DIRS = ("schemas", "configs", "jobs", "expectations", "lexicons", "prompts", "models")


def package_project(dist: Path) -> Path:
    """``dist/medcorpus.zip`` (the importable package) with the project's data folders beside it.

    Inside the zip, ``medcorpus.core.config.REPO_ROOT`` resolves to ``dist``, so the driver finds the table
    schemas and default config next to the zip; executors import only the code.
    """
    if dist.exists():
        shutil.rmtree(dist)
    dist.mkdir(parents=True)
    archive = dist / "medcorpus.zip"
    package = REPO_ROOT / "lib" / "medcorpus"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                zf.write(path, Path("medcorpus") / path.relative_to(package))
    for folder in DATA_DIRS:
        if (REPO_ROOT / folder).is_dir():
            shutil.copytree(REPO_ROOT / folder, dist / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return archive


def submit_args(config: Config, cluster_master: str, archive: Path) -> list[str]:
    """spark-submit options: the master, the package, Delta (and S3A) jars from the project Ivy cache."""
    from medcorpus.core.session import ivy_dir, ivy_settings_file, jar_excludes, maven_packages

    python = sys.executable
    return [
        "--master", cluster_master,
        "--deploy-mode", "client",
        "--name", "medcorpus-cluster-test",
        "--py-files", str(archive),
        "--packages", ",".join(maven_packages(config)),
        "--exclude-packages", ",".join(jar_excludes(config)),
        "--conf", f"spark.jars.ivy={ivy_dir(config)}",
        "--conf", f"spark.jars.ivySettings={ivy_settings_file()}",
        "--conf", "spark.driver.host=127.0.0.1",
        "--conf", "spark.driver.bindAddress=127.0.0.1",
        "--conf", "spark.driver.memory=1g",
        "--conf", "spark.executor.memory=1g",
        "--conf", "spark.cores.max=2",
        "--conf", f"spark.pyspark.python={python}",
        "--conf", f"spark.pyspark.driver.python={python}",
        "--conf", "spark.ui.enabled=false",
        "--conf", f"spark.sql.shuffle.partitions={config.spark.shuffle_partitions}",
    ]


def submit_pipeline(cluster: StandaloneCluster, dist: Path, sources: list[str], warehouse: str,
                    run_id: str, until: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    from medcorpus.dedup.decontaminate import benchmarks_root
    from medcorpus.demo import write_demo_benchmarks

    config = load_config(overrides=[f"warehouse={warehouse}"])
    archive = dist / "medcorpus.zip"
    # relative paths would resolve against dist on the driver: pass the checkout's benchmark folder as an
    # absolute path (or the demo's set where the shared files are absent)
    benchmarks = benchmarks_root(config.decontaminate)
    if not benchmarks.is_dir():
        benchmarks = write_demo_benchmarks(dist.parent / "demo-benchmarks").resolve()
    cmd = [str(spark_home() / "bin" / "spark-submit"), *submit_args(config, cluster.master_url, archive),
           str(dist / "jobs" / "pipeline.py"), *sources, "--warehouse", warehouse, "--run-id", run_id,
           "--set", f"decontaminate.benchmarks_dir={benchmarks}"]
    if until:
        cmd += ["--until", until]
    log.info("spark-submit %s", " ".join(cmd[1:]))
    # run from dist so nothing of the checkout is on the driver's path but the submitted package
    return run_streaming(cmd, cwd=dist, env=_env(), timeout=timeout)


#: Driver log lines echoed while spark-submit runs: stage starts/ends, validations, in-stage progress.
PROGRESS_MARKERS = (" INFO medcorpus.core.pipeline:", " INFO medcorpus.core.runlog:", " INFO medcorpus.progress:",
                    "[validate]", " ERROR ")


def run_streaming(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run(capture_output=True)`` that also echoes the driver's progress lines as they come."""
    import threading

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    err: list[str] = []

    def pump(stream: Any, sink: list[str], echo: bool) -> None:
        for line in stream:
            sink.append(line)
            if echo and any(m in line for m in PROGRESS_MARKERS):
                print(f"  [driver] {line.rstrip()[:240]}", flush=True)

    threads = [threading.Thread(target=pump, args=(proc.stdout, out, False), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, err, True), daemon=True)]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        for t in threads:
            t.join(timeout=10)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(out), "".join(err))


def expected_stages(until: str | None) -> list[str]:
    """The stages ``medcorpus run --until`` runs, in order."""
    from medcorpus.stages import pipeline_stages

    stages = pipeline_stages()
    return stages[: stages.index(until) + 1] if until in stages else stages


def table_summary(warehouse: str, run_id: str) -> dict[str, object]:
    """Rows per table of the warehouse and the run's run_log rows, read with delta-rs (no JVM)."""
    from deltalake import DeltaTable

    from medcorpus.core.warehouse import all_table_names

    out: dict[str, object] = {}
    for name in all_table_names():
        if DeltaTable.is_deltatable(f"{warehouse}/{name}") and name != "run_log":
            out[name] = DeltaTable(f"{warehouse}/{name}").to_pyarrow_dataset().count_rows()
    runs = [r for r in DeltaTable(f"{warehouse}/run_log").to_pyarrow_table().to_pylist() if r["run_id"] == run_id]
    out["run_log"] = {r["stage"]: {k: r[k] for k in ("rows_in", "rows_out", "rows_quarantined", "rows_removed")}
                      for r in runs}
    return out


def check_summary(summary: dict[str, object], stages_run: list[str] | None = None) -> list[str]:
    """Problems with what the submitted run wrote (empty list = fine): every stage it ran has a reconciling
    run_log row, and every table those stages declare as outputs exists."""
    problems = []
    stages = summary["run_log"]
    assert isinstance(stages, dict)
    wanted = stages_run or ["ingest", "normalize"]
    missing = [s for s in wanted if s not in stages]
    if missing:
        problems.append(f"run_log lacks rows for stages {missing} (has {sorted(stages)})")
    if stages_run:
        from medcorpus.stages import STAGES

        for stage in stages_run:
            absent = [t for t in STAGES[stage].outputs if t not in summary]
            if absent:
                problems.append(f"stage {stage} ran but its tables {absent} do not exist")
    for stage, r in stages.items():
        if r["rows_in"] != r["rows_out"] + r["rows_quarantined"] + r["rows_removed"]:
            problems.append(f"{stage} does not reconcile: {r}")
    if not summary["raw_documents"] or not summary["documents"]:
        problems.append(f"empty output tables: {summary}")
    if "ingest" in stages and stages["ingest"]["rows_out"] != summary["raw_documents"]:
        problems.append("raw_documents rows differ from the ingest run_log row")
    return problems


def cluster_test(work: Path, until: str | None) -> int:
    from medcorpus.demo import SFT_DEMO_DIR, write_demo_corpus, write_demo_sft_inputs

    if work.exists():
        shutil.rmtree(work)
    t0 = time.perf_counter()
    sources = write_demo_corpus(work / "demo")
    dist = work / "dist"
    package_project(dist)
    # the default datasets.sft_sources are relative paths, read from the driver's working directory (dist)
    write_demo_sft_inputs(dist / SFT_DEMO_DIR)
    warehouse = str(work / "warehouse")
    with standalone_cluster(work / "cluster") as cluster:
        t_up = time.perf_counter()
        done = submit_pipeline(cluster, dist, [str(sources)], warehouse, "cluster-run", until)
        executor_logs = cluster.executor_logs()
    t_done = time.perf_counter()
    print(done.stdout)
    if done.returncode != 0:
        print(done.stderr[-6000:], file=sys.stderr)
        print(f"cluster-test FAILED: spark-submit exited {done.returncode}", file=sys.stderr)
        return 1
    if not executor_logs:
        print("cluster-test FAILED: the worker launched no executor", file=sys.stderr)
        return 1
    summary = table_summary(warehouse, "cluster-run")
    problems = check_summary(summary, expected_stages(until))
    print(json.dumps({"summary": summary, "cluster_start_s": round(t_up - t0, 1),
                      "submit_s": round(t_done - t_up, 1), "executor_logs": len(executor_logs)}, indent=2))
    if problems:
        print("cluster-test FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("cluster-test passed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medcorpus.cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("test", help="start master+worker on loopback, submit jobs/pipeline.py, check, stop")
    t.add_argument("--work", default="build/cluster-test", help="scratch folder (wiped)")
    t.add_argument("--until", help="stop the pipeline after this stage")
    p = sub.add_parser("package", help="write dist/medcorpus.zip with schemas/, configs/, jobs/ beside it")
    p.add_argument("--out", default="dist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.command == "package":
        print(package_project(Path(args.out).resolve()))
        return 0
    return cluster_test(Path(args.work).resolve(), args.until)


if __name__ == "__main__":
    sys.exit(main())
