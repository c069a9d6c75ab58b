"""Great Expectations gates: validate a table version, record the result, stop the pipeline or a release.

* :func:`validate_table` runs the table's suite (``expectations/<table>.json``) with a GX 1.x checkpoint on
  the Spark DataFrame read from one pinned Delta version, appends one ``validation_results`` row per
  expectation and updates the Data Docs site in ``<warehouse>/reports/data_docs`` (a
  :class:`ValidationBatch` does both once for all the tables a stage wrote).
* :class:`StageGate` is what ``runner.run_pipeline`` calls after each stage: it validates every table the
  stage committed to (found from the Delta logs, so a new stage needs no registration here) and raises
  :class:`~medcorpus.core.errors.ValidationFailed` on a failed critical expectation, before anything downstream
  runs. The bookkeeping tables (``run_log``, ``quarantine``) are validated once, at the end of the run.
* :func:`assert_release_ready` refuses a release whose table versions did not pass.

The GX context is ephemeral (in memory, one per process); only the Data Docs pages and the
``validation_results`` table persist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.errors import TableMissingError, ValidationFailed
from medcorpus.core.warehouse import table_spec
from medcorpus.quality import expectations as exp_mod

if TYPE_CHECKING:
    from medcorpus.core.context import RunContext

log = logging.getLogger(__name__)

RESULTS_TABLE = "validation_results"
BOOKKEEPING_TABLES = ("run_log", "quarantine")
DOCS_SITE = "medcorpus"
_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")


# ---------------------------------------------------------------------------------------------------
# outcome
# ---------------------------------------------------------------------------------------------------
@dataclass
class ExpectationResult:
    index: int
    expectation_type: str
    column: str | None
    kwargs: dict[str, Any]
    severity: str
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    observed_value: Any = None
    sample: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    @property
    def label(self) -> str:
        target = self.column or (",".join(self.kwargs["column_list"]) if "column_list" in self.kwargs else "")
        return f"{self.expectation_type}({target})" if target else self.expectation_type

    def describe(self) -> str:
        parts = [self.label]
        if self.note:
            parts.append(f"[{self.note}]")
        if self.unexpected_count is not None:
            of = f" of {self.element_count:,}" if self.element_count is not None else ""
            parts.append(f"{self.unexpected_count:,}{of} rows unexpected")
        elif self.observed_value is not None:
            parts.append(f"observed {json.dumps(self.observed_value, default=str, ensure_ascii=False)[:300]}")
        if self.sample:
            parts.append("sample failing rows: " + json.dumps(self.sample, default=str, ensure_ascii=False)[:1200])
        return " — ".join(parts)


@dataclass
class ValidationOutcome:
    table: str
    version: int
    validation_id: str
    suite_hash: str
    results: list[ExpectationResult]
    seconds: float
    docs_path: str | None = None
    max_failures_shown: int = 5

    @property
    def critical_failures(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success and r.severity == exp_mod.CRITICAL]

    @property
    def warnings(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success and r.severity != exp_mod.CRITICAL]

    @property
    def success(self) -> bool:
        return not self.critical_failures

    def summary(self) -> str:
        ok = sum(r.success for r in self.results)
        status = "passed" if self.success else "FAILED"
        return (f"[validate] {self.table} v{self.version}: {status} — {ok}/{len(self.results)} expectations met, "
                f"{len(self.critical_failures)} critical and {len(self.warnings)} warning failures "
                f"in {self.seconds:.1f}s")

    def message(self) -> str:
        """The failure message: each failed critical expectation, the table version, sample failing rows."""
        failed = self.critical_failures
        lines = [f"table '{self.table}' version {self.version} failed {len(failed)} critical expectation(s) "
                 f"of suite expectations/{self.table}.json:"]
        for r in failed[: self.max_failures_shown]:
            lines.append("  - " + r.describe())
        if len(failed) > self.max_failures_shown:
            lines.append(f"  ... and {len(failed) - self.max_failures_shown} more")
        if self.docs_path:
            lines.append(f"  Data Docs: {self.docs_path}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# GX context (ephemeral, one per process and docs folder)
# ---------------------------------------------------------------------------------------------------
_GX: dict[str, Any] = {}


def reports_dir(ctx: RunContext) -> Path:
    """``<warehouse>/reports`` for a local warehouse; ``build/reports`` beside an s3a:// one."""
    root = ctx.warehouse.root
    base = Path("build") if "://" in root and not root.startswith("file:") else Path(root.removeprefix("file:"))
    return (base / ctx.config.validate_.reports_dir).resolve()


def data_docs_dir(ctx: RunContext) -> Path:
    return reports_dir(ctx) / "data_docs"


def gx_context(ctx: RunContext) -> Any:
    """The process's ephemeral GX context with a Data Docs site in ``<warehouse>/reports/data_docs``."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    docs = str(data_docs_dir(ctx))
    if docs in _GX:
        return _GX[docs]
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        site_name=DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs},
        },
    )
    # validate_table persists the table version itself (validate.persist); GX's own persist of the same
    # DataFrame was the "CacheManager: Asked to cache already cached data" WARN of every validation
    context.data_sources.add_spark(name="medcorpus", persist=False)
    _GX[docs] = context
    return context


def described(expectations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each SQL expectation gets its note as ``description``: Data Docs show that line, not the raw query."""
    out = []
    for e in expectations:
        notes = (e.get("meta") or {}).get("notes")
        if notes and not e.get("description") and e["type"] == "unexpected_rows_expectation":
            e = {**e, "description": str(notes)}
        out.append(e)
    return out


_CHECKPOINTS: dict[tuple[int, str, str, str, int], Any] = {}


def _checkpoint(context: Any, table: str, suite: dict[str, Any], result_format: str, sample_rows: int) -> Any:
    """The table's suite, validation definition and checkpoint in the ephemeral context, built once per
    process and suite (about a second each time they are rebuilt). The checkpoint has no Data Docs action:
    :class:`ValidationBatch` renders the pages of all the validations of a stage in one build."""
    key = (id(context), table, exp_mod.suite_hash(suite), result_format, sample_rows)
    if key not in _CHECKPOINTS:
        _CHECKPOINTS[key] = _new_checkpoint(context, table, suite, result_format, sample_rows)
    return _CHECKPOINTS[key]


def _new_checkpoint(context: Any, table: str, suite: dict[str, Any], result_format: str, sample_rows: int) -> Any:
    import great_expectations as gx

    datasource = context.data_sources.get("medcorpus")
    try:
        asset = datasource.get_asset(table)
    except LookupError:
        asset = datasource.add_dataframe_asset(name=table)
    try:
        batch_definition = asset.get_batch_definition("whole_table")
    except KeyError:
        batch_definition = asset.add_batch_definition_whole_dataframe("whole_table")
    gx_suite = context.suites.add_or_update(
        gx.ExpectationSuite(name=table, expectations=described(suite["expectations"]), meta=suite.get("meta", {}))
    )
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=table, data=batch_definition, suite=gx_suite)
    )
    return context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=table,
            validation_definitions=[definition],
            actions=[],
            result_format={"result_format": result_format,
                           "partial_unexpected_count": 0 if result_format == "BASIC" else sample_rows},
        )
    )


# ---------------------------------------------------------------------------------------------------
# validate one table version
# ---------------------------------------------------------------------------------------------------
def register_views(ctx: RunContext) -> None:
    """Temporary views the suites' queries join: mixture targets from the config, and run_log."""
    spark = ctx.spark
    rows = []
    for name, mixture in (getattr(ctx.config.datasets, "mixtures", None) or {}).items():
        for dimension, shares in (("component", mixture.components), ("language", mixture.languages)):
            total = float(sum(shares.values())) or 1.0
            rows += [(name, dimension, key, float(v) / total, float(mixture.tolerance)) for key, v in shares.items()]
    spark.createDataFrame(rows, "mixture string, dimension string, value string, share double, tolerance double") \
        .createOrReplaceTempView(exp_mod.MIXTURE_TARGETS_VIEW)
    ctx.warehouse.read_or_empty("run_log").createOrReplaceTempView(exp_mod.RUN_LOG_VIEW)


#: outcomes of this process by (warehouse, run id, table, version): a version is validated once per run
_VALIDATED: dict[tuple[str, str, str, int], ValidationOutcome] = {}


class ValidationBatch:
    """The validations of one step (a stage's tables, or one ``validate`` command), recorded together.

    Each validation alone appended its rows to ``validation_results`` (a Delta commit, with a MERGE and an
    emptiness check, 3-6 s) and rebuilt the Data Docs index (about 1.5 s). A batch does both once: one
    append of every row (results already recorded are never written twice), one Data Docs build of all
    its validations, one offline index. :meth:`flush` must run even when a validation failed, so the
    failure is on record (``StageGate`` flushes in a ``finally``).
    """

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.items: list[tuple[ValidationOutcome, str | None, Any, Any]] = []

    def add(self, outcome: ValidationOutcome, stage: str | None, context: Any, identifier: Any) -> None:
        self.items.append((outcome, stage, context, identifier))

    def flush(self, docs: DocsBuild | None = None) -> None:
        """Record the outcomes; render their Data Docs now, or add them to ``docs`` (rendered later, together
        with other batches': the pipeline renders once per run)."""
        if not self.items:
            return
        items, self.items = self.items, []
        own = docs is None
        docs = DocsBuild(self.ctx) if docs is None else docs
        for outcome, _, ctx_, identifier in items:
            docs.add(ctx_, identifier)
            outcome.docs_path = _docs_path(ctx_, identifier, reports_dir(self.ctx))
        record_outcomes(self.ctx, [(outcome, stage) for outcome, stage, _, _ in items])
        if own:
            docs.build()


class DocsBuild:
    """Validation pages to render in one Data Docs build (each build re-renders the index, ~1.5 s)."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.context: Any = None
        self.identifiers: list[Any] = []

    def add(self, context: Any, identifier: Any) -> None:
        self.context = context
        self.identifiers.append(identifier)

    def build(self) -> None:
        if not self.identifiers:
            return
        identifiers, self.identifiers = self.identifiers, []
        _build_docs(self.context, identifiers)
        if "://" not in str(data_docs_dir(self.ctx)):
            write_offline_index(data_docs_dir(self.ctx))


def _build_docs(context: Any, identifiers: list[Any]) -> None:
    """Render the validation pages (and their suites' pages) and the index, once for the batch."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    suites = {ExpectationSuiteIdentifier(name=i.expectation_suite_identifier.name) for i in identifiers}
    try:
        context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=[*identifiers, *sorted(suites, key=str)])
    except Exception as err:  # docs are a convenience: never fail a validation over them
        log.warning("Data Docs were not built: %s", err)


def validate_table(
    ctx: RunContext, table: str, *, version: int | None = None, stage: str | None = None,
    batch: ValidationBatch | None = None,
) -> ValidationOutcome:
    """Validate ``table`` at ``version`` (default: current) with its suite and return the outcome. The
    outcome is recorded (``validation_results``, Data Docs) with ``batch`` when given, at once otherwise."""
    own = batch is None
    batch = ValidationBatch(ctx) if batch is None else batch
    t0 = time.perf_counter()
    cfg = ctx.config.validate_
    if version is None:
        version = ctx.warehouse.version(table)
        if version is None:
            raise TableMissingError(f"cannot validate '{table}': the table does not exist at {ctx.warehouse.path(table)}")
    suite = exp_mod.load_suite(table, ctx.config)
    suite_hash = exp_mod.suite_hash(suite)
    df = ctx.warehouse.read(table, version)
    if cfg.persist:
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        register_views(ctx)
        context = gx_context(ctx)
        checkpoint = _checkpoint(context, table, suite, cfg.result_format, cfg.sample_rows)
        from great_expectations.core.run_identifier import RunIdentifier

        run = checkpoint.run(  # Data Docs name the validation after the medcorpus run (not "__none__")
            batch_parameters={"dataframe": df}, expectation_parameters=exp_mod.suite_parameters(ctx.config),
            run_id=RunIdentifier(run_name=ctx.run_id),
        )
        (identifier, suite_result), = run.run_results.items()
        order = {_signature(e["type"], e["kwargs"]): i for i, e in enumerate(suite["expectations"])}
        results = sorted((_expectation_result(order, r) for r in suite_result.results), key=lambda r: r.index)
        used: set[int] = set()
        for r in results:  # an expectation GX reports with changed kwargs still gets its own key
            if r.index in used:
                r.index = max(used | set(order.values())) + 1
            used.add(r.index)
        rows = None
        keys = list(table_spec(table).key)
        for r in results:
            if r.column is not None or r.expectation_type == "expect_compound_columns_to_be_unique":
                rows = df.count() if rows is None else rows
                r.element_count = rows
            if r.success and r.unexpected_count is None and r.expectation_type in _COUNTABLE:
                r.unexpected_count = 0
            elif not r.success:
                _explain_failure(ctx, df, r, keys, cfg.sample_rows)
    finally:
        if cfg.persist:
            df.unpersist()
    outcome = ValidationOutcome(
        table=table,
        version=int(version),
        validation_id=hashlib.sha256(f"{ctx.run_id}#{table}#{version}#{suite_hash}".encode()).hexdigest()[:32],
        suite_hash=suite_hash,
        results=results,
        seconds=round(time.perf_counter() - t0, 3),
        max_failures_shown=cfg.max_failures_shown,
    )
    batch.add(outcome, stage, context, identifier)
    _VALIDATED[(ctx.warehouse.root, ctx.run_id, table, int(version))] = outcome
    if own:
        batch.flush()
    log.info(outcome.summary())
    for r in outcome.warnings:
        log.warning("[validate] %s v%s warning: %s", table, version, r.describe())
    return outcome


def _signature(etype: str, kwargs: dict[str, Any]) -> str:
    kw = {k: v for k, v in kwargs.items() if k not in ("batch_id", "result_format")}
    return etype + json.dumps(kw, sort_keys=True, default=str)


def _expectation_result(order: dict[str, int], r: Any) -> ExpectationResult:
    """Our record of one GX result; ``index`` is the expectation's position in the suite file."""
    config = r.expectation_config
    raw_kwargs = dict(config.kwargs)
    kwargs = {k: v for k, v in raw_kwargs.items() if k not in ("batch_id", "result_format")}
    res = r.result or {}
    severity = getattr(config.severity, "value", config.severity) or exp_mod.CRITICAL
    unexpected = res.get("unexpected_count")
    if config.type == "unexpected_rows_expectation" and "observed_value" in res:
        unexpected = res["observed_value"]
    return ExpectationResult(
        index=order.get(_signature(config.type, raw_kwargs), len(order)),
        expectation_type=config.type,
        column=kwargs.get("column"),
        kwargs=kwargs,
        severity=str(severity),
        success=bool(r.success),
        element_count=res.get("element_count"),
        unexpected_count=unexpected,
        observed_value=None if unexpected is not None else res.get("observed_value"),
        note=(config.meta or {}).get("notes"),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value if not isinstance(value, str) else value[:200]
    return str(value)[:200]


_ROW_CONDITIONS = {
    "expect_column_values_to_not_be_null": lambda c, kw: F.col(c).isNull(),
    "expect_column_values_to_be_in_set": lambda c, kw: F.col(c).isNotNull() & ~F.col(c).isin(*kw["value_set"]),
    "expect_column_values_to_be_between": lambda c, kw: F.col(c).isNotNull() & ~(
        (F.col(c) >= F.lit(kw["min_value"]) if kw.get("min_value") is not None else F.lit(True))
        & (F.col(c) <= F.lit(kw["max_value"]) if kw.get("max_value") is not None else F.lit(True))),
    "expect_column_value_lengths_to_be_between": lambda c, kw: F.col(c).isNotNull() & ~(
        (F.length(c) >= kw["min_value"] if kw.get("min_value") is not None else F.lit(True))
        & (F.length(c) <= kw["max_value"] if kw.get("max_value") is not None else F.lit(True))),
    "expect_column_value_lengths_to_equal": lambda c, kw: F.col(c).isNotNull() & (F.length(c) != kw["value"]),
    "expect_column_values_to_not_match_regex_list": lambda c, kw: F.col(c).isNotNull() & _any_rlike(c, kw["regex_list"]),
}


def _any_rlike(column: str, patterns: list[str]) -> Any:
    cond = F.lit(False)
    for p in patterns:
        cond = cond | F.col(column).rlike(p)
    return cond


_COUNTABLE = {*_ROW_CONDITIONS, "expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique",
              "unexpected_rows_expectation"}
_BATCH_VIEW = "medcorpus_validated_batch"


def _explain_failure(ctx: RunContext, df: DataFrame, r: ExpectationResult, keys: list[str], n: int) -> None:
    """Fill the unexpected row count and up to ``n`` failing rows (keys + failing column) of a failure.

    GX runs with a lean result format (fast); only failed expectations pay for these extra queries.
    """
    columns = [c for c in keys if c in df.columns]
    if r.expectation_type in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
        group = [r.column] if r.column else list(r.kwargs.get("column_list", []))
        failing = df.groupBy(*group).agg(F.count(F.lit(1)).alias("copies")).filter(F.col("copies") > 1)
        counted = failing.agg(F.sum("copies").alias("n")).first()
        rows = failing.orderBy(F.col("copies").desc(), *group).limit(n).collect()
        r.unexpected_count = int(counted["n"] or 0) if counted else 0
    elif r.column and r.column in df.columns and r.expectation_type in _ROW_CONDITIONS:
        cond = _ROW_CONDITIONS[r.expectation_type](r.column, r.kwargs)
        selected = list(dict.fromkeys([*columns, r.column]))
        failing = df.filter(cond).select(*selected)
        r.unexpected_count = failing.count()
        rows = failing.orderBy(*selected).limit(n).collect()
    elif r.expectation_type == "unexpected_rows_expectation":
        df.createOrReplaceTempView(_BATCH_VIEW)
        query = str(r.kwargs["unexpected_rows_query"]).format(batch=_BATCH_VIEW)
        rows = ctx.spark.sql(query).limit(n).collect()
    else:
        return
    r.sample = [{k: _jsonable(v) for k, v in row.asDict().items()} for row in rows]


OFFLINE_INDEX = "offline_index.html"


def write_offline_index(docs: Path) -> Path | None:
    """``<data_docs>/offline_index.html``: every suite and validation page as a plain HTML table.

    GX's own index.html draws its table with JavaScript from CDNs, so it is blank without internet; this page
    needs nothing but the files next to it. Validations are grouped by run (GX's run name = the medcorpus run id).
    """
    import html as _html

    if not docs.is_dir():
        return None
    rows = []
    for page in sorted((docs / "validations").glob("*/*/*/*.html")):
        suite, run_name, run_time = page.relative_to(docs / "validations").parts[:3]
        rows.append((run_name, run_time, suite, page.relative_to(docs).as_posix()))
    rows.sort(key=lambda r: (r[1], r[2]), reverse=True)
    suites = sorted(p.relative_to(docs).as_posix() for p in (docs / "expectations").glob("*.html"))
    esc = _html.escape
    body = ["<!doctype html><html><head><meta charset='utf-8'><title>medcorpus Data Docs (offline index)</title>",
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
            "tr:nth-child(even){background:#f4f4f4}</style></head><body>",
            "<h1>Data Docs: validations by run</h1>",
            f"<p>{len(rows)} validation pages, {len(suites)} suites. <a href='index.html'>GX index</a> "
            "(needs internet for its table).</p>",
            "<table><tr><th>run id</th><th>run time</th><th>table (suite)</th><th>page</th></tr>"]
    body += [f"<tr><td>{esc(run)}</td><td>{esc(when)}</td><td>{esc(suite)}</td>"
             f"<td><a href='{esc(link)}'>validation</a></td></tr>" for run, when, suite, link in rows]
    body += ["</table><h2>Expectation suites</h2><ul>"]
    body += [f"<li><a href='{esc(s)}'>{esc(Path(s).stem)}</a></li>" for s in suites]
    body += ["</ul></body></html>"]
    out = docs / OFFLINE_INDEX
    out.write_text("\n".join(body) + "\n", encoding="utf-8")
    return out


def _docs_path(context: Any, identifier: Any, base: Path) -> str | None:
    try:
        # the page's path whether it is rendered yet or not (a pipeline renders all its pages at the end)
        urls = context.get_docs_sites_urls(resource_identifier=identifier, site_name=DOCS_SITE, only_if_exists=False)
    except Exception as err:  # docs are a convenience: never fail a validation over them
        log.debug("no Data Docs url: %s", err)
        return None
    if not urls or not urls[0].get("site_url"):
        return None
    path = Path(urls[0]["site_url"].removeprefix("file://"))
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def record_outcome(ctx: RunContext, outcome: ValidationOutcome, stage: str | None) -> None:
    """One ``validation_results`` row per expectation."""
    record_outcomes(ctx, [(outcome, stage)])


def record_outcomes(ctx: RunContext, outcomes: list[tuple[ValidationOutcome, str | None]]) -> None:
    """The rows of every outcome in one append; a validation_id already in the table is not written again
    (its rows are the same validation: same run, table version and suite)."""
    rows = [row for outcome, stage in outcomes for row in _result_rows(ctx, outcome, stage)]
    df = ctx.spark.createDataFrame(rows, table_spec(RESULTS_TABLE).schema)
    ids = sorted({outcome.validation_id for outcome, _ in outcomes})
    if ctx.warehouse.exists(RESULTS_TABLE):
        done = [r[0] for r in ctx.warehouse.read(RESULTS_TABLE).filter(F.col("validation_id").isin(ids))
                .select("validation_id").distinct().collect()]  # at most len(ids) rows
        if done:
            df = df.filter(~F.col("validation_id").isin(done))
            if len(done) == len(ids):
                return
    ctx.warehouse.append_rows(RESULTS_TABLE, df, stage="validate")


def _result_rows(ctx: RunContext, outcome: ValidationOutcome, stage: str | None) -> list[tuple[Any, ...]]:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return [
        (
            outcome.validation_id,
            f"{r.index:03d}:{r.expectation_type}",
            ctx.run_id,
            stage,
            outcome.table,
            outcome.version,
            outcome.suite_hash,
            r.expectation_type,
            r.column,
            json.dumps(r.kwargs, default=str, ensure_ascii=False, sort_keys=True),
            r.severity,
            r.success,
            r.element_count,
            r.unexpected_count,
            None if r.observed_value is None else json.dumps(r.observed_value, default=str, ensure_ascii=False),
            json.dumps(r.sample, default=str, ensure_ascii=False) if r.sample else None,
            outcome.docs_path,
            now,
        )
        for r in outcome.results
    ]


# ---------------------------------------------------------------------------------------------------
# the pipeline gate
# ---------------------------------------------------------------------------------------------------
def delta_versions(ctx: RunContext, tables: list[str]) -> dict[str, int | None]:
    """Latest commit version per table from a listing of its ``_delta_log`` (no Spark job)."""
    jvm = ctx.spark._jvm  # type: ignore[attr-defined]
    assert jvm is not None  # a live session has its JVM view
    conf = ctx.spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    out: dict[str, int | None] = {}
    for table in tables:
        log_dir = jvm.org.apache.hadoop.fs.Path(ctx.warehouse.path(table) + "/_delta_log")
        fs = log_dir.getFileSystem(conf)
        if not fs.exists(log_dir):
            out[table] = None
            continue
        versions = [int(m.group(1)) for s in fs.listStatus(log_dir) if (m := _COMMIT_FILE.match(s.getPath().getName()))]
        out[table] = max(versions) if versions else None
    return out


def validated_in_run(ctx: RunContext, table: str, version: int) -> tuple[int, ValidationOutcome] | None:
    """This process's outcome for ``table`` at ``version`` in this run, or for the version whose data it holds:
    walking back over commits that only set table properties (the release's retention commit makes a new
    version of every dataset table; the gate validated the one before, and scanning it again took ~5 s each)."""
    while version >= 0:
        done = _VALIDATED.get((ctx.warehouse.root, ctx.run_id, table, version))
        if done is not None:
            return version, done
        if version == 0 or not ctx.warehouse.sets_only_properties(table, version):
            return None
        version -= 1
    return None


class StageGate:
    """Validates what each stage wrote, before the next stage runs (see :func:`runner.run_pipeline`)."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.enabled = ctx.config.validate_.enabled
        self.outcomes: list[ValidationOutcome] = []
        self._tables = [t for t in exp_mod.suite_tables() if t not in ctx.config.validate_.skip_tables]
        self._start = delta_versions(ctx, self._tables) if self.enabled else {}
        self._seen = dict(self._start)
        self.docs = DocsBuild(ctx)  # every validation's page, rendered once: at finish, on failure, or close

    def after(self, stage: str) -> list[ValidationOutcome]:
        """Validate the tables ``stage`` committed to; raise ValidationFailed on a critical failure."""
        if not self.enabled:
            return []
        now = delta_versions(self.ctx, self._tables)
        changed = [t for t in self._tables
                   if now[t] is not None and now[t] != self._seen.get(t) and t not in BOOKKEEPING_TABLES]
        self._seen = now
        return self._check_all([(t, now[t]) for t in changed], stage)

    def finish(self) -> list[ValidationOutcome]:
        """Validate the bookkeeping tables the run appended to (run_log, quarantine), then render the run's
        Data Docs."""
        if not self.enabled:
            return []
        now = delta_versions(self.ctx, self._tables)
        changed = [t for t in BOOKKEEPING_TABLES
                   if t in now and now[t] is not None and now[t] != self._start.get(t)]
        try:
            return self._check_all([(t, now[t]) for t in changed], "run")
        finally:
            self.close()

    def close(self) -> None:
        """Render the Data Docs of the validations so far (the pipeline calls it also when a stage failed)."""
        self.docs.build()

    def _check_all(self, tables: list[tuple[str, int | None]], stage: str) -> list[ValidationOutcome]:
        """Validate every table, record them as one batch (also when one failed), then stop the pipeline
        on a failed critical expectation."""
        batch = ValidationBatch(self.ctx)
        outcomes = []
        try:
            for table, version in tables:
                found = validated_in_run(self.ctx, table, int(version if version is not None else -1))
                if found is not None:  # e.g. the release validated the version it pinned: not twice
                    same, done = found
                    data = "" if same == version else f" (the data of v{same}: later commits only set table properties)"
                    log.info("[validate] %s v%s%s: already validated in this run (%s)", table, version, data,
                             "passed" if done.success else "FAILED")
                    outcomes.append(done)
                    continue
                outcomes.append(validate_table(self.ctx, table, version=version, stage=stage, batch=batch))
        finally:
            batch.flush(self.docs)
        self.outcomes += outcomes
        failed = [o for o in outcomes if not o.success]
        if failed:
            self.close()  # the failure's page exists when the error names it
            raise ValidationFailed(
                f"stage '{stage}' wrote data that failed validation; the pipeline stopped before the "
                f"next stage.\n" + "\n".join(o.message() for o in failed)
            )
        return outcomes


# ---------------------------------------------------------------------------------------------------
# releases
# ---------------------------------------------------------------------------------------------------
def latest_results(ctx: RunContext, table: str, version: int) -> list[dict[str, Any]]:
    """Rows of the newest validation of ``table`` at ``version`` (empty when never validated)."""
    if not ctx.warehouse.exists(RESULTS_TABLE):
        return []
    rows = ctx.warehouse.read(RESULTS_TABLE).filter(
        (F.col("table_name") == table) & (F.col("table_version") == version))
    newest = rows.groupBy("validation_id").agg(F.max("validated_at").alias("at")).orderBy(F.col("at").desc()).first()
    if newest is None:
        return []
    return [r.asDict() for r in rows.filter(F.col("validation_id") == newest["validation_id"]).collect()]


def assert_release_ready(
    ctx: RunContext, tables: list[str] | tuple[str, ...], versions: dict[str, int] | None = None
) -> None:
    """Raise ValidationFailed unless every table (at ``versions``, default current) passed its suite.

    A table version never validated (e.g. written by a stage run on its own) is validated now, unless its
    data is that of a validated version (the commits since then only set table properties).
    """
    problems = []
    for table in tables:
        version = (versions or {}).get(table)
        if version is None:
            version = ctx.warehouse.version(table)
        if version is None:
            problems.append(f"table '{table}' does not exist")
            continue
        validated, rows = version, latest_results(ctx, table, version)
        while not rows and validated > 0 and ctx.warehouse.sets_only_properties(table, validated):
            # e.g. the release's own retention commit: the data is that of the version before, which the
            # pipeline's gate validated (validating it again scanned every dataset table a second time)
            validated -= 1
            rows = latest_results(ctx, table, validated)
        if not rows:
            outcome = validate_table(ctx, table, version=version, stage="release")
            if not outcome.success:
                problems.append(outcome.message())
            continue
        if validated != version:
            log.info("[validate] %s v%d: the data of v%d (later commits only set table properties), validated "
                     "in run %s", table, version, validated, rows[0]["run_id"])
        failed = [r for r in rows if not r["success"] and r["severity"] == exp_mod.CRITICAL]
        if failed:
            same = f" at version {validated}; the later commits only set table properties" if validated != version else ""
            lines = [f"table '{table}' version {version} failed {len(failed)} critical expectation(s) "
                     f"(validated in run {rows[0]['run_id']}{same}):"]
            for r in sorted(failed, key=lambda r: r["expectation_key"])[: ctx.config.validate_.max_failures_shown]:
                target = f"({r['column_name']})" if r["column_name"] else ""
                lines.append(f"  - {r['expectation_type']}{target}: {r['unexpected_count']} rows unexpected; "
                             f"sample failing rows: {r['sample'] or '[]'}")
            problems.append("\n".join(lines))
    if problems:
        raise ValidationFailed("release refused: not every table passed validation.\n" + "\n".join(problems))
