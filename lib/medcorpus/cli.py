"""The ``medcorpus`` command. ``jobs/*.py`` are thin spark-submit wrappers around it.

Fails fast — before any Spark work — on a bad config key or a missing input path, with one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from medcorpus.core.config import Config, load_config
from medcorpus.core.errors import MedcorpusError

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

    p = sub.add_parser("dedup", help="scored/clean documents -> dedup_clusters + unique_documents (exact + MinHash LSH)")
    _common(p)
    p = sub.add_parser("decontaminate", help="unique_documents overlapping benchmark test items -> contamination_hits")
    _common(p)

    p = sub.add_parser("filter", help="documents -> clean_documents (rule filters, PII redaction) + filtered_out")
    _common(p)
    p.add_argument("--explain", metavar="DOC_ID", help="print every rule's value for one document; writes nothing")

    for name, text in (
        ("annotate", "LLM: two labelling rounds (domain, 0-5 quality) -> annotations, labelled_domain/quality"),
        ("translate", "LLM: classical -> modern Chinese by paragraph -> translations"),
        ("generate-qa", "LLM: QA pairs from documents -> generated_qa (sft messages format)"),
        ("judge", "LLM: a doctor answer vs the original, scored on 4 aspects -> judged_preferences"),
    ):
        p = sub.add_parser(name, help=text + " (needs --set llm.base_url=...)")
        _common(p)

    for name, text in (("sft", "import the configured SFT sources -> sft (Deita selection, ConFilter)"),
                       ("preference", "sft -> preference (objective and subjective DPO pairs)"),
                       ("pretrain", "documents (+ sft) -> pretrain (the configured mixtures)")):
        p = sub.add_parser(name, help=text)
        _common(p)
    p = sub.add_parser("release", help="record a named release: Delta versions of sft, preference, pretrain")
    _common(p)
    p.add_argument("name")
    p = sub.add_parser("export", help="write a release's shards + manifest (reads the release's Delta versions)")
    _common(p)
    p.add_argument("name")
    p.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    p.add_argument("--out", required=True, help="output folder; files go to OUT/NAME/")

    p = sub.add_parser("classify", help="clean_documents (else documents) -> scored_documents (domain, quality)")
    _common(p)
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

    p = sub.add_parser("run", help="the whole pipeline on the given sources (default: the demo corpus)")
    _common(p)
    p.add_argument("sources", nargs="*", help="files or folders; default: build/demo (generated if absent)")
    p.add_argument("--until", help="stop after this stage")

    p = sub.add_parser("validate", help="run a table's Great Expectations suite (exit 1 on a critical failure)")
    _common(p)
    p.add_argument("tables", nargs="+", metavar="TABLE", help="table name(s), or 'all' for every existing table")
    p.add_argument("--version", type=int, help="Delta version to validate (default: current)")

    p = sub.add_parser("report", help="write the run report (funnel, validation, plots) into <warehouse>/reports/")
    _common(p)
    p.add_argument("--for-run", help="run id to report on (default: the newest run in run_log)")

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
            check_export_target(Path(args.out), args.name)
    if args.command == "run" and args.until is not None:
        from medcorpus.core.pipeline import check_until

        check_until(args.until)
    check_warehouse(config.warehouse, config.s3, writable=args.command not in READ_ONLY_COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(getattr(args, "verbose", False))
    try:
        return _dispatch(args)
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
        from medcorpus.llm.stages import check_llm_ready

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
    from medcorpus.core.session import build_spark

    spark = build_spark(config)
    ctx = runner.RunContext.create(spark, config)
    log.info("run %s config %s warehouse %s", ctx.run_id, config.hash(), config.warehouse)
    if args.command == "ingest":
        runner.run_ingest(ctx, sources, args.format)
    elif args.command == "dedup":
        from medcorpus.dedup.minhash import run_dedup

        run_dedup(ctx)
    elif args.command == "decontaminate":
        from medcorpus.dedup.decontaminate import run_decontaminate

        run_decontaminate(ctx)
    elif args.command == "normalize":
        runner.run_normalize(ctx)
    elif args.command == "filter":
        from medcorpus.filters import rules as filters

        if args.explain:
            print(filters.explain_document(ctx, args.explain))
        else:
            print(filters.run_filter(ctx).summary())
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
    elif args.command in ("annotate", "translate", "generate-qa", "judge"):
        from medcorpus.llm.stages import LLM_STAGES

        print(LLM_STAGES[args.command](ctx).summary())
    elif args.command in ("sft", "preference", "pretrain"):
        from medcorpus.datasets import stages as datasets

        print({"sft": datasets.run_sft, "preference": datasets.run_preference,
               "pretrain": datasets.run_pretrain}[args.command](ctx).summary())
    elif args.command == "release":
        from medcorpus.datasets.release import run_release

        print(run_release(ctx, args.name).summary())
    elif args.command == "export":
        from medcorpus.datasets.release import export_release

        print(export_release(ctx, args.name, args.format, args.out))
    elif args.command == "classify":
        from medcorpus.classify.scoring import run_classify

        print(run_classify(ctx).summary())
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
    elif args.command == "tables":
        from medcorpus.views.tables import tables_overview

        print(tables_overview(ctx))
    elif args.command == "history":
        from medcorpus.views.tables import table_history

        print(table_history(ctx, args.table, args.limit))
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
