"""The run report: one self-contained HTML page per run in ``<warehouse>/reports/run-<run_id>.html``.

Sections: the funnel (rows per stage and removals per rule, from ``run_log``), validation results (per
table version, with links into the Data Docs site), distributions (length, quality score, domain
probability, cluster sizes — from whichever tables exist), and the language and sub-domain mix.
Plots are matplotlib PNGs (Agg backend) embedded as data URIs, so the page is one file that can be
mailed or archived.

Every number comes from a small Spark aggregation (histogram bins are computed in Spark); nothing that
grows with the corpus is collected.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.warehouse import DOCUMENT_TABLES
from medcorpus.quality.validation import RESULTS_TABLE, data_docs_dir, reports_dir

if TYPE_CHECKING:
    from medcorpus.core.context import RunContext

log = logging.getLogger(__name__)

HIST_BINS = 30


@dataclass
class Section:
    title: str
    blocks: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# small aggregations
# ---------------------------------------------------------------------------------------------------
def latest_run_id(ctx: RunContext) -> str | None:
    if not ctx.warehouse.exists("run_log"):
        return None
    row = ctx.warehouse.read("run_log").orderBy(F.col("started_at").desc(), F.col("run_id").desc()).first()
    return row["run_id"] if row else None


def funnel_rows(ctx: RunContext, run_id: str) -> list[dict[str, Any]]:
    if not ctx.warehouse.exists("run_log"):
        return []
    rows = ctx.warehouse.read("run_log").filter(F.col("run_id") == run_id).orderBy("started_at").collect()
    return [r.asDict(recursive=True) for r in rows]


def histogram(df: DataFrame, column: str, bins: int = HIST_BINS, log10: bool = False) -> tuple[list[float], list[int]]:
    """(bin edges, counts) computed in Spark: min/max in one pass, bin counts in a second."""
    value = F.log10(F.col(column).cast("double") + 1) if log10 else F.col(column).cast("double")
    data = df.select(value.alias("v")).filter(F.col("v").isNotNull() & ~F.isnan("v"))
    bounds = data.agg(F.min("v").alias("lo"), F.max("v").alias("hi")).first()
    if bounds is None or bounds["lo"] is None:
        return [], []
    lo, hi = float(bounds["lo"]), float(bounds["hi"])
    width = (hi - lo) / bins if hi > lo else 1.0
    idx = F.least(F.floor((F.col("v") - F.lit(lo)) / F.lit(width)).cast("int"), F.lit(bins - 1))
    counts = {int(r["b"]): int(r["n"]) for r in data.groupBy(idx.alias("b")).agg(F.count(F.lit(1)).alias("n")).collect()}
    edges = [lo + i * width for i in range(bins + 1)]
    return edges, [counts.get(i, 0) for i in range(bins)]


def value_counts(df: DataFrame, column: str, top: int = 20) -> list[tuple[str, int]]:
    rows = (df.groupBy(column).agg(F.count(F.lit(1)).alias("n"))
            .orderBy(F.col("n").desc(), F.col(column).asc_nulls_last()).limit(top).collect())
    return [("null" if r[column] is None else str(r[column]), int(r["n"])) for r in rows]


def validation_rows(ctx: RunContext, run_id: str) -> list[dict[str, Any]]:
    """Per validated table version of the run: pass/fail, failure counts, docs link."""
    if not ctx.warehouse.exists(RESULTS_TABLE):
        return []
    df = ctx.warehouse.read(RESULTS_TABLE).filter(F.col("run_id") == run_id)
    failed_critical = (~F.col("success")) & (F.col("severity") == "critical")
    failed_other = (~F.col("success")) & (F.col("severity") != "critical")
    rows = (
        df.groupBy("validation_id", "table_name", "table_version", "stage")
        .agg(
            F.count(F.lit(1)).alias("expectations"),
            F.sum(failed_critical.cast("int")).alias("critical_failed"),
            F.sum(failed_other.cast("int")).alias("warnings"),
            F.max("docs_path").alias("docs_path"),
            F.max("validated_at").alias("validated_at"),
            F.concat_ws(", ", F.sort_array(F.collect_set(F.when(~F.col("success"), F.concat(
                F.col("expectation_type"), F.coalesce(F.concat(F.lit("("), F.col("column_name"), F.lit(")")), F.lit(""))))
            ))).alias("failed"),
        )
        .orderBy("validated_at")
        .collect()
    )
    return [r.asDict() for r in rows]


# ---------------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------------
def _figure(width: float = 7.0, height: float = 3.2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _img(fig: Any, alt: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def plot_histogram(edges: list[float], counts: list[int], title: str, xlabel: str, log10: bool = False) -> str:
    fig, ax = _figure()
    lefts = [10 ** e - 1 for e in edges[:-1]] if log10 else edges[:-1]
    widths = [(10 ** b - 1) - (10 ** a - 1) for a, b in zip(edges[:-1], edges[1:])] if log10 else \
        [b - a for a, b in zip(edges[:-1], edges[1:])]
    ax.bar(lefts, counts, width=widths, align="edge", color="#4C72B0", edgecolor="white")
    if log10:
        ax.set_xscale("symlog", linthresh=1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    return _img(fig, title)


def plot_bars(labels: list[str], values: list[int], title: str, horizontal: bool = False, color: str = "#55A868") -> str:
    fig, ax = _figure(height=max(2.6, 0.32 * len(labels) + 1.2) if horizontal else 3.2)
    if horizontal:
        ax.barh(labels[::-1], values[::-1], color=color)
        ax.set_xlabel("rows")
        ax.grid(axis="x", alpha=0.3)
    else:
        ax.bar(labels, values, color=color)
        ax.set_ylabel("rows")
        ax.tick_params(axis="x", rotation=30)
    ax.set_title(title)
    return _img(fig, title)


def plot_funnel(stages: list[dict[str, Any]]) -> str:
    fig, ax = _figure(height=3.6)
    names = [s["stage"] for s in stages]
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [s["rows_in"] for s in stages], width=0.4, label="rows in", color="#8C8C8C")
    ax.bar([i + 0.2 for i in x], [s["rows_out"] for s in stages], width=0.4, label="rows out", color="#4C72B0")
    ax.set_xticks(list(x), names, rotation=30)
    ax.set_ylabel("rows")
    ax.set_title("Rows per stage")
    ax.legend()
    return _img(fig, "Rows per stage")


# ---------------------------------------------------------------------------------------------------
# page
# ---------------------------------------------------------------------------------------------------
def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.2f}"
    return f"{v:,}" if isinstance(v, int) else html.escape(str(v))


def _first_with(ctx: RunContext, tables: tuple[str, ...], column: str) -> tuple[str, DataFrame] | None:
    for t in tables:
        if ctx.warehouse.exists(t):
            df = ctx.warehouse.read(t)
            if column in df.columns:
                return t, df
    return None


def _probability_column(df: DataFrame) -> str | None:
    for c in df.columns:
        lc = c.lower()
        if ("domain" in lc or "medical" in lc) and ("prob" in lc or lc.startswith("p_")):
            return c
    return None


def funnel_section(ctx: RunContext, run_id: str) -> Section:
    sec = Section("Funnel")
    stages = funnel_rows(ctx, run_id)
    if not stages:
        sec.blocks.append("<p>No run_log rows for this run.</p>")
        return sec
    sec.blocks.append(plot_funnel(stages))
    sec.blocks.append(_table(
        ["stage", "rows in", "rows out", "quarantined", "removed", "seconds", "table version", "note"],
        [[html.escape(s["stage"]), _num(s["rows_in"]), _num(s["rows_out"]), _num(s["rows_quarantined"]),
          _num(s["rows_removed"]), _num(s["seconds"]), _num(s["table_version"]), html.escape(s["note"] or "")]
         for s in stages]))
    reasons = [(f"{s['stage']}: {k}", int(v)) for s in stages for k, v in (s["removed_by_reason"] or {}).items() if v]
    reasons.sort(key=lambda kv: -kv[1])
    if reasons:
        sec.blocks.append("<h3>Removals per rule</h3>")
        sec.blocks.append(plot_bars([k for k, _ in reasons[:25]], [v for _, v in reasons[:25]],
                                    "Rows removed or quarantined per reason", horizontal=True, color="#C44E52"))
        sec.blocks.append(_table(["stage: reason", "rows"], [[html.escape(k), _num(v)] for k, v in reasons]))
    return sec


def validation_section(ctx: RunContext, run_id: str) -> Section:
    sec = Section("Validation (Great Expectations)")
    docs_index = data_docs_dir(ctx) / "index.html"
    if docs_index.exists():
        from medcorpus.quality.validation import write_offline_index

        offline = write_offline_index(data_docs_dir(ctx))
        extra = f' (<a id="data-docs-offline" href="data_docs/{offline.name}">offline index</a>)' if offline else ""
        sec.blocks.append('<p><a id="data-docs" href="data_docs/index.html">Data Docs: every suite and validation</a>'
                          f'{extra}</p>')
    rows = validation_rows(ctx, run_id)
    if not rows:
        sec.blocks.append("<p>No validation results for this run.</p>")
        return sec
    out = []
    for r in rows:
        status = '<span class="ok">passed</span>' if not r["critical_failed"] else '<span class="bad">FAILED</span>'
        link = f'<a href="{html.escape(r["docs_path"])}">page</a>' if r["docs_path"] else ""
        out.append([html.escape(r["table_name"]), _num(r["table_version"]), html.escape(r["stage"] or ""), status,
                    _num(r["expectations"]), _num(r["critical_failed"]), _num(r["warnings"]),
                    html.escape(r["failed"] or ""), link])
    sec.blocks.append(_table(["table", "version", "stage", "status", "expectations", "critical failed", "warnings",
                              "failed expectations", "Data Docs"], out))
    return sec


def distributions_section(ctx: RunContext) -> Section:
    sec = Section("Distributions")
    found = _first_with(ctx, DOCUMENT_TABLES, "char_count")
    if found:
        t, df = found
        edges, counts = histogram(df, "char_count", log10=True)
        if counts:
            sec.blocks.append(plot_histogram(edges, counts, f"Document length ({t})", "characters (log scale)", log10=True))
    found = _first_with(ctx, ("scored_documents", "unique_documents", "pretrain"), "quality_score")
    if found:
        t, df = found
        edges, counts = histogram(df, "quality_score", bins=25)
        if counts:
            sec.blocks.append(plot_histogram(edges, counts, f"Quality score ({t})", "quality score (0-5)"))
    for t in ("scored_documents", "unique_documents"):
        if ctx.warehouse.exists(t):
            df = ctx.warehouse.read(t)
            col = _probability_column(df)
            if col:
                edges, counts = histogram(df, col, bins=20)
                if counts:
                    sec.blocks.append(plot_histogram(edges, counts, f"Domain probability {col} ({t})", col))
                break
    if ctx.warehouse.exists("dedup_clusters"):
        sizes = ctx.warehouse.read("dedup_clusters").groupBy("cluster_id").agg(F.count(F.lit(1)).alias("cluster_size"))
        rows = value_counts(sizes, "cluster_size", top=40)
        rows.sort(key=lambda kv: int(kv[0]) if kv[0].isdigit() else math.inf)
        if rows:
            sec.blocks.append(plot_bars([k for k, _ in rows], [v for _, v in rows], "Dedup cluster sizes (clusters per size)",
                                        color="#8172B2"))
    if not sec.blocks:
        sec.blocks.append("<p>No document tables yet.</p>")
    return sec


def plot_reliability(table: list[dict[str, Any]], title: str) -> str:
    fig, ax = _figure(4.2, 3.6)
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfectly calibrated")
    ax.plot([r["mean_p"] for r in table], [r["observed_medical"] for r in table], marker="o", color="#4C72B0",
            label="out of fold")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted p_medical")
    ax.set_ylabel("observed share medical")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return _img(fig, title)


def calibration_section(ctx: RunContext) -> Section:
    """The domain model's reliability on sources it never saw (leave-one-source-out, from its model.json)."""
    from medcorpus.classify.scoring import resolve

    sec = Section("Domain classifier calibration")
    path = resolve(ctx.config.classify.domain_model_dir) / "model.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        sec.blocks.append(f"<p>No model metadata at {html.escape(str(path))}.</p>")
        return sec
    validation = meta.get("validation") or {}
    table = validation.get("reliability") or []
    if not table:
        sec.blocks.append("<p>This model carries no out-of-fold reliability table (it was not built by make models).</p>")
        return sec
    sec.blocks.append(plot_reliability(table, f"Reliability of {meta.get('model_version', 'the model')}"))
    overall = validation.get("overall", {})
    sec.blocks.append(f"<p>{html.escape(validation.get('method', ''))}. Precision {overall.get('precision')}, "
                      f"recall {overall.get('recall')}, F1 {overall.get('f1')} on {overall.get('n')} documents; "
                      f"threshold classify.medical_threshold = {ctx.config.classify.medical_threshold}.</p>")
    sec.blocks.append(_table(["bin", "documents", "mean p_medical", "observed medical"],
                             [[r["bin"], r["n"], r["mean_p"], r["observed_medical"]] for r in table]))
    return sec


def mix_section(ctx: RunContext) -> Section:
    sec = Section("Language and sub-domain mix")
    for t in ("documents", *[d for d in DOCUMENT_TABLES if d != "documents"][:1]):
        if ctx.warehouse.exists(t) and "lang" in ctx.warehouse.read(t).columns:
            counts = value_counts(ctx.warehouse.read(t), "lang")
            sec.blocks.append(plot_bars([k for k, _ in counts], [v for _, v in counts], f"Language ({t})"))
    for column in ("subdomain", "sub_domain", "domain"):
        found = _first_with(ctx, ("scored_documents", "unique_documents"), column)
        if found:
            t, df = found
            counts = value_counts(df, column)
            sec.blocks.append(plot_bars([k for k, _ in counts], [v for _, v in counts], f"{column} ({t})",
                                        color="#DD8452"))
    if ctx.warehouse.exists("pretrain"):
        df = ctx.warehouse.read("pretrain")
        rows = (df.groupBy("mixture", "component", "lang").agg(F.sum("token_estimate").alias("tokens"))
                .orderBy("mixture", "component", "lang").collect())
        totals: dict[str, int] = {}
        for r in rows:
            totals[r["mixture"]] = totals.get(r["mixture"], 0) + int(r["tokens"] or 0)
        sec.blocks.append("<h3>Pretraining mixtures (token shares)</h3>")
        sec.blocks.append(_table(["mixture", "component", "lang", "tokens", "share"], [
            [html.escape(r["mixture"]), html.escape(r["component"]), html.escape(r["lang"]), _num(int(r["tokens"] or 0)),
             f"{(int(r['tokens'] or 0) / totals[r['mixture']] if totals[r['mixture']] else 0):.1%}"] for r in rows]))
    if not sec.blocks:
        sec.blocks.append("<p>No tables with a language or domain column yet.</p>")
    return sec


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:1.6em;margin-bottom:0} .meta{color:#666;margin-top:4px}
h2{border-bottom:2px solid #4C72B0;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:12px 0;font-size:.9em} th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f3f5f9} td:first-child,th:first-child{text-align:left}
img.plot{display:block;max-width:100%;margin:12px 0;border:1px solid #eee}
.ok{color:#2e7d32;font-weight:600} .bad{color:#c62828;font-weight:700}
#image-status{color:#c62828}
"""

# Marks the page with how many images decoded (a person sees broken plots flagged; tests read the attribute).
_IMAGE_CHECK = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-total', imgs.length);
  document.body.setAttribute('data-images-loaded', ok);
  if (ok < imgs.length) {
    document.getElementById('image-status').textContent = (imgs.length - ok) + ' plot(s) failed to load';
  }
});
</script>
"""


def render_page(ctx: RunContext, run_id: str, sections: list[Section]) -> str:
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = []
    for sec in sections:
        anchor = sec.title.lower().split()[0]
        body.append(f'<section id="{html.escape(anchor)}"><h2>{html.escape(sec.title)}</h2>{"".join(sec.blocks)}</section>')
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>medcorpus run {html.escape(run_id)}</title><style>{_CSS}</style></head><body>"
        f"<h1>medcorpus run {html.escape(run_id)}</h1>"
        f'<p class="meta">warehouse {html.escape(ctx.warehouse.root)} · config {html.escape(ctx.config.hash())} · '
        f'generated {generated}</p><p id="image-status"></p>'
        + "".join(body) + _IMAGE_CHECK + "</body></html>"
    )


def build_report(ctx: RunContext, run_id: str | None = None) -> Path:
    """Write ``<warehouse>/reports/run-<run_id>.html`` (default: the newest run in run_log)."""
    run_id = run_id or latest_run_id(ctx)
    if run_id is None:
        from medcorpus.core.errors import TableMissingError

        raise TableMissingError("no runs in run_log yet: run the pipeline before `medcorpus report`")
    sections = [funnel_section(ctx, run_id), validation_section(ctx, run_id), distributions_section(ctx),
                calibration_section(ctx), mix_section(ctx)]
    out_dir = reports_dir(ctx)
    out_dir.mkdir(parents=True, exist_ok=True)
    from medcorpus.views.filter_report import write_filter_report  # examples per rule, signal histograms (+ JSON)

    sections.append(Section("Filter examples and signals", write_filter_report(ctx, out_dir, run_id)[0]))
    path = out_dir / f"run-{run_id}.html"
    path.write_text(render_page(ctx, run_id, sections), encoding="utf-8")
    write_stats(ctx, run_id, out_dir / f"run-{run_id}.stats.json")
    (out_dir / "latest.json").write_text(json.dumps({"run_id": run_id, "report": path.name}), encoding="utf-8")
    log.info("report: %s", path)
    return path


def run_stats(ctx: RunContext, run_id: str) -> dict[str, Any]:
    """The run's counters as data (what datatrove's stats.json holds): per stage rows in/out/quarantined/removed,
    removals per reason, seconds and the Delta version written; per validated table its expectation counts."""
    stages = []
    for r in funnel_rows(ctx, run_id):
        stages.append({k: r.get(k) for k in ("stage", "rows_in", "rows_out", "rows_quarantined", "rows_removed",
                                             "seconds", "table_version")}
                      | {"removed_by_reason": dict(sorted((r.get("removed_by_reason") or {}).items()))})
    validations = [{"table": v["table_name"], "version": v["table_version"], "stage": v["stage"],
                    "expectations": v["expectations"], "critical_failed": v["critical_failed"],
                    "warnings": v["warnings"], "failed": v["failed"] or ""} for v in validation_rows(ctx, run_id)]
    hashes = sorted({str(r["config_hash"]) for r in funnel_rows(ctx, run_id) if r.get("config_hash")})
    return {"run_id": run_id, "config_hash": hashes, "stages": stages, "validations": validations}


def write_stats(ctx: RunContext, run_id: str, path: Path) -> Path:
    path.write_text(json.dumps(run_stats(ctx, run_id), indent=2, ensure_ascii=False, default=str) + "\n",
                    encoding="utf-8")
    return path
