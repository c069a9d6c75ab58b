"""Decontamination: n-gram rules, benchmark loading (CSV/JSONL/XLSX), the reusable DataFrame functions and
the stage on real Delta tables; and, with ../shared/data, every planted CMMLU test question is found."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from medcorpus.core.config import DecontaminateConfig
from medcorpus.core.pipeline import RunContext
from medcorpus.core.warehouse import table_spec
from medcorpus.dedup.decontaminate import (
    build_index,
    drop_contaminated,
    find_contamination,
    item_ngrams,
    load_benchmark_items,
    load_index,
)
from medcorpus.stages import run_stage

from .conftest import shared_data_path

Q_ZH = "患者男，45岁，突发胸骨后压榨性疼痛2小时，心电图示V1-V4导联ST段抬高，最可能的诊断是"
Q_EN = ("Which of the following drugs is the first line treatment for an adult patient with newly "
        "diagnosed type 2 diabetes and normal kidney function")


def _bench_dir(tmp_path):
    root = tmp_path / "bench"
    (root / "cmmlu" / "test").mkdir(parents=True)
    with (root / "cmmlu" / "test" / "clinical.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
        w.writerow([0, Q_ZH, "急性前壁心肌梗死", "主动脉夹层", "肺栓塞", "心包炎", "A"])
        w.writerow([1, "短题", "甲", "乙", "丙", "丁", "A"])  # too short to flag anything
    (root / "en").mkdir()
    (root / "en" / "med_test.jsonl").write_text(
        json.dumps({"question": Q_EN, "options": ["metformin", "insulin"], "answer": "A"}) + "\n", encoding="utf-8"
    )
    return root


def _cfg(root) -> DecontaminateConfig:
    return DecontaminateConfig(benchmarks_dir=str(root), benchmark_globs=("cmmlu/test/*.csv", "**/*test*.jsonl"))


def test_item_ngrams_are_long_and_language_aware():
    cfg = DecontaminateConfig()
    zh = item_ngrams(Q_ZH, cfg)
    assert len(zh) > 20  # character 13-grams
    en = item_ngrams(Q_EN, cfg)
    assert 0 < len(en) <= len(Q_EN.split()) - cfg.en_ngram_words + 1  # word 13-grams
    assert len(item_ngrams("短题 甲 乙", cfg)) == 0


def test_benchmarks_load_from_a_folder(tmp_path):
    items = load_benchmark_items(_cfg(_bench_dir(tmp_path)))
    assert {(i.benchmark, i.item_id) for i in items} == {
        ("cmmlu/test/clinical.csv", "0"), ("cmmlu/test/clinical.csv", "1"), ("en/med_test.jsonl", "0")
    }


def test_find_and_drop_contaminated_rows(spark, tmp_path):
    cfg = _cfg(_bench_dir(tmp_path))
    index = load_index(spark, cfg)
    rows = [
        ("copy_zh", f"一些前言。{Q_ZH}？A. 急性前壁心肌梗死 B. 主动脉夹层"),
        ("reformatted_zh", Q_ZH.replace("，", " , ") + "答案：A"),  # punctuation/spacing changed
        ("copy_en", "Exam prep: " + Q_EN.upper() + "? Answer: metformin."),
        ("clean_zh", "高血压患者首先要注意控制食盐摄入量，每天不超过六克，多吃新鲜的绿色蔬菜水果。"),
        ("partial_zh", Q_ZH[:14] + "，然后讲别的事情，和题目无关的内容很多很多。"),
    ]
    sft = spark.createDataFrame(rows, "id string, prompt string").selectExpr("id", "prompt", "'ok' as response")
    hits = find_contamination(sft, index, cfg, id_col="id", text_cols=("prompt", "response"), kind="sft")
    found = {r["item_id"]: r for r in hits.collect()}
    assert set(found) == {"copy_zh", "reformatted_zh", "copy_en"}
    assert found["copy_en"]["benchmark"] == "en/med_test.jsonl" and found["copy_zh"]["kind"] == "sft"
    kept = drop_contaminated(sft, index, cfg, id_col="id", text_cols=("prompt", "response"))
    assert sorted(r["id"] for r in kept.collect()) == ["clean_zh", "partial_zh"]
    assert kept.columns == sft.columns


def test_the_index_is_built_once_per_process_until_a_benchmark_file_or_the_config_changes(spark, tmp_path):
    root = _bench_dir(tmp_path)
    cfg = _cfg(root)
    first = load_index(spark, cfg)
    assert load_index(spark, cfg) is first  # the sft and preference stages reuse the decontaminate stage's index
    assert load_index(spark, _cfg(root).model_copy(update={"zh_ngram_chars": 8})) is not first  # other n-grams
    extra = Q_EN.replace("first line", "second line")
    with (root / "en" / "med_test.jsonl").open("a", encoding="utf-8") as fh:  # a benchmark item added
        fh.write(json.dumps({"question": extra, "options": ["a", "b"], "answer": "A"}) + "\n")
    grown = load_index(spark, cfg)
    assert grown is not first and grown.items == first.items + 1
    rows = spark.createDataFrame([("d", "Exam: " + extra)], "id string, prompt string")
    assert [r["item_id"] for r in find_contamination(rows, grown, cfg, id_col="id", text_cols=("prompt",),
                                                     kind="sft").collect()] == ["d"]


def test_decontaminate_stage_removes_documents(spark, make_config, tmp_path):
    root = _bench_dir(tmp_path)
    ctx = RunContext.create(spark, make_config(f"decontaminate.benchmarks_dir={root}",
                                               "decontaminate.benchmark_globs=[cmmlu/test/*.csv]"))
    spec = table_spec("unique_documents")
    base = {f.name: None for f in spec.schema.fields}

    def row(doc_id, text):
        r = dict(base, doc_id=doc_id, source="s", source_file="f", source_format="text", text=text, lang="zh",
                 lang_confidence=1.0, t2s_converted=False, char_count=len(text), token_estimate=len(text),
                 text_hash=doc_id, normalize_run_id="n", cluster_size=1, dedup_run_id="d")
        return tuple(r[f.name] for f in spec.schema.fields)

    docs = spark.createDataFrame([row("bad", "题目：" + Q_ZH), row("good", "多喝水，多休息，注意饮食清淡。")], spec.schema)
    ctx.warehouse.append_rows("unique_documents", docs.coalesce(1), stage="dedup")  # both rows in one file
    report = run_stage(ctx, "decontaminate")
    assert (report.rows_in, report.rows_out, report.rows_removed) == (2, 1, 1)
    assert [r["doc_id"] for r in ctx.warehouse.read("unique_documents").collect()] == ["good"]
    # the table's files are zstd parquet (spark.parquet_codec), also the one the delete rewrote; the table has
    # no deletion vectors, so delta-rs (the JVM-free commands) still reads it
    merged = ctx.warehouse.last_operation_metrics("unique_documents")
    assert int(merged["numTargetFilesAdded"]) == 1 and int(merged.get("numTargetDeletionVectorsAdded", 0)) == 0
    from deltalake import DeltaTable

    assert DeltaTable(ctx.warehouse.path("unique_documents")).to_pyarrow_dataset().count_rows() == 1
    data_files = list(Path(ctx.warehouse.path("unique_documents")).glob("*.parquet"))
    assert data_files and all(".zstd." in f.name for f in data_files)
    hits = ctx.warehouse.read("contamination_hits").collect()
    assert [(h["item_id"], h["bench_item_id"], h["overlap"]) for h in hits] == [("bad", "0", 1.0)]
    again = run_stage(RunContext.create(spark, make_config(f"decontaminate.benchmarks_dir={root}")), "decontaminate")
    assert again.rows_removed == 0 and ctx.warehouse.read("contamination_hits").count() == 1


@pytest.mark.shared_data
def test_all_planted_cmmlu_questions_are_found(spark):
    root = shared_data_path("benchmarks")
    cfg = DecontaminateConfig(benchmarks_dir=str(root), benchmark_globs=("cmmlu/test/*.csv",))
    items = load_benchmark_items(cfg)
    assert len(items) > 10000
    index = build_index(spark, items, cfg)
    options_of = {}
    for path in sorted((root / "cmmlu" / "test").glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for i, r in enumerate(csv.DictReader(fh)):
                options_of[(f"cmmlu/test/{path.name}", str(i))] = r
    rng = random.Random(11)
    planted = rng.sample([i for i in items if len(item_ngrams(i.text, cfg))], 40)
    filler = shared_data_path("medical_zh", "medicalgpt", "fever.txt").read_text(encoding="utf-8")
    rows = []
    for n, item in enumerate(planted):
        start = rng.randrange(0, len(filler) - 600)
        row = options_of[(item.benchmark, item.item_id)]
        body = item.question + "\n" + "\n".join(f"{k}. {row[k]}" for k in "ABCD")
        rows.append((f"p{n}", filler[start : start + 300] + "\n" + body + "\n" + filler[start + 300 : start + 600]))
    rows += [(f"c{n}", filler[n * 500 : n * 500 + 800]) for n in range(20)]
    df = spark.createDataFrame(rows, "doc_id string, text string")
    hits = find_contamination(df, index, cfg).collect()
    found = {(h["item_id"], h["benchmark"], h["bench_item_id"]) for h in hits}
    expected = {(f"p{n}", item.benchmark, item.item_id) for n, item in enumerate(planted)}
    assert expected <= found  # every planted question found in its document
    assert not {h["item_id"] for h in hits if h["item_id"].startswith("c")}  # no clean filler flagged
