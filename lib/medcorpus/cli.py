"""The ``medcorpus`` command. ``jobs/*.py`` are thin spark-submit wrappers around it.

Fails fast — before any Spark work — on a bad config key or a missing input path, with one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from medcorpus.config import Config, load_config
from medcorpus.errors import MedcorpusError

log = logging.getLogger("medcorpus")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file layered over configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set ingest.max_record_bytes=1000000")
    parser.add_argument("--warehouse", help="warehouse path or s3a:// URI (same as --set warehouse=...)")
    parser.add_argument("--run-id", help="run id to record (default: generated)")
    parser.add_argument("-v", "--verbose", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medcorpus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="write the demo corpus (deterministic) to a folder")
    p.add_argument("--out", default="build/demo", help="output folder")
    p.add_argument("--scale", type=int, default=1, help="multiply the number of generated documents")

    p = sub.add_parser("ingest", help="read JSONL/Parquet/text/WARC sources into raw_documents")
    _common(p)
    p.add_argument("sources", nargs="+", help="files or folders (local or s3a://)")
    p.add_argument("--format", choices=["jsonl", "parquet", "text", "warc"], help="force a format")

    p = sub.add_parser("normalize", help="raw_documents -> documents")
    _common(p)

    p = sub.add_parser("run", help="the whole pipeline on the given sources (default: the demo corpus)")
    _common(p)
    p.add_argument("sources", nargs="*", help="files or folders; default: build/demo (generated if absent)")
    p.add_argument("--until", help="stop after this stage")

    p = sub.add_parser("tables", help="each table: version, rows, last run")
    _common(p)

    p = sub.add_parser("history", help="Delta history of a table")
    _common(p)
    p.add_argument("table")
    p.add_argument("--limit", type=int, default=20)

    p = sub.add_parser("config", help="print the effective config and its hash (a dry run)")
    _common(p)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("py4j", "urllib3", "botocore", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(args: argparse.Namespace) -> Config:
    overrides = list(args.set)
    if getattr(args, "warehouse", None):
        overrides.append(f"warehouse={args.warehouse}")
    if getattr(args, "run_id", None):
        overrides.append(f"run_id={args.run_id}")
    if any(str(s).startswith(("s3a://", "s3://")) for s in getattr(args, "sources", None) or []):
        overrides.insert(0, "s3.enabled=true")  # the S3A jars are needed to list s3a:// sources
    return load_config(args.config, overrides)


def _check_local_inputs(sources: Sequence[str], config: Config | None = None) -> None:
    for source in sources:
        if "://" not in source and not source.startswith("file:") and not Path(source).exists():
            raise MedcorpusError(f"input path does not exist: {source}")
        if config is not None and source.startswith(("s3a://", "s3://")):
            from medcorpus.storage import exists

            if not exists(source, config.s3):  # one boto3 listing: fail before a JVM starts
                raise MedcorpusError(f"input path does not exist: {source}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(getattr(args, "verbose", False))
    try:
        return _dispatch(args)
    except MedcorpusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from medcorpus.demo import write_demo_corpus

        out = write_demo_corpus(Path(args.out), scale=args.scale)
        print(out)
        return 0

    config = _load(args)
    if args.command == "config":
        import yaml

        print(yaml.safe_dump(config.model_dump(mode="json", by_alias=True), sort_keys=False, allow_unicode=True))
        print(f"# config hash: {config.hash()}")
        return 0

    sources: list[str] = list(getattr(args, "sources", []) or [])
    if args.command == "run" and not sources:
        from medcorpus.demo import ensure_demo_corpus

        sources = [str(ensure_demo_corpus(Path("build/demo")))]
    _check_local_inputs(sources, config)

    from medcorpus import runner
    from medcorpus.session import build_spark

    spark = build_spark(config)
    ctx = runner.RunContext.create(spark, config)
    log.info("run %s config %s warehouse %s", ctx.run_id, config.hash(), config.warehouse)
    if args.command == "ingest":
        runner.run_ingest(ctx, sources, args.format)
    elif args.command == "normalize":
        runner.run_normalize(ctx)
    elif args.command == "run":
        reports = runner.run_pipeline(ctx, sources, args.until)
        print(f"run {ctx.run_id} finished:")
        for report in reports:
            print("  " + report.summary())
    elif args.command == "tables":
        from medcorpus.inspect import tables_overview

        print(tables_overview(ctx))
    elif args.command == "history":
        from medcorpus.inspect import table_history

        print(table_history(ctx, args.table, args.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
