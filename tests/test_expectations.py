"""Suites: one reviewed file per table, equal to what the generator builds from the schema; GX accepts them."""

from __future__ import annotations

import json
import re

import pytest

from medcorpus.core.warehouse import TableSpec, all_table_names, table_spec
from medcorpus.quality import expectations as E

REGENERATE = "run `.venv/bin/python -m medcorpus.quality.expectations` and review the diff"


def _toy_spec(name: str = "toy", **overrides) -> TableSpec:
    fields = [
        {"name": "doc_id", "type": "string", "nullable": False},
        {"name": "lang", "type": "string", "nullable": False},
        {"name": "domain_prob", "type": "double", "nullable": True},
        {"name": "quality_score", "type": "double", "nullable": True},
        {"name": "char_count", "type": "long", "nullable": False},
        {"name": "messages", "type": "array<struct<role:string,content:string>>", "nullable": False},
    ]
    return TableSpec(name=name, description="", key=("doc_id",), fields=tuple(overrides.get("fields", fields)))


def test_every_schema_has_a_suite_file():
    missing = [t for t in all_table_names()
               if t not in E.UNVALIDATED_TABLES and not (E.expectations_dir() / f"{t}.json").exists()]
    assert not missing, f"tables without a suite in expectations/: {missing}; {REGENERATE}"


def test_suite_files_equal_the_generator_output():
    stale = [t for t in E.suite_tables()
             if (E.expectations_dir() / f"{t}.json").exists()
             and json.loads((E.expectations_dir() / f"{t}.json").read_text(encoding="utf-8")) != E.build_suite(t)]
    assert not stale, f"suites out of date with schemas/ or medcorpus.quality.expectations: {stale}; {REGENERATE}"


def test_every_suite_builds_a_gx_suite_with_severities():
    import great_expectations as gx

    for table in E.suite_tables():
        suite = E.load_suite(table)
        gx_suite = gx.ExpectationSuite(name=table, expectations=suite["expectations"])
        assert len(gx_suite.expectations) == len(suite["expectations"]) > 0
        assert {str(getattr(e.severity, "value", e.severity)) for e in gx_suite.expectations} <= {"critical", "warning"}


def test_base_suite_from_any_schema():
    exps = E.base_expectations(_toy_spec())
    by_type: dict[str, list[dict]] = {}
    for e in exps:
        by_type.setdefault(e["type"], []).append(e["kwargs"])
    assert by_type["expect_table_columns_to_match_ordered_list"] == [
        {"column_list": ["doc_id", "lang", "domain_prob", "quality_score", "char_count", "messages"]}]
    assert {kw["column"]: kw["type_"] for kw in by_type["expect_column_values_to_be_of_type"]} == {
        "doc_id": "StringType", "lang": "StringType", "domain_prob": "DoubleType", "quality_score": "DoubleType",
        "char_count": "LongType", "messages": "ArrayType"}
    assert [kw["column"] for kw in by_type["expect_column_values_to_not_be_null"]] == [
        "doc_id", "lang", "char_count", "messages"]
    assert by_type["expect_column_values_to_be_unique"] == [{"column": "doc_id"}]
    assert by_type["expect_column_values_to_be_in_set"] == [{"column": "lang", "value_set": ["zh", "en", "other"]}]
    ranges = {kw["column"]: (kw.get("min_value"), kw.get("max_value")) for kw in by_type["expect_column_values_to_be_between"]}
    assert ranges == {"domain_prob": (0.0, 1.0), "quality_score": (0.0, 5.0), "char_count": (0, None)}


def test_compound_key_and_unknown_type():
    spec = TableSpec(name="t", description="", key=("a", "b"), fields=(
        {"name": "a", "type": "string", "nullable": False}, {"name": "b", "type": "int", "nullable": False}))
    assert {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["a", "b"]},
            "severity": "critical", "meta": {"notes": "Table key."}} in E.base_expectations(spec)
    bad = TableSpec(name="t", description="", key=(), fields=({"name": "a", "type": "interval", "nullable": True},))
    with pytest.raises(ValueError, match="no GX type for Spark type 'interval'"):
        E.base_expectations(bad)


def test_specific_expectations_need_their_columns():
    full = table_spec("preference")
    kept = [e["meta"].get("notes") for e in E.specific_expectations(full)]
    assert "chosen != rejected." in kept
    without_chosen = TableSpec(name="preference", description="", key=full.key,
                               fields=tuple(f for f in full.fields if f["name"] != "chosen"))
    notes = [e["meta"].get("notes") for e in E.specific_expectations(without_chosen)]
    assert "chosen != rejected." not in notes
    assert all(e["kwargs"].get("column") != "chosen" for e in E.specific_expectations(without_chosen))


def test_table_specific_expectations_are_in_the_suites():
    def notes(table: str) -> str:
        return " | ".join(e["meta"].get("notes", "") for e in E.load_suite(table)["expectations"])

    assert "chosen != rejected" in notes("preference")
    assert "Messages well-formed" in notes("sft")
    assert "Token shares per component and language" in notes("pretrain")
    assert "No duplicate text within a mixture" in notes("pretrain")
    assert "Reconciliation: rows_in = rows_out" in notes("run_log")
    assert "No duplicate text after dedup" in notes("unique_documents")
    assert "No PII left in released text" in notes("unique_documents")


def test_pii_patterns_find_pii_and_leave_placeholders():
    patterns = [re.compile(p) for p in E.PII_PATTERNS.values()]

    def found(text: str) -> bool:
        return any(p.search(text) for p in patterns)

    assert found("请拨打 138 1234 5678 咨询")
    assert found("write to zhang.san@example.com today")
    assert found("see https://admin:hunter2@db.example.org/")
    assert not found("请拨打 <PHONE> 咨询, write to <EMAIL>, https://<URL_CREDENTIALS>@db.example.org/")
    assert not found("血压 138/90 mmHg, 剂量 12345678901234 单位")  # 14 digits is not a mobile number


def test_suites_check_the_redaction_policys_patterns_and_catch_pii():
    from medcorpus.text import pii

    shared = [pii.PII_PATTERNS[t] for t in pii.LEFTOVER_CHECK_TYPES]
    for table in ("clean_documents", "unique_documents"):
        lists = [e["kwargs"]["regex_list"] for e in E.load_suite(table)["expectations"]
                 if e["type"] == "expect_column_values_to_not_match_regex_list"]
        assert lists == [shared], f"{table}: the PII check must use medcorpus.text.pii's patterns"
    patterns = [re.compile(p) for p in shared]
    leaked = "请拨打 138 1234 5678 或写信 zhang.san@example.com"
    assert sum(bool(p.search(leaked)) for p in patterns) == 2
    redacted, counts = pii.redact_text(leaked)
    assert counts == {"PHONE": 1, "EMAIL": 1}
    assert not any(p.search(redacted) for p in patterns), redacted
