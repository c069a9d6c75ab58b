"""The ``medcorpus`` command. ``jobs/*.py`` are thin spark-submit wrappers around it.

Fails fast — before any Spark work — on a bad config key or a missing input path, with one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medcorpus.core.errors import MedcorpusError

if TYPE_CHECKING:
    from medcorpus.core.config import Config

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

    from medcorpus.stages import STAGES

    for name, stage in STAGES.items():  # one subcommand per registered stage
        p = sub.add_parser(name, help=stage.help, description=stage.help)
        _common(p)
        stage.add_arguments(p)

    p = sub.add_parser("export", help="write a release's shards + manifest (reads the release's Delta versions)")
    _common(p)
    p.add_argument("name")
    p.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    p.add_argument("--out", required=True, help="output folder; files go to OUT/NAME/FORMAT/")
    p.add_argument("--tokenizer", metavar="FILE",
                   help="count tokens with this tokenizers file (tokenizer.json); default: the release's estimates")
    p.add_argument("--length-balanced", action="store_true",
                   help="also write preference_balanced: as many chosen-shorter as chosen-longer pairs")

    for name, what in (("train-classifier", "medical-vs-general + sub-domain classifier"),
                       ("train-rater", "0-5 quality rater")):
        p = sub.add_parser(name, help=f"train the {what} from labelled data; writes a versioned artifact")
        _common(p)
        p.add_argument("--input", default="labelled_documents",
                       help="warehouse table name, Delta path or JSONL with text + label/score (default: labelled_documents)")
        p.add_argument("--out", help="artifact folder (default: classify.domain_model_dir / classify.rater_model_dir)")
    p = sub.add_parser("build-labelled", help="real sources (../shared/data) or the seed -> labelled_documents")
    _common(p)
    p.add_argument("--from", dest="from_", choices=["shared_data", "seed"], default="shared_data")
    p.add_argument("--shared-data", help="folder of the real sources (default: classify.shared_data_dir)")
    p.add_argument("--jsonl", help="also write the rows to this JSONL file")

    add_run_command(sub)

    p = sub.add_parser("validate", help="run a table's Great Expectations suite (exit 1 on a critical failure)")
    _common(p)
    p.add_argument("tables", nargs="+", metavar="TABLE", help="table name(s), or 'all' for every existing table")
    p.add_argument("--version", type=int, help="Delta version to validate (default: current)")

    p = sub.add_parser("report", help="write the run report (funnel, validation, plots) into <warehouse>/reports/")
    _common(p)
    p.add_argument("--for-run", help="run id to report on (default: the newest run in run_log)")

    add_read_commands(sub)

    p = sub.add_parser("config", help="print the effective config and its hash (a dry run)")
    _common(p)
    add_maintenance_commands(sub)
    describe_subcommands(sub)
    return parser


def add_run_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="the whole pipeline on the given sources (default: the demo corpus)")
    _common(p)
    p.add_argument("sources", nargs="*", help="files or folders; default: build/demo (generated if absent)")
    p.add_argument("--until", help="stop after this stage")


def add_read_commands(sub: argparse._SubParsersAction) -> None:
    """``tables`` and ``history`` (no Spark)."""
    p = sub.add_parser("tables", help="each table: version, rows, last run (from the Delta logs, no Spark)")
    _common(p)
    p = sub.add_parser("history", help="Delta history of a table (from its Delta log, no Spark)")
    _common(p)
    p.add_argument("table")
    p.add_argument("--limit", type=int, default=20)


def quick_parser(argv: Sequence[str]) -> argparse.ArgumentParser | None:
    """A parser of only the no-Spark commands and ``run`` when ``argv`` names one of them (None otherwise): the
    full parser imports the stage registry, and with it every stage's transforms, which costs seconds (a bad
    ``run --until`` fails in well under a second)."""
    if not argv or (argv[0] not in NO_SPARK_COMMANDS and argv[0] != "run"):
        return None
    parser = argparse.ArgumentParser(prog="medcorpus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_command(sub)
    add_read_commands(sub)
    add_maintenance_commands(sub)
    describe_subcommands(sub)
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Checks of the arguments alone (no config, no stage imports, no JVM): the first thing ``main`` does."""
    if args.command == "run":
        from medcorpus.core.stagenames import check_until

        check_until(args.until)


def add_maintenance_commands(sub: argparse._SubParsersAction) -> None:
    """``vacuum`` and ``verify`` (no Spark)."""
    p = sub.add_parser("vacuum", help="VACUUM the tables with their retention, never deleting a release's files "
                                      "(delta-rs, no Spark)")
    _common(p)
    p.add_argument("tables", nargs="*", metavar="TABLE", help="tables to vacuum (default: every table)")
    p.add_argument("--dry-run", action="store_true", help="list the files that would be removed; delete nothing")
    p = sub.add_parser("verify", help="check an export folder against its manifest (sizes, sha256, release name)")
    p.add_argument("name", help="release name")
    p.add_argument("folder", help="the export folder (OUT/NAME, or OUT)")


def describe_subcommands(sub: argparse._SubParsersAction) -> None:
    """Each subcommand's ``--help`` starts with its one-line description (argparse shows ``help`` only in the
    parent's list)."""
    for action in sub._get_subactions():
        parser = sub.choices[action.dest]
        if parser.description is None and action.help:
            parser.description = action.help[:1].upper() + action.help[1:] + "."


def run_without_spark(args: argparse.Namespace) -> int | None:
    """Commands answered from Delta logs or files alone (no JVM); None for every other command."""
    handler = NO_SPARK_COMMANDS.get(args.command)
    return None if handler is None else handler(args)


def _tables_command(args: argparse.Namespace) -> int:
    from medcorpus.views.tables import tables_overview

    print(tables_overview(_load(args)))
    return 0


def _history_command(args: argparse.Namespace) -> int:
    from medcorpus.views.tables import table_history

    print(table_history(_load(args), args.table, args.limit))
    return 0


def _vacuum_command(args: argparse.Namespace) -> int:
    from medcorpus.core.storage import WarehouseLock, check_warehouse
    from medcorpus.datasets.retention import vacuum_warehouse

    config = _load(args)
    check_warehouse(config.warehouse, config.s3, writable=True)
    lock = WarehouseLock(config.warehouse)
    lock.acquire()  # no pipeline writes while files are deleted
    try:
        for result in vacuum_warehouse(config, list(args.tables) or None, dry_run=args.dry_run):
            print(result.summary())
            for warning in result.warnings:
                print(f"  warning: {warning}")
    finally:
        lock.release()
    return 0


def _verify_command(args: argparse.Namespace) -> int:
    from medcorpus.datasets.export import verify_release_folder

    problems = verify_release_folder(args.name, Path(args.folder))
    for line in problems:
        print(line)
    if problems:
        print(f"export of {args.name} at {args.folder}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"export of {args.name} at {args.folder}: every file matches its manifest")
    return 0


NO_SPARK_COMMANDS = {"tables": _tables_command, "history": _history_command, "vacuum": _vacuum_command,
                     "verify": _verify_command}


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
    from medcorpus.core.config import load_config

    overrides = list(args.set)
    if getattr(args, "warehouse", None):
        overrides.append(f"warehouse={args.warehouse}")
    if getattr(args, "run_id", None):
        overrides.append(f"run_id={args.run_id}")
    if any(str(s).startswith(("s3a://", "s3://")) for s in getattr(args, "sources", None) or []):
        overrides.insert(0, "s3.enabled=true")  # the S3A jars are needed to list s3a:// sources
    return load_config(args.config, overrides)


def _with_demo_benchmarks_if_missing(args: argparse.Namespace, config: Config) -> Config:
    """The demo run on a machine without the shared benchmark files decontaminates against the demo's own
    small benchmark set (said in the log), instead of failing at the decontaminate stage."""
    from medcorpus.dedup.decontaminate import benchmarks_root
    from medcorpus.demo import DEMO_BENCHMARKS_DIR, write_demo_benchmarks

    if benchmarks_root(config.decontaminate).is_dir():
        return config
    folder = write_demo_benchmarks(Path(DEMO_BENCHMARKS_DIR)).resolve()
    log.warning("decontaminate: %s not found; the demo run uses the demo benchmark set %s",
                benchmarks_root(config.decontaminate), folder)
    args.set = [*args.set, f"decontaminate.benchmarks_dir={folder}"]
    return _load(args)


def _check_local_inputs(sources: Sequence[str], config: Config | None = None) -> None:
    for source in sources:
        if "://" not in source and not source.startswith("file:") and not Path(source).exists():
            raise MedcorpusError(f"input path does not exist: {source}")
        if config is not None and source.startswith(("s3a://", "s3://")):
            from medcorpus.core.storage import exists

            if not exists(source, config.s3):  # one boto3 listing: fail before a JVM starts
                raise MedcorpusError(f"input path does not exist: {source}")


#: Commands that only read the warehouse (no lock, no write probe).
READ_ONLY_COMMANDS = ("tables", "history")


def _check_before_spark(args: argparse.Namespace, config: Config) -> None:
    """Checks that need no JVM: release names, --until, the warehouse (a folder, writable, credentials)."""
    from medcorpus.core.storage import check_warehouse

    if args.command in ("release", "export"):
        from medcorpus.datasets.release import check_export_target, check_release_name

        check_release_name(args.name)
        if args.command == "export":
            check_export_target(Path(args.out), args.name, args.format)
            if args.tokenizer and not Path(args.tokenizer).is_file():
                raise MedcorpusError(f"--tokenizer file not found: {args.tokenizer}")
    if args.command == "release" or (args.command == "run" and config.datasets.auto_release):
        from medcorpus.datasets.retention import check_retention_config

        check_retention_config(config)  # a release must not outlive its tables' retention
    check_arguments(args)  # main checked them already; a caller of _dispatch may not have
    check_warehouse(config.warehouse, config.s3, writable=args.command not in READ_ONLY_COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = (quick_parser(argv) or build_parser()).parse_args(argv)
    _configure_logging(getattr(args, "verbose", False))
    try:
        check_arguments(args)
        done = run_without_spark(args)
        return done if done is not None else _dispatch(args)
    except MedcorpusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        conflict = _delta_conflict(err)
        if conflict is None:
            raise
        print(f"error: warehouse busy: another writer changed the same table at the same time ({conflict}); "
              "rerun when it has finished", file=sys.stderr)
        return 2


_DELTA_CONFLICTS = ("ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
                    "ConcurrentTransactionException", "MetadataChangedException", "ProtocolChangedException",
                    "ConcurrentWriteException", "DELTA_CONCURRENT")


def _delta_conflict(err: BaseException) -> str | None:
    """The name of Delta's optimistic-concurrency conflict behind ``err`` (None when it is something else)."""
    seen = 0
    current: BaseException | None = err
    while current is not None and seen < 5:
        text = f"{type(current).__name__}: {current}"
        for name in _DELTA_CONFLICTS:
            if name in text:
                return name
        current, seen = current.__cause__ or current.__context__, seen + 1
    return None


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

    _check_before_spark(args, config)
    sources: list[str] = list(getattr(args, "sources", []) or [])
    if args.command == "run" and not sources:
        from medcorpus.demo import ensure_demo_corpus

        sources = [str(ensure_demo_corpus(Path("build/demo")))]
        from medcorpus.demo import SFT_DEMO_DIR, write_demo_sft_inputs

        write_demo_sft_inputs(Path(SFT_DEMO_DIR))  # the default datasets.sft_sources point here
        config = _with_demo_benchmarks_if_missing(args, config)
    _check_local_inputs(sources, config)

    if args.command in ("annotate", "translate", "generate-qa", "judge"):
        from medcorpus.llm.tasks import check_llm_ready

        check_llm_ready(config, args.command)  # fail fast: endpoint and prompt template, before Spark

    from medcorpus.core.storage import WarehouseLock

    lock = WarehouseLock(config.warehouse)
    if args.command not in READ_ONLY_COMMANDS:
        lock.acquire()  # one writer per warehouse: a second run fails here, in one line, before Spark starts
    try:
        return _run_command(args, config, sources)
    finally:
        lock.release()


def _run_command(args: argparse.Namespace, config: Config, sources: list[str]) -> int:
    from medcorpus.core import pipeline as runner
    from medcorpus.core.session import build_spark, import_in_background

    # the pipeline's validation gates need Great Expectations: import it while the JVM starts
    preload = import_in_background(["great_expectations"]) if args.command == "run" and config.validate_.enabled else None
    spark = build_spark(config)
    if preload is not None:
        preload.join()
    ctx = runner.RunContext.create(spark, config)
    log.info("run %s config %s warehouse %s", ctx.run_id, config.hash(), config.warehouse)
    from medcorpus.stages import STAGES, run_stage

    if args.command == "filter" and args.explain:
        from medcorpus.filters.rules import explain_document

        print(explain_document(ctx, args.explain))
    elif args.command == "run":
        from medcorpus.views.report import build_report

        try:
            reports = runner.run_pipeline(ctx, sources, args.until)
        finally:  # a run stopped by a validation gate still gets its report page
            try:
                print(f"report: {build_report(ctx, ctx.run_id)}")
            except Exception as err:  # never hide the pipeline's own error behind a report problem
                log.warning("could not write the run report: %s", err)
        print(f"run {ctx.run_id} finished:")
        for report in reports:
            print("  " + report.summary())
    elif args.command in STAGES:
        print(run_stage(ctx, args.command, **STAGES[args.command].params_from(args)).summary())
    elif args.command == "export":
        from medcorpus.datasets.release import export_release

        print(export_release(ctx, args.name, args.format, args.out, tokenizer=args.tokenizer,
                             length_balanced=args.length_balanced))
    elif args.command in ("train-classifier", "train-rater"):
        import json as _json

        from medcorpus.classify.training import run_train

        meta = run_train(ctx, args.command.removeprefix("train-"), args.input, args.out)
        print(_json.dumps({k: meta[k] for k in ("model_version", "checksum", "feature_version", "training_data",
                                                 "metrics")}, indent=2, ensure_ascii=False))
    elif args.command == "build-labelled":
        from medcorpus.classify.training import run_build_labelled

        print(run_build_labelled(ctx, args.from_, args.shared_data, args.jsonl).summary())
    elif args.command == "validate":
        return _validate(ctx, args.tables, args.version)
    elif args.command == "report":
        from medcorpus.views.report import build_report

        print(build_report(ctx, args.for_run))
    return 0


def _validate(ctx, tables: list[str], version: int | None) -> int:
    """`medcorpus validate TABLE...`: 0 when every table passed, 1 otherwise (the failures are printed)."""
    from medcorpus.core.warehouse import table_spec
    from medcorpus.quality.expectations import suite_tables
    from medcorpus.quality.validation import validate_table

    if tables == ["all"]:
        tables = [t for t in suite_tables() if ctx.warehouse.exists(t)]
    for table in tables:
        try:
            table_spec(table)
        except KeyError as err:
            raise MedcorpusError(str(err.args[0])) from None
    failed = 0
    for table in tables:
        outcome = validate_table(ctx, table, version=version)
        print(outcome.summary())
        if not outcome.success:
            failed += 1
            print(outcome.message())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
