"""GX gates: a broken table stops the pipeline at its stage, is recorded, and refuses a release.

GX runs cost seconds each, so the suites' SQL queries are also checked directly with spark.sql on tiny
DataFrames (fast), and only two tests run real checkpoints.
"""

from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from medcorpus.core.errors import ValidationFailed
from medcorpus.core.warehouse import table_spec
from medcorpus.quality import expectations as E


def _query(suite_table: str, note_prefix: str) -> str:
    for e in E.load_suite(suite_table)["expectations"]:
        if e["meta"].get("notes", "").startswith(note_prefix):
            return e["kwargs"]["unexpected_rows_query"]
    raise AssertionError(f"no expectation {note_prefix!r} in {suite_table}")


def _unexpected(spark, query: str, df) -> list[dict]:
    df.createOrReplaceTempView("t_batch")
    return [r.asDict(recursive=True) for r in spark.sql(query.format(batch="t_batch")).collect()]


def test_sft_messages_well_formed_query(spark):
    schema = "sample_id string, type string, messages array<struct<role:string,content:string>>"
    u, a, s = ("user", "q"), ("assistant", "a"), ("system", "be brief")
    rows = [
        ("ok1", "single_turn", [u, a]),
        ("ok2", "multi_turn", [s, u, a, u, a]),
        ("ends_with_user", "multi_turn", [u, a, u]),
        ("two_users", "multi_turn", [u, u, a]),
        ("empty_turn", "single_turn", [u, ("assistant", "  ")]),
        ("one_turn", "single_turn", [a]),
        ("bad_role", "single_turn", [u, ("doctor", "a")]),
        ("late_system", "multi_turn", [u, s, a]),
    ]
    bad = _unexpected(spark, _query("sft", "Messages well-formed"), spark.createDataFrame(rows, schema))
    assert sorted(r["sample_id"] for r in bad) == [
        "bad_role", "empty_turn", "ends_with_user", "late_system", "one_turn", "two_users"]


def test_run_log_reconciliation_query(spark):
    df = spark.createDataFrame(
        [("r", "ok", 10, 7, 1, 2, {"a": 1, "b": 2}, 1.0), ("r", "lost_rows", 10, 7, 1, 1, {"a": 2}, 1.0),
         ("r", "bad_reasons", 5, 5, 0, 0, {"x": 1}, 0.0)],
        "run_id string, stage string, rows_in long, rows_out long, rows_quarantined long, rows_removed long, "
        "removed_by_reason map<string,long>, seconds double")
    assert [r["stage"] for r in _unexpected(spark, _query("run_log", "Reconciliation"), df)] == ["lost_rows"]
    assert [r["stage"] for r in _unexpected(spark, _query("run_log", "removed_by_reason sums"), df)] == ["bad_reasons"]


def test_mixture_share_query(spark):
    spark.createDataFrame(
        [("stable", "component", "medical", 0.9, 0.02), ("stable", "component", "general", 0.1, 0.02),
         ("stable", "language", "zh", 0.5, 0.02), ("stable", "language", "en", 0.5, 0.02),
         ("unused", "component", "medical", 1.0, 0.02)],
        "mixture string, dimension string, value string, share double, tolerance double",
    ).createOrReplaceTempView(E.MIXTURE_TARGETS_VIEW)
    df = spark.createDataFrame(
        [("stable", "medical", "zh", 450), ("stable", "medical", "en", 450), ("stable", "general", "zh", 30),
         ("stable", "general", "en", 70)],
        "mixture string, component string, lang string, token_estimate long")
    bad = _unexpected(spark, _query("pretrain", "Token shares"), df)
    # general is 0.10 (ok), zh is 0.48 (ok within 0.02); the 'unused' mixture has no rows and is not checked
    assert bad == []
    df2 = df.withColumn("token_estimate", F.when(F.col("component") == "general", 300).otherwise(F.col("token_estimate")))
    bad = {(r["dimension"], r["value"]) for r in _unexpected(spark, _query("pretrain", "Token shares"), df2)}
    assert bad == {("component", "medical"), ("component", "general")}


def test_duplicate_text_in_pretrain_query(spark):
    df = spark.createDataFrame([("m", "a", "same text"), ("m", "b", "same text"), ("m", "c", "other"),
                                ("n", "a", "same text")], "mixture string, item_id string, text string")
    assert [(r["mixture"], r["copies"]) for r in _unexpected(spark, _query("pretrain", "No duplicate text"), df)] == [
        ("m", 2)]


def _write_jsonl(path, texts):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    return path


def test_duplicated_doc_id_stops_the_pipeline_at_its_stage_and_refuses_release(spark, make_config, tmp_path,
                                                                               monkeypatch):
    from medcorpus.core import pipeline as runner
    from medcorpus.quality import validation

    source = _write_jsonl(tmp_path / "src" / "docs.jsonl", [
        "高血压患者应当每天监测血压，并按医嘱服药。", "Aspirin reduces the risk of heart attack in some adults.",
        "糖尿病饮食需要控制总热量。"])
    ran_downstream = []

    from medcorpus.core.stage import Stage
    from medcorpus.stages import STAGES
    from medcorpus.stages.normalize import Normalize

    class NormalizeThenBreak(Normalize):
        def finish(self, ledger):
            # break the table on purpose: append a copy of one row (same doc_id)
            wh = self.ctx.warehouse
            wh.append_rows("documents", wh.read("documents").orderBy("doc_id").limit(1), "normalize")

    class Downstream(Stage):
        def run(self):
            ran_downstream.append(1)

    monkeypatch.setattr(runner, "STAGES", {**STAGES, "normalize": NormalizeThenBreak, "downstream": Downstream})
    monkeypatch.setattr(runner, "stage_names", lambda: ["ingest", "normalize", "downstream"])
    ctx = runner.RunContext.create(spark, make_config("run_id=gate-test", "validate.skip_tables=[quarantine]"))

    with pytest.raises(ValidationFailed) as err:
        runner.run_pipeline(ctx, [str(source)])

    version = ctx.warehouse.version("documents")
    dup_id = ctx.warehouse.read("documents").orderBy("doc_id").first()["doc_id"]
    message = str(err.value)
    assert "stage 'normalize' wrote data that failed validation" in message
    assert f"table 'documents' version {version} failed" in message
    assert "expect_column_values_to_be_unique(doc_id)" in message
    assert f'"doc_id": "{dup_id}", "copies": 2' in message  # the sample failing row
    assert ran_downstream == []

    results = ctx.warehouse.read("validation_results")
    per_table = {(r["table_name"], r["table_version"]): (r["ok"], r["n"]) for r in results.groupBy(
        "table_name", "table_version").agg(F.min("success").alias("ok"), F.count(F.lit(1)).alias("n")).collect()}
    assert per_table[("raw_documents", ctx.warehouse.version("raw_documents"))][0] is True  # ingest passed
    assert per_table[("documents", version)] == (False, len(E.load_suite("documents")["expectations"]))
    failed = (results.filter(~F.col("success")).select("severity", "expectation_type", "column_name", "unexpected_count")
              .orderBy("severity").collect())
    assert [(r["severity"], r["expectation_type"], r["column_name"], r["unexpected_count"]) for r in failed] == [
        ("critical", "expect_column_values_to_be_unique", "doc_id", 2),
        # the duplicate also breaks the documents <-> run_log row-count reconciliation (a warning)
        ("warning", "unexpected_rows_expectation", None, 1)]
    # the pipeline renders its Data Docs once, also when it stops: every recorded page exists
    pages = {r["docs_path"] for r in results.select("docs_path").distinct().collect()}
    assert len(pages) == 2 and all(p and (validation.reports_dir(ctx) / p).is_file() for p in pages), pages

    validation.assert_release_ready(ctx, ["raw_documents"])  # passed tables are releasable
    with pytest.raises(ValidationFailed, match=r"release refused(.|\n)*'documents' version \d+ failed 1 critical"):
        validation.assert_release_ready(ctx, ["documents"])


def test_preference_checkpoint_reports_pairs_with_chosen_equal_rejected(ctx):
    from medcorpus.quality.validation import validate_table

    rows = [("p1", "s1", "Q?", "A", "B", "objective", "src", "zh", 10, "r"),
            ("p2", "s2", "Q2", "same", "same ", "subjective", "src", "en", 5, "r")]
    ctx.warehouse.merge_new_rows("preference", ctx.spark.createDataFrame(rows, table_spec("preference").schema), "t")
    outcome = validate_table(ctx, "preference")
    assert not outcome.success
    assert [(r.note, r.unexpected_count, r.sample) for r in outcome.critical_failures] == [
        ("chosen != rejected.", 1, [{"pair_id": "p2", "sample_id": "s2", "kind": "subjective"}])]
    assert outcome.docs_path and (ctx.warehouse.root and outcome.docs_path.startswith("data_docs/validations/"))


def test_sft_checkpoint_passes_a_well_formed_row_with_its_struct_column(ctx):
    """GX lists struct fields (scores.quality ...) as columns: the suite's column list must match that."""
    from medcorpus.quality.validation import validate_table

    row = {f.name: None for f in table_spec("sft").schema.fields}
    row.update(sample_id="s1", source="demo", source_file="f.jsonl", type="single_turn", language="zh",
               messages=[{"role": "user", "content": "高血压怎么办？"}, {"role": "assistant", "content": "规律服药。"}],
               scores={"complexity": 1.0, "quality": 3.0, "deita": 3.0, "confilter": None},
               token_estimate=12, text_hash="h1", run_id="r")
    ctx.warehouse.merge_new_rows("sft", ctx.spark.createDataFrame([row], table_spec("sft").schema), "t")
    outcome = validate_table(ctx, "sft")
    assert [(r.expectation_type, r.note) for r in outcome.critical_failures] == []
    assert outcome.success


def test_release_readiness_reuses_a_validation_when_later_commits_only_set_table_properties(ctx):
    from medcorpus.quality.validation import assert_release_ready, validate_table

    def pairs(*ids):
        return ctx.spark.createDataFrame([(p, "s" + p, "Q?", "A", "A" if p == "p2" else "B", "objective", "src", "zh",
                                           10, "r") for p in ids], table_spec("preference").schema)

    ctx.warehouse.merge_new_rows("preference", pairs("p1", "p2"), "t")  # p2: chosen == rejected, a critical failure
    validated = ctx.warehouse.version("preference")
    assert not validate_table(ctx, "preference").success
    ctx.warehouse.mark_run("preference", "release")  # ALTER TABLE ... SET TBLPROPERTIES: a new version, same data
    assert ctx.warehouse.version("preference") == validated + 1
    assert ctx.warehouse.sets_only_properties("preference", validated + 1)
    assert not ctx.warehouse.sets_only_properties("preference", validated)  # the commit that added the rows

    def versions_validated():
        return sorted(r[0] for r in ctx.warehouse.read("validation_results").select("table_version").distinct().collect())

    with pytest.raises(ValidationFailed, match=rf"'preference' version {validated + 1} failed 1 critical(.|\n)*"
                                               rf"at version {validated}; the later commits only set table properties"):
        assert_release_ready(ctx, ["preference"])
    assert versions_validated() == [validated]  # the earlier result decided; nothing was validated again

    ctx.warehouse.append_rows("preference", pairs("p3"), "t")  # new data: validated again at its version
    with pytest.raises(ValidationFailed, match=rf"'preference' version {validated + 2} failed"):
        assert_release_ready(ctx, ["preference"])
    assert versions_validated() == [validated, validated + 2]


def test_the_gate_does_not_validate_again_a_version_whose_later_commits_only_set_table_properties(ctx):
    """The release's retention commit makes a new version of each dataset table; the gate after the release
    reuses the outcome of the version it validated after the stage that wrote the data."""
    from medcorpus.quality.validation import StageGate

    def pairs(*ids):
        return ctx.spark.createDataFrame([(p, "s" + p, "Q?", "A", "B", "objective", "src", "zh", 10, "r") for p in ids],
                                         table_spec("preference").schema)

    def versions_validated():
        return sorted(r[0] for r in ctx.warehouse.read("validation_results").filter(F.col("table_name") == "preference")
                      .select("table_version").distinct().collect())

    gate = StageGate(ctx)
    ctx.warehouse.merge_new_rows("preference", pairs("p1", "p2"), "preference")
    written = ctx.warehouse.version("preference")
    (first,) = [o for o in gate.after("preference") if o.table == "preference"]
    assert first.success and first.version == written
    ctx.warehouse.mark_run("preference", "release")  # ALTER TABLE ... SET TBLPROPERTIES: a new version, same data
    (again,) = [o for o in gate.after("release") if o.table == "preference"]
    assert again is first
    assert versions_validated() == [written]

    ctx.warehouse.append_rows("preference", pairs("p3"), "preference")  # new data: validated at its version
    (new,) = [o for o in gate.after("preference") if o.table == "preference"]
    assert new.version == written + 2 and new is not first
    assert versions_validated() == [written, written + 2]
