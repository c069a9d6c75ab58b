"""Progress inside a long stage, from Spark's status tracker.

A stage logs its start and end; between them it can run for minutes. ``SparkProgress`` is a context manager
that, while its block runs, logs every ``every`` seconds the tasks done of the Spark stages running now
(only when that changed), e.g.::

    dedup: Spark job 41 (stage 97): 57/200 tasks done, 2 running

Use: ``with SparkProgress(ctx.spark, "dedup"): ...``. ``Stage.run`` wraps every stage in one, every
``spark.progress_seconds`` of the config.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

log = logging.getLogger("medcorpus.progress")


def progress_line(spark: Any, label: str) -> str | None:
    """One line on the Spark work running now (None when no job runs)."""
    tracker = spark.sparkContext.statusTracker()
    jobs = sorted(tracker.getActiveJobsIds())
    stages = sorted(tracker.getActiveStageIds())
    if not jobs and not stages:
        return None
    done = total = running = 0
    for stage_id in stages:
        info = tracker.getStageInfo(stage_id)
        if info is None:
            continue
        done += info.numCompletedTasks
        total += info.numTasks
        running += info.numActiveTasks
    job_text = ", ".join(map(str, jobs)) or "-"
    stage_text = ", ".join(map(str, stages)) or "-"
    return (f"{label}: Spark job {job_text} (stage {stage_text}): {done}/{total} tasks done, "
            f"{running} running")


class SparkProgress:
    """Logs ``progress_line`` every ``every`` seconds while the ``with`` block runs (``every <= 0``: nothing).

    The thread is a daemon and stops when the block ends, also on an exception, so it never keeps the
    interpreter (and with it the JVM) alive."""

    def __init__(self, spark: Any, label: str, every: float = 15.0, logger: logging.Logger = log):
        self.spark, self.label, self.every, self.log = spark, label, every, logger
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lines: list[str] = []

    def _run(self) -> None:
        last = None
        while not self._stop.wait(self.every):
            try:
                line = progress_line(self.spark, self.label)
            except Exception as err:  # progress is a convenience: never break the stage over it
                self.log.debug("no progress: %s", err)
                continue
            if line and line != last:
                self.lines.append(line)
                self.log.info(line)
                last = line

    def __enter__(self) -> SparkProgress:
        if self.every <= 0:  # progress off
            return self
        self._thread = threading.Thread(target=self._run, name=f"progress-{self.label}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
