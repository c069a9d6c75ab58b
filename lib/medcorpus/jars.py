"""``python -m medcorpus.jars fetch``: resolve the Delta (and optional S3) jars into the project Ivy cache.

Starting a session with ``spark.jars.packages`` makes Ivy download what the cache lacks; a warm cache
resolves offline (``configs/ivysettings.xml`` never re-checks released versions).
"""

from __future__ import annotations

import argparse
import logging
import sys

from medcorpus.config import load_config
from medcorpus.session import build_spark, ivy_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medcorpus.jars")
    parser.add_argument("action", choices=["fetch"])
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(overrides=args.set)
    spark = build_spark(config)
    spark.range(1).count()
    jars = sorted(p.name for p in (ivy_dir(config) / "jars").glob("*.jar"))
    print(f"{len(jars)} jars in {ivy_dir(config) / 'jars'}: {', '.join(jars)}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
