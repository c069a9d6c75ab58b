"""The dataset stages end to end on a tiny warehouse: sft, preference, pretrain, release, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from medcorpus.core.warehouse import table_spec
from medcorpus.demo import write_demo_sft_inputs
from medcorpus.stages import run_stage
from tests.conftest import as_table

MED_ZH = "高血压患者应规律服用降压药，定期监测血压，饮食清淡，限制食盐摄入，戒烟限酒，适量运动。"
GEN_ZH = "周末我们全家去郊外爬山，山上空气清新，风景优美，沿途还能看到很多野花。"
MED_EN = "Hypertension is treated with lifestyle change and amlodipine; review the dose at every visit. "
GEN_EN = "The city council approved a new budget for parks and bicycle lanes along the river. "


def _documents(spark, n: int = 40):
    rows = []
    for i in range(n):
        for domain, lang, text, tokens in (("medical", "zh", MED_ZH, 30), ("general", "zh", GEN_ZH, 25),
                                           ("medical", "en", MED_EN, 25), ("general", "en", GEN_EN, 20)):
            doc_id = f"{domain}-{lang}-{i:03d}"
            rows.append((doc_id, "demo", f"/data/{domain}_{lang}.jsonl", "jsonl", None, None,
                         json.dumps({"domain": domain}), f"{text} {i}", lang, 0.99, False, len(text), tokens,
                         doc_id, "r0"))
    return spark.createDataFrame(rows, table_spec("documents").schema)


def _sources(folder: Path) -> str:
    srcs = [{"name": "demo_alpaca", "format": "alpaca_jsonl", "path": str(folder / "instructions.jsonl")},
            {"name": "demo_sharegpt", "format": "sharegpt_jsonl", "path": str(folder / "dialogues.jsonl")},
            {"name": "demo_exam", "format": "mc_jsonl", "path": str(folder / "exam.jsonl")},
            {"name": "demo_scored", "format": "scored_jsonl", "path": str(folder / "scored.jsonl")},
            {"name": "absent", "format": "alpaca_jsonl", "path": str(folder / "missing.jsonl")}]
    return "datasets.sft_sources=" + json.dumps(srcs)


@pytest.fixture
def datasets_ctx(spark, make_config, tmp_path):
    from medcorpus.core.pipeline import RunContext

    write_demo_sft_inputs(tmp_path / "sft_in")

    def _ctx(run_id: str, *extra: str) -> RunContext:
        cfg = make_config(f"run_id={run_id}", _sources(tmp_path / "sft_in"), "datasets.confilter_min_count=1",
                          "datasets.mixtures.stable.tolerance=0.05", "datasets.mixtures.boost.tolerance=0.05",
                          "datasets.export_rows_per_shard=25", "datasets.decontaminate=false", *extra)
        return RunContext.create(spark, cfg)

    return _ctx


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_datasets_release_and_byte_identical_export(spark, datasets_ctx, tmp_path, monkeypatch):
    from medcorpus.datasets import release
    from medcorpus.datasets.release import ReleaseError, export_release, verify_export

    gate_calls = []
    monkeypatch.setattr(release, "_validation_hook", lambda ctx, versions: gate_calls.append(versions) or "gated")

    ctx = datasets_ctx("run-1")
    ctx.warehouse.merge_new_rows("unique_documents", as_table(_documents(spark), "unique_documents"), stage="test")

    sft_report = run_stage(ctx, "sft")
    sft = ctx.warehouse.read("sft")
    sft_rows, sft_version = sft.count(), ctx.warehouse.version("sft")
    by_type = {r["type"]: r["n"] for r in sft.groupBy("type").agg(F.count(F.lit(1)).alias("n")).collect()}
    assert by_type["multiple_choice"] == 22  # every demo exam item is kept (exam items skip Deita)
    # the planted off-topic dialogue is dropped (CF > upper); the planted echo has the lowest CF of all
    assert sft_report.removed_by_reason == {"confilter_high": 1}
    from medcorpus.readers.formats import _sample_id

    dialogues = sft.filter(F.col("type") == "multi_turn").orderBy("scores.confilter").collect()
    assert dialogues[0]["sample_id"] == _sample_id("demo_sharegpt", "zh-dlg-echo")
    assert _sample_id("demo_sharegpt", "zh-dlg-offtopic") not in {d["sample_id"] for d in dialogues}
    assert sft.filter(F.col("sample_id").isNull() | (F.size("messages") < 2)).count() == 0
    assert "skipped missing sources: absent" in sft_report.note
    assert sft.filter((F.col("type") == "multi_turn") & F.col("scores.confilter").isNull()).count() == 0

    pref_report = run_stage(ctx, "preference")
    pref = ctx.warehouse.read("preference")
    kinds = {r["kind"]: r["n"] for r in pref.groupBy("kind").agg(F.count(F.lit(1)).alias("n")).collect()}
    assert kinds == {"objective": 22, "subjective": 7}  # 10 scored prompts, 3 of them ties
    assert pref_report.removed_by_reason == {"tie": 3}
    assert pref.filter(F.col("chosen") == F.col("rejected")).count() == 0
    objective = pref.filter(F.col("kind") == "objective").first()
    assert objective["rejected"].split("\n")[0] != objective["chosen"].split("\n")[0]

    pt_report = run_stage(ctx, "pretrain")
    assert "domain from classifier column 'domain'" in pt_report.note  # null here: meta.domain fills it
    assert pt_report.rows_in == 2 * 160 + sft_rows  # stable sees the 160 documents; boost them and the sft rows
    tokens = {(r["mixture"], r["component"], r["lang"]): r["t"] for r in ctx.warehouse.read("pretrain")
              .groupBy("mixture", "component", "lang").agg(F.sum("token_estimate").alias("t")).collect()}
    stable = {k[1:]: v for k, v in tokens.items() if k[0] == "stable"}
    total = sum(stable.values())
    assert abs((stable[("medical", "zh")] + stable[("medical", "en")]) / total - 0.95) <= 0.05
    assert abs((stable[("medical", "zh")] + stable.get(("general", "zh"), 0)) / total - 0.1) <= 0.05
    assert {k[1] for k in tokens if k[0] == "boost"} == {"medical", "sft"}

    rel_report = run_stage(ctx, "release", name="r1")
    assert gate_calls == [{t: ctx.warehouse.version(t) for t in ("sft", "preference", "pretrain")}]
    assert "gated" in rel_report.note
    with pytest.raises(ReleaseError, match="already exists"):
        rel_report = run_stage(ctx, "release", name="r1")
    assert gate_calls == [{t: ctx.warehouse.version(t) for t in ("sft", "preference", "pretrain")}]
    assert "gated" in rel_report.note
    first = export_release(ctx, "r1", "jsonl", tmp_path / "a")
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["row_counts"]["sft"] == sft_rows and verify_export(first) == []
    assert len([f for f in manifest["files"] if f["path"].startswith("sft/")]) == -(-sft_rows // 25)
    line = json.loads((first / "sft" / "train-00000-of-00004.jsonl").read_text().splitlines()[0])
    assert set(line["messages"][0]) == {"role", "content"}
    assert json.loads((first / "dataset_info.json").read_text())["medcorpus_dpo"]["ranking"] is True

    # the tables move on: a new threshold rewrites sft; preference and pretrain lose rows
    later = datasets_ctx("run-2", "datasets.deita_threshold=12")
    run_stage(later, "sft")
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, later.warehouse.path("preference")).delete("kind = 'subjective'")
    DeltaTable.forPath(spark, later.warehouse.path("pretrain")).delete("mixture = 'boost' AND component = 'sft'")
    assert later.warehouse.version("sft") > sft_version
    assert later.warehouse.read("sft").count() < sft_rows
    second = export_release(later, "r1", "jsonl", tmp_path / "b")
    assert _files(first) == _files(second)

    parquet = export_release(later, "r1", "parquet", tmp_path / "p")
    import pyarrow.parquet as pq

    table = pq.read_table(parquet / "preference")
    assert table.num_rows == manifest["row_counts"]["preference"]
    assert table.column_names[:4] == ["id", "prompt", "chosen", "rejected"]


def test_objective_pairs_are_seeded_and_never_the_answer(spark):
    from medcorpus.datasets.preference import objective_pairs
    from medcorpus.readers.formats import mc_record

    recs = [mc_record("t", "f", i, str(i), f"问题{i}", [{"label": x, "text": f"选项{x}"} for x in "ABCDE"],
                      "AC" if i % 2 else "B", "解析") for i in range(30)]
    from medcorpus.readers.formats import records_frame

    df = records_frame(spark, recs)
    a = {r["sample_id"]: r["rejected"] for r in objective_pairs(df, 1).collect()}
    b = {r["sample_id"]: r["rejected"] for r in objective_pairs(df, 1).collect()}
    c = {r["sample_id"]: r["rejected"] for r in objective_pairs(df, 2).collect()}
    assert a == b and a != c
    answers = {r["sample_id"]: r["answer"] for r in recs}
    for sid, rejected in a.items():
        letter = rejected.removeprefix("答案：")[0]
        assert letter not in answers[sid]
    assert len({v[3] for v in a.values()}) >= 3  # the wrong option varies across items


def test_sft_rows_overlapping_a_benchmark_are_removed_and_recorded(spark, make_config, tmp_path):
    from medcorpus.core.pipeline import RunContext
    from medcorpus.datasets.decontamination import contaminated_ids, flag_contaminated

    bench = tmp_path / "bench" / "cmmlu" / "test"
    bench.mkdir(parents=True)
    question = "患者饱餐后上腹部持续疼痛一天，查体上腹部压痛反跳痛，应首先考虑的诊断是"
    (bench / "clinical.csv").write_text(f",Question,A,B,C,D,Answer\n0,{question},急性胃炎,急性胰腺炎,急性肝炎,肝癌,B\n",
                                        encoding="utf-8")
    ctx = RunContext.create(spark, make_config("run_id=decon", f"decontaminate.benchmarks_dir={tmp_path / 'bench'}"))
    df = spark.createDataFrame(
        [("a", "以下是一道选择题。\n" + question + "\nA. 急性胃炎\nB. 急性胰腺炎"), ("b", "高血压患者应规律服药，定期复诊。")],
        "sample_id string, all_text string",
    )
    ids, note = contaminated_ids(ctx, df, "sample_id", ("all_text",), "sft")
    flagged = {r["sample_id"]: r["_contaminated"] for r in flag_contaminated(df, ids, "sample_id").collect()}
    assert flagged == {"a": True, "b": False}
    assert "decontaminated against 1 benchmark items" in note
    hits = ctx.warehouse.read("contamination_hits").collect()
    assert [(h["kind"], h["item_id"]) for h in hits] == [("sft", "a")]
    off, note = contaminated_ids(RunContext.create(spark, make_config("datasets.decontaminate=false")), df,
                                 "sample_id", ("all_text",), "sft")
    assert off is None and "off" in note


def test_release_gate_calls_validation_with_tables_and_versions(monkeypatch, ctx):
    import sys
    import types

    from medcorpus.datasets.release import _validation_hook

    seen = {}
    fake = types.ModuleType("medcorpus.quality.validation")
    fake.assert_release_ready = lambda ctx, tables, versions=None: seen.update(tables=tables, versions=versions)
    monkeypatch.setitem(sys.modules, "medcorpus.quality.validation", fake)
    import medcorpus.quality

    # ``from medcorpus.quality import validation`` reads the package attribute once the module was imported
    monkeypatch.setattr(medcorpus.quality, "validation", fake, raising=False)
    assert _validation_hook(ctx, {"sft": 3, "preference": 1}) == "validation passed"
    assert seen == {"tables": ["sft", "preference"], "versions": {"sft": 3, "preference": 1}}


def test_spark_ngram_counts_match_a_python_count(spark):
    from collections import Counter

    from medcorpus.datasets.confilter import BOS, ngram_counts

    texts = ["头痛恶心，头痛", "ab", "", "x"]
    expected: Counter[str] = Counter()
    for t in texts:
        padded = BOS * 2 + t
        for k in (1, 2, 3):
            for i in range(3 - k, len(padded) - k + 1):
                expected[padded[i:i + k]] += 1
    df = spark.createDataFrame([(t,) for t in texts], "text string")
    got = {r["ngram"]: r["n"] for r in ngram_counts(df, 3, 1, 1000).collect()}
    assert got == dict(expected)
    top = ngram_counts(df, 3, 2, 2).collect()  # pruning: min count 2, then the 2 most frequent
    assert [r["n"] for r in top] == sorted((n for n in expected.values() if n >= 2), reverse=True)[:2]


def test_sampling_keeps_the_crossing_item_when_it_lands_closer_to_the_target(spark):
    """A cell of long documents (whole books) must not stop a whole document short of its target."""
    from medcorpus.datasets.pretrain import MixturePlan, sample_cells, sample_key

    rows = [(f"i{i}", "medical", "zh", t) for i, t in enumerate([400, 400, 400, 400, 400])]
    items = spark.createDataFrame(rows, "item_id string, component string, lang string, token_estimate long")
    ordered = [r["item_id"] for r in items.withColumn("k", sample_key(7, "m")).orderBy("k", "item_id").collect()]

    def kept(target: int) -> list[str]:
        plan = MixturePlan("m", {("medical", "zh"): 1.0}, {("medical", "zh"): 2000}, {("medical", "zh"): target})
        out = sample_cells(items, plan, 7).filter("sampled").collect()
        return sorted(r["item_id"] for r in out)

    assert kept(700) == sorted(ordered[:2])  # 800 is 100 over, 400 is 300 short: take the crossing item
    assert kept(500) == sorted(ordered[:1])  # 800 is 300 over, 400 is 100 short: stop short
    assert kept(1200) == sorted(ordered[:3])  # exact
    assert kept(100) == []  # 400 is 300 over, 0 is 100 short
