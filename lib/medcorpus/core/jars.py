"""``python -m medcorpus.core.jars fetch``: resolve the Delta (and optional S3) jars into the project Ivy cache.

Starting a session with ``spark.jars.packages`` makes Ivy download what the cache lacks; a warm cache
resolves offline (``configs/ivysettings.xml`` never re-checks released versions).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys

from medcorpus.core.config import load_config
from medcorpus.core.session import ivy_dir, maven_packages, resolved_jars


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medcorpus.core.jars")
    parser.add_argument("action", choices=["fetch"])
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--with-s3", action="store_true", help="also resolve hadoop-aws and the AWS SDK modules")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    variants = [args.set] + ([[*args.set, "s3.enabled=true"]] if args.with_s3 else [])
    for overrides in variants:
        config = load_config(overrides=overrides)
        if resolved_jars(config):
            print(f"jars already resolved for {', '.join(maven_packages(config))}")
            continue
        # a throwaway JVM per package set: Ivy resolves at JVM start only
        code = (
            "import sys; from medcorpus.core.config import load_config; from medcorpus.core.session import build_spark;"
            f"s = build_spark(load_config(overrides={overrides!r})); s.range(1).count(); s.stop()"
        )
        subprocess.run([sys.executable, "-c", code], check=True)
        jars = resolved_jars(config)
        if not jars:
            print(f"error: resolution of {maven_packages(config)} left no jar list", file=sys.stderr)
            return 1
        print(f"{len(jars)} jars for {', '.join(maven_packages(config))} in {ivy_dir(config) / 'jars'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
