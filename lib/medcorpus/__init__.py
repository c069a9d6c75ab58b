"""medcorpus: a Spark + Delta Lake refinery for medical LLM training data."""

import os as _os

from medcorpus.core import zipcache as _zipcache

__version__ = "0.1.0"

# Spark's Python workers invalidate import caches before every task; on Python 3.11 that re-reads
# pyspark.zip many times per task (~0.25 s). See medcorpus.core.zipcache. MEDCORPUS_ZIPCACHE=off leaves
# Python's behaviour alone (the benchmark compares both).
if _os.environ.get("MEDCORPUS_ZIPCACHE", "on").lower() != "off":
    _zipcache.install()
