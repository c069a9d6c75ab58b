"""Expectation suites: a generated base part per table schema plus hand-kept table-specific expectations.

``expectations/<table>.json`` is the reviewable suite GX runs (GX 1.x ``ExpectationSuite`` JSON). It is
generated — ``python -m medcorpus.quality.expectations`` — from two parts:

* the **base suite**, derived from ``schemas/<table>.json`` by :func:`base_expectations`: the ordered
  column list, each column's Spark type, non-null columns, the unique key, and rules keyed on well-known
  column names (``lang`` in zh|en|other, probabilities and similarities in [0, 1], quality scores in
  [0, 5], counts >= 0, ``domain``/``subdomain`` value sets);
* the **table-specific** expectations in :data:`SPECIFIC` below (hand-kept: PII patterns, duplicate text,
  SFT message structure, preference pairs, mixture shares, run_log reconciliation ...). An entry that
  names columns the schema lacks is left out, so a schema change never produces a suite that cannot run.

Values that come from the config are GX suite parameters (``{"$PARAMETER": name}``, filled by
:func:`suite_parameters`) or small temporary views registered before validation (mixture targets,
run_log), so the JSON files stay static and a test checks they equal what the generator produces.

Severity: ``critical`` expectations gate the pipeline and releases; ``warning`` ones are recorded only.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from medcorpus.core.config import REPO_ROOT, Config
from medcorpus.core.warehouse import TableSpec, all_table_names, table_spec
from medcorpus.text import pii

CRITICAL = "critical"
WARNING = "warning"

#: Tables that never get a suite (the validation log itself).
UNVALIDATED_TABLES = frozenset({"validation_results"})

#: Temporary views the specific expectations may query (registered by medcorpus.quality.validation).
MIXTURE_TARGETS_VIEW = "medcorpus_mixture_targets"
RUN_LOG_VIEW = "medcorpus_run_log"

# PII left in released text: the patterns of the one redaction policy (medcorpus.text.pii), for the types
# it names in LEFTOVER_CHECK_TYPES.
PII_PATTERNS: dict[str, str] = pii.patterns(pii.LEFTOVER_CHECK_TYPES)
_PII_NAMES = ", ".join(PII_PATTERNS)

LANG_VALUES = ["zh", "en", "other"]
PROBABILITY_COLUMNS = re.compile(r"(^|_)(prob|probability|confidence|similarity|overlap)$|^p_|^sample_key$")
QUALITY_COLUMNS = re.compile(r"^quality(_score)?$|_quality_score$")
COUNT_COLUMNS = re.compile(r"(_count|_estimate|_tokens|_size|_ngrams|^requests|^items|^cache_hits|^failures|^byte_size)$")
NUMERIC_TYPES = {"int", "integer", "bigint", "long", "short", "smallint", "tinyint", "byte", "float", "double"}
INTEGER_TYPES = {"int", "integer", "bigint", "long", "short", "smallint", "tinyint", "byte"}

# Spark DDL type -> pyspark.sql.types class name that GX's expect_column_values_to_be_of_type checks.
_TYPE_CLASSES = {
    "string": "StringType", "boolean": "BooleanType", "int": "IntegerType", "integer": "IntegerType",
    "bigint": "LongType", "long": "LongType", "short": "ShortType", "smallint": "ShortType",
    "tinyint": "ByteType", "byte": "ByteType", "float": "FloatType", "double": "DoubleType",
    "timestamp": "TimestampType", "timestamp_ntz": "TimestampNTZType", "date": "DateType", "binary": "BinaryType",
}


def _type_class(ddl: str) -> str:
    ddl = ddl.strip().lower()
    for prefix, name in (("array<", "ArrayType"), ("map<", "MapType"), ("struct<", "StructType"), ("decimal", "DecimalType")):
        if ddl.startswith(prefix):
            return name
    if ddl not in _TYPE_CLASSES:
        raise ValueError(f"no GX type for Spark type {ddl!r}")
    return _TYPE_CLASSES[ddl]


def _exp(etype: str, severity: str = CRITICAL, note: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """One expectation in GX's suite JSON shape; ``note`` says why (shown in Data Docs)."""
    out: dict[str, Any] = {"type": etype, "kwargs": kwargs, "severity": severity, "meta": {}}
    if note:
        out["meta"]["notes"] = note
    return out


def _query(sql: str) -> str:
    """A Spark-SQL unexpected-rows query: ``{batch}`` is the table; other braces (regex) are escaped."""
    return sql.replace("{", "{{").replace("}", "}}").replace("{{batch}}", "{batch}")


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------------------------------------------
# base suite: from the schema file
# ---------------------------------------------------------------------------------------------------
def _split_top_level(body: str) -> list[str]:
    """Split a DDL list body at the commas that are not inside <...> or (...)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p.strip() for p in parts if p.strip()]


def _struct_field_names(ddl: str, parent: str) -> list[str]:
    """`parent.child` names of a struct<...> DDL type, depth first, the way GX's Spark engine lists them."""
    if not ddl.startswith("struct<"):
        return []
    out = []
    for part in _split_top_level(ddl[len("struct<"):-1]):
        name, _, child_type = part.partition(":")
        full = f"{parent}.{name.strip()}"
        out.append(full)
        out.extend(_struct_field_names(child_type.strip(), full))
    return out


def gx_column_list(spec: TableSpec) -> list[str]:
    """The column list GX reports for a table of this schema.

    GX's `table.columns` metric on Spark includes nested struct fields (`scores.quality` after
    `scores`), so a suite that listed only top-level columns would fail on every table with a struct."""
    out = []
    for f in spec.fields:
        out.append(f["name"])
        out.extend(_struct_field_names(f["type"], f["name"]))
    return out


def base_expectations(spec: TableSpec) -> list[dict[str, Any]]:
    """Columns, types, non-null, unique key, and the column-name rules, for any registered table."""
    exps = [_exp("expect_table_columns_to_match_ordered_list", column_list=gx_column_list(spec),
                 note=f"Columns and their order as in schemas/{spec.name}.json (struct fields listed as GX "
                      "lists them, parent.child after the parent).")]
    for f in spec.fields:
        exps.append(_exp("expect_column_values_to_be_of_type", column=f["name"], type_=_type_class(f["type"])))
    for f in spec.fields:
        if not f["nullable"]:
            exps.append(_exp("expect_column_values_to_not_be_null", column=f["name"]))
    if len(spec.key) == 1:
        exps.append(_exp("expect_column_values_to_be_unique", column=spec.key[0], note="Table key."))
    elif spec.key:
        exps.append(_exp("expect_compound_columns_to_be_unique", column_list=list(spec.key), note="Table key."))
    exps.extend(_column_rules(spec))
    return exps


def _column_rules(spec: TableSpec) -> list[dict[str, Any]]:
    out = []
    for f in spec.fields:
        name, ddl = f["name"], f["type"].strip().lower()
        numeric = ddl in NUMERIC_TYPES
        if name == "lang" and ddl == "string":
            out.append(_exp("expect_column_values_to_be_in_set", column=name, value_set=LANG_VALUES))
        elif name == "domain" and ddl == "string":
            out.append(_exp("expect_column_values_to_be_in_set", column=name,
                            value_set={"$PARAMETER": "domain_values"}, note="validate.domain_values"))
        elif name in ("subdomain", "sub_domain") and ddl == "string":
            out.append(_exp("expect_column_values_to_be_in_set", column=name,
                            value_set={"$PARAMETER": "subdomain_values"}, note="validate.subdomain_values"))
        elif numeric and PROBABILITY_COLUMNS.search(name):
            out.append(_exp("expect_column_values_to_be_between", column=name, min_value=0.0, max_value=1.0,
                            note="A probability, similarity or share."))
        elif numeric and QUALITY_COLUMNS.search(name):
            out.append(_exp("expect_column_values_to_be_between", column=name, min_value=0.0, max_value=5.0,
                            note="Quality scores are on a 0-5 scale."))
        elif ddl in INTEGER_TYPES and COUNT_COLUMNS.search(name):
            out.append(_exp("expect_column_values_to_be_between", column=name, min_value=0, note="A count."))
    return out


# ---------------------------------------------------------------------------------------------------
# table-specific expectations (hand-kept)
# ---------------------------------------------------------------------------------------------------
def _pii_expectation(column: str = "text", severity: str = CRITICAL) -> dict[str, Any]:
    return _exp("expect_column_values_to_not_match_regex_list", severity=severity, column=column,
                regex_list=list(PII_PATTERNS.values()),
                note=f"No PII left in released text ({_PII_NAMES}, as redacted by the filter stage).")


def _pii_query(id_col: str, text_expr: str, where: str = "TRUE") -> str:
    cond = " OR ".join(f"{text_expr} RLIKE {_sql_string(p)}" for p in PII_PATTERNS.values())
    return _query(f"SELECT {id_col} FROM {{batch}} WHERE ({where}) AND ({cond})")


def _non_empty(column: str) -> dict[str, Any]:
    return _exp("expect_column_value_lengths_to_be_between", column=column, min_value=1, note="Not empty.")


_SFT_WELL_FORMED = _query(
    "SELECT sample_id, type, size(messages) AS turns FROM {batch} WHERE NOT ("
    "size(messages) >= 2"
    " AND forall(messages, m -> m.role IN ('system', 'user', 'assistant') AND length(trim(m.content)) > 0)"
    " AND element_at(messages, -1).role = 'assistant'"
    " AND forall(sequence(0, size(messages) - 1), i -> messages[i].role = CASE"
    " WHEN i = 0 AND messages[0].role = 'system' THEN 'system'"
    " WHEN (i - IF(messages[0].role = 'system', 1, 0)) % 2 = 0 THEN 'user' ELSE 'assistant' END))"
)

_MIXTURE_SHARES = _query(
    "WITH cells AS ("
    " SELECT mixture, 'component' AS dimension, component AS value, sum(token_estimate) AS tokens FROM {batch}"
    " GROUP BY mixture, component"
    " UNION ALL SELECT mixture, 'language' AS dimension, lang AS value, sum(token_estimate) AS tokens FROM {batch}"
    " GROUP BY mixture, lang),"
    " achieved AS (SELECT mixture, dimension, value, tokens / sum(tokens) OVER (PARTITION BY mixture, dimension)"
    " AS share FROM cells)"
    " SELECT t.mixture, t.dimension, t.value, t.share AS requested, coalesce(a.share, 0D) AS achieved,"
    " t.tolerance FROM " + MIXTURE_TARGETS_VIEW + " t"
    " JOIN (SELECT DISTINCT mixture FROM {batch}) m ON m.mixture = t.mixture"
    " LEFT JOIN achieved a ON a.mixture = t.mixture AND a.dimension = t.dimension AND a.value = t.value"
    " WHERE abs(coalesce(a.share, 0D) - t.share) > t.tolerance + 1e-9"
)


def _run_log_rows_out(stage: str) -> str:
    """Rows in the table vs the sum of ``rows_out`` its (merge-only) stage logged over all runs."""
    return _query(
        "SELECT t.n AS table_rows, r.n AS run_log_rows_out FROM (SELECT count(1) AS n FROM {batch}) t"
        f" CROSS JOIN (SELECT coalesce(sum(rows_out), 0) AS n FROM {RUN_LOG_VIEW} WHERE stage = '{stage}') r"
        " WHERE t.n <> r.n"
    )


SOURCE_FORMATS = ["jsonl", "parquet", "text", "warc", "wet"]

#: table -> hand-kept expectations (one whose columns the schema lacks is left out of the suite).
SPECIFIC: dict[str, list[dict[str, Any]]] = {
    "raw_documents": [
        _exp("expect_column_values_to_be_in_set", column="source_format", value_set=SOURCE_FORMATS),
        _exp("expect_column_values_to_be_between", column="byte_size", min_value=1, note="No empty record."),
        _exp("unexpected_rows_expectation", severity=WARNING, unexpected_rows_query=_run_log_rows_out("ingest"),
             note="Row-count reconciliation: rows == sum of ingest rows_out in run_log."),
    ],
    "documents": [
        _exp("expect_column_values_to_be_in_set", column="source_format", value_set=SOURCE_FORMATS),
        _non_empty("text"),
        _exp("expect_column_values_to_be_between", column="char_count", min_value=1),
        _exp("expect_column_value_lengths_to_equal", column="text_hash", value=64, note="sha256 hex."),
        _exp("unexpected_rows_expectation", severity=WARNING, unexpected_rows_query=_run_log_rows_out("normalize"),
             note="Row-count reconciliation: rows == sum of normalize rows_out in run_log."),
    ],
    "clean_documents": [_non_empty("text"), _pii_expectation()],
    "scored_documents": [
        _non_empty("text"),
        _pii_expectation(),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_query(
            "SELECT doc_id FROM {batch} WHERE exists(map_values(subdomain_probs), p -> p < 0 OR p > 1)"),
            note="Sub-domain probabilities in [0, 1]."),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_query(
            "SELECT doc_id, domain, subdomain FROM {batch} WHERE domain = 'general' AND subdomain IS NOT NULL"),
            note="Only medical documents have a sub-domain."),
    ],
    "labelled_documents": [
        _exp("expect_column_values_to_be_in_set", column="label", value_set=["medical", "general"]),
        _exp("expect_column_values_to_be_in_set", column="split", value_set=["train", "validation"]),
        _exp("expect_column_values_to_be_between", column="score", min_value=0.0, max_value=5.0),
    ],
    "filtered_out": [_exp("expect_column_value_lengths_to_be_between", column="rule", min_value=1)],
    "unique_documents": [
        _non_empty("text"),
        _pii_expectation(),
        _exp("expect_column_values_to_be_unique", column="text_hash", note="No duplicate text after dedup."),
        _exp("expect_column_values_to_be_between", column="cluster_size", min_value=1),
    ],
    "dedup_clusters": [
        _exp("expect_column_values_to_be_in_set", column="reason",
             value_set=["unique", "keeper", "exact_duplicate", "near_duplicate"]),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_query(
            "SELECT cluster_id, count_if(is_keeper) AS keepers, count(1) AS size FROM {batch}"
            " GROUP BY cluster_id HAVING count_if(is_keeper) <> 1"), note="Exactly one keeper per cluster."),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_query(
            "SELECT doc_id, cluster_id, is_keeper FROM {batch} WHERE is_keeper <> (doc_id = cluster_id)"),
            note="The keeper is the document the cluster is named after."),
    ],
    "contamination_hits": [
        _exp("expect_column_values_to_be_in_set", column="kind", value_set=["document", "sft", "preference"]),
        _exp("expect_column_pair_values_a_to_be_greater_than_b", column_A="item_ngrams", column_B="matched_ngrams",
             or_equal=True, note="An item cannot match more n-grams than it has."),
    ],
    "pretrain": [
        _exp("expect_column_values_to_be_in_set", column="component", value_set=["medical", "general", "sft"]),
        _exp("expect_column_values_to_be_in_set", column="lang", value_set=["zh", "en"]),
        _non_empty("text"),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_query(
            "SELECT mixture, sha2(text, 256) AS text_sha256, count(1) AS copies FROM {batch}"
            " GROUP BY mixture, sha2(text, 256) HAVING count(1) > 1"),
            note="No duplicate text within a mixture."),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_MIXTURE_SHARES,
             note="Token shares per component and language within datasets.mixtures.<name>.tolerance."),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_pii_query(
            "mixture, item_id, component", "text", "component <> 'sft'"),
            note=f"No PII pattern left in document text ({_PII_NAMES})."),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_pii_query(
            "mixture, item_id, component", "text", "component = 'sft'"),
            note=f"No PII pattern left in SFT text ({_PII_NAMES}, redacted by the sft stage)."),
    ],
    "sft": [
        _exp("expect_column_values_to_be_in_set", column="language", value_set=["zh", "en"]),
        _exp("expect_column_values_to_be_in_set", column="type",
             value_set=["single_turn", "multi_turn", "multiple_choice"]),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_SFT_WELL_FORMED,
             note="Messages well-formed: >= 2 non-empty turns, optional leading system turn, then user and "
                  "assistant alternate, ending with the assistant."),
        _exp("expect_column_values_to_be_unique", severity=WARNING, column="text_hash",
             note="Exact-duplicate samples."),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_pii_query(
            "sample_id", "array_join(transform(messages, m -> m.content), '\\n')"),
            note=f"No PII pattern left in SFT messages ({_PII_NAMES}, redacted by the sft stage)."),
    ],
    "preference": [
        _exp("expect_column_values_to_be_in_set", column="kind", value_set=["objective", "subjective"]),
        _exp("expect_column_values_to_be_in_set", column="language", value_set=["zh", "en"]),
        _non_empty("prompt"),
        _non_empty("chosen"),
        _non_empty("rejected"),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_query(
            "SELECT pair_id, sample_id, kind FROM {batch} WHERE trim(chosen) = trim(rejected)"),
            note="chosen != rejected."),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_pii_query(
            "pair_id", "concat_ws('\\n', prompt, chosen, rejected)"),
            note=f"No PII pattern left in preference text ({_PII_NAMES}, redacted by the preference stage)."),
    ],
    "judged_preferences": [
        _exp("unexpected_rows_expectation", unexpected_rows_query=_query(
            "SELECT pair_id FROM {batch} WHERE trim(chosen) = trim(rejected)"), note="chosen != rejected."),
        _exp("expect_column_pair_values_a_to_be_greater_than_b", column_A="chosen_score", column_B="rejected_score",
             or_equal=True, note="The chosen answer scored at least as high."),
    ],
    "generated_qa": [
        _exp("unexpected_rows_expectation", unexpected_rows_query=_query(
            "SELECT qa_id FROM {batch} WHERE size(messages) <> 2 OR messages[0].role <> 'user'"
            " OR messages[1].role <> 'assistant'"
            " OR NOT forall(messages, m -> length(trim(m.content)) > 0)"),
            note="[user question, assistant answer], both non-empty."),
    ],
    "labelled_quality": [
        _exp("expect_column_values_to_be_between", column="score", min_value=0.0, max_value=5.0),
    ],
    "annotations": [
        _exp("expect_column_values_to_be_between", column="score", min_value=0.0, max_value=5.0),
        _exp("expect_column_values_to_be_between", column="quality_round1", min_value=0, max_value=5),
        _exp("expect_column_values_to_be_between", column="quality_round2", min_value=0, max_value=5),
    ],
    "releases": [
        _exp("unexpected_rows_expectation", unexpected_rows_query=_query(
            "SELECT release FROM {batch} WHERE cardinality(table_versions) = 0"),
            note="A release pins at least one table version."),
    ],
    "quarantine": [
        _exp("expect_column_value_lengths_to_be_between", column="reason", min_value=1),
    ],
    "run_log": [
        _exp("unexpected_rows_expectation", unexpected_rows_query=_query(
            "SELECT run_id, stage, rows_in, rows_out, rows_quarantined, rows_removed FROM {batch}"
            " WHERE rows_in <> rows_out + rows_quarantined + rows_removed"),
            note="Reconciliation: rows_in = rows_out + rows_quarantined + rows_removed."),
        _exp("unexpected_rows_expectation", unexpected_rows_query=_query(
            "SELECT run_id, stage, rows_quarantined, rows_removed FROM {batch}"
            " WHERE aggregate(map_values(removed_by_reason), 0L, (acc, x) -> acc + x)"
            " <> rows_quarantined + rows_removed"),
            note="removed_by_reason sums to rows_quarantined + rows_removed."),
        _exp("expect_column_values_to_be_between", column="rows_in", min_value=0),
        _exp("expect_column_values_to_be_between", column="seconds", min_value=0.0),
    ],
}

#: Base expectations whose severity is lowered, with the reason.
SEVERITY_OVERRIDES: dict[tuple[str, str, str], str] = {
    # run_log is appended to; a stage re-run under the same --run-id adds a second row.
    ("run_log", "expect_compound_columns_to_be_unique", ""): WARNING,
}


def _referenced_columns(exp: dict[str, Any]) -> set[str]:
    kw = exp["kwargs"]
    cols = {kw[k] for k in ("column", "column_A", "column_B") if k in kw}
    if exp["type"] != "expect_table_columns_to_match_ordered_list":
        cols.update(kw.get("column_list", []))
    return cols


def specific_expectations(spec: TableSpec) -> list[dict[str, Any]]:
    """The hand-kept expectations of a table whose columns exist in its schema."""
    present = set(spec.column_names)
    out = []
    for exp in SPECIFIC.get(spec.name, []):
        needed = _referenced_columns(exp) | _query_identifiers(exp, present)
        if needed <= present:
            out.append(exp)
    return out


def _query_identifiers(exp: dict[str, Any], present: set[str]) -> set[str]:
    """Schema-looking identifiers a query uses: a query naming a column the schema lacks is dropped."""
    query = exp["kwargs"].get("unexpected_rows_query")
    if not isinstance(query, str):
        return set()
    known_words = {"sample_id", "doc_id", "item_id", "pair_id", "qa_id", "text", "messages", "mixture", "component",
                   "lang", "token_estimate", "cluster_id", "is_keeper", "chosen", "rejected", "prompt", "kind",
                   "table_versions", "removed_by_reason", "rows_in", "rows_out", "rows_quarantined", "rows_removed",
                   "type", "release", "stage", "run_id", "subdomain_probs", "domain", "subdomain"}
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query))
    return {w for w in words & known_words if w not in present and w not in _ALIASES}


_ALIASES = {"stage", "run_id", "rows_out"}  # columns of the run_log view, not of the validated table


def build_suite(name: str) -> dict[str, Any]:
    """The full suite of a table as GX suite JSON (base + specific)."""
    spec = table_spec(name)
    expectations = []
    for exp in [*base_expectations(spec), *specific_expectations(spec)]:
        exp = json.loads(json.dumps(exp))  # deep copy
        key = (name, exp["type"], exp["kwargs"].get("column", ""))
        if key in SEVERITY_OVERRIDES:
            exp["severity"] = SEVERITY_OVERRIDES[key]
        expectations.append(exp)
    return {
        "name": name,
        "expectations": expectations,
        "meta": {
            "generated_by": "python -m medcorpus.quality.expectations",
            "schema": f"schemas/{name}.json",
        },
    }


def suite_json(suite: dict[str, Any]) -> str:
    return json.dumps(suite, indent=2, ensure_ascii=False) + "\n"


def suite_hash(suite: dict[str, Any]) -> str:
    return hashlib.sha256(suite_json(suite).encode()).hexdigest()[:16]


def expectations_dir(config: Config | None = None) -> Path:
    raw = Path(config.validate_.expectations_dir if config else "expectations")
    return raw if raw.is_absolute() else REPO_ROOT / raw


def suite_tables() -> list[str]:
    return [t for t in all_table_names() if t not in UNVALIDATED_TABLES]


def load_suite(name: str, config: Config | None = None) -> dict[str, Any]:
    """The reviewed suite file; a table without one gets its generated suite (and a test flags the gap)."""
    path = expectations_dir(config) / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    import logging

    logging.getLogger(__name__).warning(
        "no suite file %s: using the generated suite (run `python -m medcorpus.quality.expectations`)", path)
    return build_suite(name)


def suite_parameters(config: Config) -> dict[str, Any]:
    """Values of the ``$PARAMETER`` placeholders the suites use."""
    return {
        "domain_values": list(config.validate_.domain_values),
        "subdomain_values": list(config.validate_.subdomain_values),
    }


def write_suites(out_dir: Path | None = None, tables: list[str] | None = None) -> list[Path]:
    """(Re)generate ``expectations/<table>.json`` for every registered table (or the given ones)."""
    out_dir = out_dir or expectations_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in tables or suite_tables():
        path = out_dir / f"{name}.json"
        path.write_text(suite_json(build_suite(name)), encoding="utf-8")
        written.append(path)
    return written


def describe_suite(suite: dict[str, Any]) -> list[str]:
    """One line per expectation (for the issue note and `medcorpus validate --list`)."""
    lines = []
    for exp in suite["expectations"]:
        kw = exp["kwargs"]
        what = kw.get("column") or kw.get("column_list") or ""
        detail = {k: v for k, v in kw.items() if k not in ("column", "column_list", "unexpected_rows_query")}
        note = exp.get("meta", {}).get("notes", "")
        lines.append(f"[{exp['severity']}] {exp['type']} {what} {json.dumps(detail, ensure_ascii=False) if detail else ''}"
                     f"{' — ' + note if note else ''}".replace("  ", " "))
    return lines


if __name__ == "__main__":
    import sys

    for p in write_suites(tables=sys.argv[1:] or None):
        print(p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p)
