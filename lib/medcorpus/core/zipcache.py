"""Keep zipimport's directory caches across ``importlib.invalidate_caches()`` while the archive is unchanged.

Spark's Python worker calls ``importlib.invalidate_caches()`` before every task
(``pyspark.worker_util.setup_spark_files``). On Python 3.10 and 3.11, ``zipimporter.invalidate_caches``
re-reads the archive's whole directory at once, for every zipimporter that the import system has cached:
one per package directory imported from ``pyspark.zip``, 16 after a DataFrame UDF has run. Re-reading the
3.5 MB ``pyspark.zip`` 16 times cost about 0.25 s per Python task here, more than most of our tasks compute
(measured with cProfile around ``pyspark.worker.main``). CPython fixed this in 3.12 (gh-103200: the
directory is re-read lazily, on next use). This backport re-reads an archive only when its size or mtime
changed, which keeps the point of invalidation (a rewritten archive is seen) without the cost.

Installed when ``medcorpus`` is imported: in the driver and, through the UDFs' unpickling, in every Python
worker, so each reused worker pays the full cost at most once.
"""

from __future__ import annotations

import os
import sys
import zipimport

_MARK = "_medcorpus_keeps_unchanged_archives"


def install() -> bool:
    """Patch ``zipimport.zipimporter.invalidate_caches`` (Python < 3.12 only). True when this call patched it."""
    if sys.version_info >= (3, 12) or getattr(zipimport.zipimporter.invalidate_caches, _MARK, False):
        return False
    original = zipimport.zipimporter.invalidate_caches
    seen: dict[str, tuple[int, int]] = {}

    def invalidate_caches(self: zipimport.zipimporter) -> None:
        try:
            st = os.stat(self.archive)
        except OSError:
            original(self)
            return
        stamp = (st.st_mtime_ns, st.st_size)
        cached = zipimport._zip_directory_cache.get(self.archive)  # type: ignore[attr-defined]
        if cached is not None and seen.get(self.archive) == stamp:
            self._files = cached  # type: ignore[attr-defined]
            return
        original(self)
        seen[self.archive] = stamp

    setattr(invalidate_caches, _MARK, True)
    zipimport.zipimporter.invalidate_caches = invalidate_caches  # type: ignore[method-assign]
    return True
