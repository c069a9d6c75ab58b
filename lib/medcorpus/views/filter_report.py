"""Beside the run report, what Data-Juicer and datatrove users look at after a filter run.

* **Example documents per filter rule**: for each rule, a few documents it removed (``filtered_out``) and a
  few kept documents (``clean_documents``). Both tables hold the text the filter stage redacted; the
  examples are redacted once more with the same PII policy (idempotent: placeholders match no pattern) and
  cut to ``EXAMPLE_CHARS`` characters. They are chosen deterministically, the smallest ``xxhash64(doc_id)``
  per rule, by ``row_number`` over a window in Spark, so only ``per_rule`` rows per rule are collected.
* **A histogram of each filter signal against its threshold**: the ``signals`` map of every document the
  filter scored (``filtered_out`` ∪ ``clean_documents``), in ``bins`` fixed-width bins over
  [min(values, thresholds), max(values, thresholds)] (on log10(1 + x) for a signal such as length that
  reaches ``LOG_SCALE_FROM``; the JSON edges are in the signal's own units), computed in Spark (min/max
  in one aggregation, the bin counts in one ``groupBy``). Thresholds come from the rules themselves (``filters.rules.rules``), per
  language where they differ. A rule's gates (e.g. "only documents of >= N lines") are not drawn.

Both are written as JSON beside the report (``run-<id>.filter_examples.json``,
``run-<id>.signal_histograms.json``) and drawn in the page as HTML tables and inline SVG (no JavaScript, no
network: the page works offline). They describe the tables as they are (every run's filter output so far).
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from medcorpus.core.context import RunContext

EXAMPLE_CHARS = 300
EXAMPLES_PER_RULE = 3
SIGNAL_BINS = 20
#: a signal whose values and thresholds are >= 0 and reach this is binned on log10(1 + x) (length: words
#: or characters up to millions), the others on x
LOG_SCALE_FROM = 1000.0

_NUMBER = r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


def _parse_threshold(text: str) -> tuple[str, float] | None:
    """(operator, number) of a rule's threshold text: ``"> 0.3"``, ``"< 50"``, or the lexicon form
    ``">= 3 hits and >= 0.5 per 1k chars"`` (whose signal is the per-1k density)."""
    density = re.search(rf">=\s*({_NUMBER}) per 1k", text)
    if density:
        return ">=", float(density.group(1))
    m = re.match(rf"\s*(>=|<=|>|<)\s*({_NUMBER})", text)
    return (m.group(1), float(m.group(2))) if m else None


def rule_thresholds(ctx: RunContext) -> list[dict[str, Any]]:
    """Every rule in checking order: its name, signal, and threshold per language (``en`` and ``zh``, the two
    sides of the rules' ``is_en``), from the rules' own threshold columns."""
    from medcorpus.filters.rules import rules

    found = rules(ctx.config.filter)
    langs = ctx.spark.createDataFrame([("en",), ("zh",)], "lang string")
    row = langs.select(F.col("lang"), *[r.threshold.alias(f"t{i}") for i, r in enumerate(found)]).collect()
    out = []
    for i, rule in enumerate(found):
        by_lang = {}
        for r in row:
            parsed = _parse_threshold(str(r[f"t{i}"]))
            if parsed:
                by_lang[r["lang"]] = {"op": parsed[0], "value": parsed[1], "text": str(r[f"t{i}"])}
        out.append({"rule": rule.name, "signal": rule.signal, "thresholds": by_lang})
    return out


def _snippet(text_col: str, ctx: RunContext) -> Column:
    from medcorpus.text.pii import Policy, redact_column

    return F.substring(redact_column(F.col(text_col), Policy.of(ctx.config.filter)), 1, EXAMPLE_CHARS)


def _first_by_hash(df: DataFrame, partition: list[str], n: int) -> DataFrame:
    order = Window.partitionBy(*partition).orderBy(F.xxhash64("doc_id"), "doc_id") if partition else \
        Window.orderBy(F.xxhash64("doc_id"), "doc_id")
    return df.withColumn("_rank", F.row_number().over(order)).filter(F.col("_rank") <= n)


def filter_examples(ctx: RunContext, per_rule: int = EXAMPLES_PER_RULE,
                    thresholds: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``{"removed": {rule: {"documents": n, "examples": [...]}}, "kept": {"documents": n, "examples": [...]}}``
    (``thresholds``: :func:`rule_thresholds`, computed here when not given)."""
    wh = ctx.warehouse
    result: dict[str, Any] = {"chars": EXAMPLE_CHARS, "per_rule": per_rule, "removed": {}, "kept": None}
    if wh.exists("filtered_out"):
        removed = wh.read("filtered_out")
        counts = {r["rule"]: int(r["n"]) for r in removed.groupBy("rule").agg(F.count(F.lit(1)).alias("n")).collect()}
        picked = (_first_by_hash(removed, ["rule"], per_rule)
                  .select("rule", "_rank", "doc_id", "lang", "source", "value", "threshold",
                          F.char_length("text").alias("chars"), _snippet("text", ctx).alias("text"))
                  .orderBy("rule", "_rank").collect())
        order = [r["rule"] for r in (thresholds if thresholds is not None else rule_thresholds(ctx))]
        for rule in sorted(counts, key=lambda name: (order.index(name) if name in order else len(order), name)):
            result["removed"][rule] = {"documents": counts[rule], "examples": [
                {k: r[k] for k in ("doc_id", "lang", "source", "value", "threshold", "chars", "text")}
                for r in picked if r["rule"] == rule]}
    if wh.exists("clean_documents"):
        kept = wh.read("clean_documents")
        picked = (_first_by_hash(kept, [], per_rule)
                  .select("_rank", "doc_id", "lang", "source", F.char_length("text").alias("chars"),
                          _snippet("text", ctx).alias("text"))
                  .orderBy("_rank").collect())
        result["kept"] = {"documents": kept.count(), "examples": [
            {k: r[k] for k in ("doc_id", "lang", "source", "chars", "text")} for r in picked]}
    return result


def signal_histograms(ctx: RunContext, bins: int = SIGNAL_BINS,
                      thresholds: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per signal a rule reads: fixed bins, their counts, the documents without a value, and the thresholds
    (``thresholds``: :func:`rule_thresholds`, computed here when not given)."""
    wh = ctx.warehouse
    parts = [wh.read(t).select("doc_id", "signals") for t in ("filtered_out", "clean_documents") if wh.exists(t)]
    if not parts:
        return {"documents": 0, "bins": bins, "signals": {}}
    scored = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    by_signal: dict[str, list[dict[str, Any]]] = {}
    for rule in (thresholds if thresholds is not None else rule_thresholds(ctx)):
        by_signal.setdefault(rule["signal"], []).append({"rule": rule["rule"], "thresholds": rule["thresholds"]})
    names = list(by_signal)
    values = scored.select(*[F.col("signals")[n].cast("double").alias(f"s{i}") for i, n in enumerate(names)])
    aggs = [F.count(F.lit(1)).alias("documents")]
    for i in range(len(names)):
        aggs += [F.min(f"s{i}").alias(f"lo{i}"), F.max(f"s{i}").alias(f"hi{i}"), F.count(f"s{i}").alias(f"n{i}")]
    stats = values.agg(*aggs).first()
    documents = int(stats["documents"]) if stats else 0
    ranges: dict[int, tuple[float, float]] = {}  # on the signal's scale
    scales: dict[int, str] = {}
    for i, name in enumerate(names):
        marks = [t["value"] for r in by_signal[name] for t in r["thresholds"].values()]
        if stats is None or stats[f"lo{i}"] is None:
            continue
        lo = min([float(stats[f"lo{i}"]), *marks])
        hi = max([float(stats[f"hi{i}"]), *marks])
        scale = _scale(lo, hi)
        lo, hi = _to_scale(lo, scale), _to_scale(hi, scale)
        ranges[i] = (lo, hi if hi > lo else lo + 1.0)
        scales[i] = scale
    counts: dict[tuple[int, int], int] = {}
    if ranges:
        # one (signal, bin) pair per document and signal, then one groupBy over all signals at once
        def bin_of(i: int, lo: float, hi: float) -> Column:  # null stays null (greatest/least skip nulls)
            x = F.log10(F.col(f"s{i}") + 1) if scales[i] != "linear" else F.col(f"s{i}")
            raw = F.floor((x - F.lit(lo)) / F.lit((hi - lo) / bins))
            return F.when(F.col(f"s{i}").isNotNull(), F.least(F.greatest(raw, F.lit(0)), F.lit(bins - 1)))

        pairs = F.array(*[F.struct(F.lit(i).alias("i"), bin_of(i, lo, hi).cast("int").alias("b"))
                          for i, (lo, hi) in ranges.items()])
        rows = (values.select(F.explode(pairs).alias("p")).filter(F.col("p.b").isNotNull())
                .groupBy("p.i", "p.b").agg(F.count(F.lit(1)).alias("n")).collect())
        counts = {(int(r["i"]), int(r["b"])): int(r["n"]) for r in rows}
    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        entry: dict[str, Any] = {"rules": by_signal[name], "documents": documents,
                                 "with_value": int(stats[f"n{i}"]) if stats else 0}
        entry["missing"] = documents - entry["with_value"]
        if i in ranges:
            lo, hi = ranges[i]
            width = (hi - lo) / bins
            entry["scale"] = scales[i]
            entry["edges"] = [lo + k * width if scales[i] == "linear" else 10 ** (lo + k * width) - 1
                              for k in range(bins + 1)]
            entry["counts"] = [counts.get((i, k), 0) for k in range(bins)]
        else:
            entry["edges"], entry["counts"] = [], []
        out[name] = entry
    return {"documents": documents, "bins": bins, "signals": out}


# ---------------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------------
def _scale(lo: float, hi: float) -> str:
    return "log10(1+x)" if lo >= 0 and hi >= LOG_SCALE_FROM else "linear"


def _to_scale(x: float, scale: str) -> float:
    return math.log10(1 + x) if scale != "linear" else x


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def histogram_svg(name: str, entry: dict[str, Any], width: int = 640, height: int = 180) -> str:
    """Bars of the bin counts and a dashed red line (labelled) at each threshold; plain inline SVG."""
    edges, counts = entry["edges"], entry["counts"]
    if not counts:
        return f"<p>{html.escape(name)}: no values.</p>"
    left, bottom, top = 40, 30, 22
    plot_w, plot_h = width - left - 10, height - bottom - top
    scale = entry.get("scale", "linear")
    lo, hi = _to_scale(edges[0], scale), _to_scale(edges[-1], scale)
    peak = max(counts) or 1
    bar_w = plot_w / len(counts)
    parts = [f'<svg class="hist" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(name)} histogram">',
             f'<text x="{left}" y="14" font-size="12">{html.escape(name)} '
             f'({entry["with_value"]:,} documents{"" if scale == "linear" else ", bins on " + scale})</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>']
    for k, n in enumerate(counts):
        h = plot_h * n / peak
        parts.append(f'<rect x="{left + k * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                     f'height="{h:.1f}" fill="#4C72B0"><title>[{_fmt(edges[k])}, {_fmt(edges[k + 1])}): '
                     f'{n}</title></rect>')
    parts.append(f'<text x="{left}" y="{height - 8}" font-size="10">{_fmt(edges[0])}</text>')
    parts.append(f'<text x="{left + plot_w}" y="{height - 8}" font-size="10" text-anchor="end">{_fmt(edges[-1])}</text>')
    parts.append(f'<text x="4" y="{top + 10}" font-size="10">{peak}</text>')
    seen: dict[float, list[str]] = {}
    for rule in entry["rules"]:
        for lang, t in rule["thresholds"].items():
            seen.setdefault(t["value"], []).append(f'{rule["rule"]} {lang} {t["op"]} {_fmt(t["value"])}')
    for j, (value, labels) in enumerate(sorted(seen.items())):
        x = left + plot_w * (_to_scale(value, scale) - lo) / (hi - lo)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#C44E52" '
                     f'stroke-dasharray="4 3"><title>{html.escape("; ".join(labels))}</title></line>')
        right_half = x > left + plot_w / 2  # labels near the right edge grow leftwards, so none is cut off
        anchor = ' text-anchor="end"' if right_half else ""
        parts.append(f'<text x="{x - 2 if right_half else x + 2:.1f}" y="{top + 8 + 10 * (j % 2)}" font-size="9" '
                     f'fill="#C44E52"{anchor}>'
                     f'{html.escape(", ".join(sorted({lb.split(" ", 1)[1] for lb in labels})))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _examples_table(rows: list[dict[str, Any]], with_value: bool) -> str:
    head = ["doc_id", "lang", "source", *(["value", "threshold"] if with_value else []), "chars", "text (redacted)"]
    body = []
    for r in rows:
        cells = [r["doc_id"], r["lang"], r["source"]]
        if with_value:
            cells += ["" if r["value"] is None else _fmt(r["value"]), r["threshold"]]
        cells += [r["chars"], r["text"] + ("…" if (r["chars"] or 0) > EXAMPLE_CHARS else "")]
        body.append("<tr>" + "".join(f'<td class="{"ex" if j == len(cells) - 1 else ""}">'
                                     f"{html.escape('' if c is None else str(c))}</td>"
                                     for j, c in enumerate(cells)) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def filter_blocks(examples: dict[str, Any], histograms: dict[str, Any]) -> list[str]:
    blocks = ["<style>td.ex{text-align:left;white-space:pre-wrap;max-width:520px;font-size:.85em}"
              "svg.hist{display:block;margin:8px 0}</style>"]
    blocks.append(f"<p>Examples: the {examples['per_rule']} documents with the smallest xxhash64(doc_id) per rule, "
                  f"text redacted and cut to {examples['chars']} characters.</p>")
    if not examples["removed"] and not examples["kept"]:
        blocks.append("<p>No filter output yet (filtered_out and clean_documents are absent).</p>")
    for rule, found in examples["removed"].items():
        blocks.append(f'<h3 id="rule-{html.escape(rule)}">Removed by {html.escape(rule)} '
                      f'({found["documents"]:,} documents)</h3>')
        blocks.append(_examples_table(found["examples"], with_value=True))
    if examples["kept"]:
        blocks.append(f'<h3 id="kept">Kept ({examples["kept"]["documents"]:,} documents)</h3>')
        blocks.append(_examples_table(examples["kept"]["examples"], with_value=False))
    if histograms["signals"]:
        blocks.append(f"<h3>Filter signals against their thresholds ({histograms['documents']:,} documents "
                      "scored)</h3><p>Dashed red lines: the rules' thresholds (per language where they differ); a "
                      "rule's gates, e.g. a minimum number of lines, are not drawn.</p>")
        blocks += [histogram_svg(name, entry) for name, entry in histograms["signals"].items()]
    return blocks


def write_filter_report(ctx: RunContext, out_dir: Path, run_id: str) -> tuple[list[str], list[Path]]:
    """The page blocks, and the two JSON files written beside the report."""
    thresholds = rule_thresholds(ctx)  # one Spark job (~1.8 s) for both
    examples = filter_examples(ctx, thresholds=thresholds)
    histograms = signal_histograms(ctx, thresholds=thresholds)
    paths = []
    for name, data in (("filter_examples", examples), ("signal_histograms", histograms)):
        path = out_dir / f"run-{run_id}.{name}.json"
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        paths.append(path)
    return filter_blocks(examples, histograms), paths
