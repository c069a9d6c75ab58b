"""`make bench`: run every bench/bench_*.py and merge their figures into bench/results.json.

Each module defines ``run(spark, args) -> dict`` (JSON-serialisable figures). Benchmarks share one Spark
session so figures compared inside one module are measured side by side in one run.
``python bench/run.py --only dedup`` runs bench_dedup.py alone and keeps the other sections of the file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _modules(only: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if only:
        found = [p for p in found if p.stem.removeprefix("bench_") in only]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(HERE / "results.json"))
    parser.add_argument("--only", action="append", default=[], help="bench name(s), e.g. dedup")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--scale-sizes", help="bench_scale's corpus sizes in characters, e.g. 1e6,4e6 "
                        "(default 25e6,100e6; --quick 1e6,4e6)")
    args = parser.parse_args(argv)

    from medcorpus.core.config import load_config
    from medcorpus.core.session import build_spark

    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results["_machine"] = {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                           "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    spark = build_spark(load_config(overrides=["spark.shuffle_partitions=4"]))
    for path in _modules(args.only):
        name = path.stem.removeprefix("bench_")
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        results[name] = module.run(spark, args)
        results[name]["_bench_seconds"] = round(time.perf_counter() - t0, 2)
        out_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        print(f"bench {name}: done in {results[name]['_bench_seconds']}s", file=sys.stderr, flush=True)
    print(out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
