"""The four LLM stages end to end against a real OpenAI-protocol server on 127.0.0.1 (tests/llm_server.py)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from medcorpus.core.errors import ConfigError
from medcorpus.core.pipeline import RunContext
from medcorpus.core.warehouse import table_spec
from medcorpus.llm import engine
from medcorpus.llm import tasks as llm_stages
from medcorpus.stages import run_stage
from tests.conftest import as_table
from tests.llm_server import FakeLLMServer

KEY_ENV = "MEDCORPUS_TEST_LLM_KEY"


@pytest.fixture
def api_key(monkeypatch):
    key = f"sk-leakcheck-{uuid.uuid4().hex}"
    monkeypatch.setenv(KEY_ENV, key)
    return key


@pytest.fixture
def server(api_key):
    with FakeLLMServer(api_key=api_key, slow_seconds=1.0) as srv:
        yield srv


@pytest.fixture
def llm_ctx(spark, make_config, server):
    """A context factory: a new run id per call, same warehouse, endpoint = the local server."""
    counter = iter(range(1, 100))

    def _make(*overrides: str) -> RunContext:
        config = make_config(
            f"run_id=llm-run-{next(counter)}",
            f"llm.base_url={server.base_url}",
            f"llm.api_key_env={KEY_ENV}",
            "llm.model=fake-model",
            "llm.partitions=2",
            "llm.concurrency=2",
            "llm.max_retries=2",
            "llm.backoff_base_s=0.01",
            "llm.backoff_max_s=0.02",
            "llm.request_timeout_s=5",
            *overrides,
        )
        return RunContext.create(spark, config)

    return _make


def write_documents(ctx: RunContext, docs: list[tuple[str, str]], lang: str = "zh") -> None:
    """(doc_id, text) rows into ``documents`` with the registered schema."""
    rows = [
        (doc_id, "test", "test.jsonl", "jsonl", None, None, None, text, lang, 0.99, False, len(text), len(text),
         f"h-{doc_id}", "test")
        for doc_id, text in docs
    ]
    docs = ctx.spark.createDataFrame(rows, table_spec("documents").schema).withColumn("domain", F.lit("medical"))
    for table in ("clean_documents", "unique_documents"):  # annotate reads the first, translate/generate-qa the second
        ctx.warehouse.merge_new_rows(table, as_table(docs, table), "test")


def run_log_row(ctx: RunContext, stage: str):
    return ctx.warehouse.read("run_log").filter((F.col("run_id") == ctx.run_id) & (F.col("stage") == stage)).first()


# ---------------------------------------------------------------------------------------------------
def test_annotate_two_rounds_disagreement_filter_failures_and_rerun(llm_ctx, server):
    ctx = llm_ctx("llm.annotate.min_chars=10")
    write_documents(ctx, [
        ("d-clin", "患者持续发热三天，医生诊断为病毒感染，建议对症治疗并多饮水休息观察。"),
        ("d-tcm", "中医认为气血不足者宜调理脾胃，可用四君子汤加减，并注意经络保养与起居。"),
        ("d-gen", "今天的天气很好，我们一起去公园散步，看到很多人在放风筝，非常开心愉快。"),
        ("d-dis", "[[disagree]] 营养均衡的饮食有助于健康，每天应吃足够的蔬菜水果和谷物。"),
        ("d-qd", "[[qdiff]] 患者服药后出现皮疹，应立即停药并就医诊断，必要时抗过敏治疗处理。"),
        ("d-fail", "[[always500]] 这是一段关于疾病治疗的文本，服务端总是返回错误状态码的例子。"),
        ("d-short", "短"),
    ])
    report = run_stage(ctx, "annotate")

    assert (report.rows_in, report.rows_out, report.rows_quarantined, report.rows_removed) == (6, 3, 1, 2)
    assert report.removed_by_reason == {
        "domain_disagreement": 1, "quality_disagreement": 1, "llm_failed:http_500": 1,
    }
    annotations = {r["doc_id"]: r for r in ctx.warehouse.read("annotations").collect()}
    assert set(annotations) == {"d-clin", "d-tcm", "d-gen", "d-dis", "d-qd"}
    assert (annotations["d-dis"]["domain_round1"], annotations["d-dis"]["domain_round2"]) == ("consumer_health", "general")
    assert annotations["d-dis"]["label"] is None and annotations["d-qd"]["score"] is None
    labels = {r["doc_id"]: (r["label"], r["is_medical"]) for r in ctx.warehouse.read("labelled_domain").collect()}
    assert labels == {"d-clin": ("clinical", True), "d-tcm": ("tcm", True), "d-gen": ("general", False),
                      "d-qd": ("pharmacy", True)}
    scores = {r["doc_id"]: r["score"] for r in ctx.warehouse.read("labelled_quality").collect()}
    assert set(scores) == {"d-clin", "d-tcm", "d-gen", "d-dis"} and scores["d-clin"] == 1.0
    failures = ctx.warehouse.read("llm_failures").collect()
    assert {(f["reason"], f["http_status"], f["requests"]) for f in failures} == {("http_500", 500, 3)}
    assert len(failures) == 2  # both rounds of d-fail, each tried 1 + max_retries times
    usage = ctx.warehouse.read("llm_usage").filter(F.col("run_id") == ctx.run_id).first()
    assert (usage["items"], usage["cache_hits"], usage["items_sent"], usage["failures"]) == (12, 0, 12, 2)
    assert usage["requests"] == 10 + 2 * 3 and usage["prompt_tokens"] > 0
    log_row = run_log_row(ctx, "annotate")
    assert "requests=16" in log_row["note"] and log_row["removed_by_reason"]["domain_disagreement"] == 1

    # rerun: only the failed document is pending; its two prompts are sent again, nothing else
    server.reset_counts()
    rerun = run_stage(llm_ctx("llm.annotate.min_chars=10", "llm.max_retries=0"), "annotate")
    assert (rerun.rows_in, rerun.rows_out, rerun.rows_quarantined) == (1, 0, 1)
    assert server.requests_total == 2 and len(server.prompts_seen) == 2
    assert ctx.warehouse.read("annotations").count() == 5


def test_crash_half_way_then_rerun_sends_only_the_unanswered_prompts(llm_ctx, server, monkeypatch):
    ctx = llm_ctx("llm.commit_every=3", "llm.translate.classical_particle_ratio=0.02")
    paragraphs = "\n".join(f"子曰：学而时习之，不亦说乎？其{i}也。" for i in range(10))
    write_documents(ctx, [("classic", paragraphs), ("modern", "今天我们去医院看病，医生说没什么问题。")])

    class SimulatedCrash(Exception):
        pass

    def crash_after_second_chunk(chunk: int) -> None:
        if chunk == 1:
            raise SimulatedCrash("after 2 committed chunks")

    monkeypatch.setattr(engine, "after_chunk_committed", crash_after_second_chunk)
    with pytest.raises(SimulatedCrash):
        run_stage(ctx, "translate")
    answered_before = {r["cache_key"] for r in ctx.warehouse.read("llm_cache").collect()}
    sent_before = set(server.prompts_seen)
    # chunks hold about commit_every prompts (hash-assigned); what two committed chunks answered is cached
    assert 0 < len(answered_before) == server.requests_total < 10

    monkeypatch.setattr(engine, "after_chunk_committed", lambda chunk: None)
    server.reset_counts()
    report = run_stage(llm_ctx("llm.commit_every=3"), "translate")
    assert server.requests_total == 10 - len(answered_before)
    assert not set(server.prompts_seen) & sent_before  # nothing answered before was sent again
    assert (report.rows_in, report.rows_out) == (10, 10)
    usage = ctx.warehouse.read("llm_usage").filter(F.col("run_id") == report_run(ctx, "translate")).first()
    assert (usage["cache_hits"], usage["items_sent"]) == (len(answered_before), 10 - len(answered_before))

    rows = ctx.warehouse.read("translations").orderBy("paragraph_index").collect()
    assert [r["paragraph_index"] for r in rows] == list(range(10))
    assert all(r["doc_id"] == "classic" for r in rows)  # the modern document is not classical
    assert rows[3]["source_text"] == "子曰：学而时习之，不亦说乎？其3也。"
    assert rows[3]["translation"] == "子曰：学而时习之，不亦说乎？其3也。（现代汉语）"



def report_run(ctx: RunContext, stage: str) -> str:
    """Run id of the newest run_log row of a stage."""
    return ctx.warehouse.read("run_log").filter(F.col("stage") == stage).orderBy(F.desc("started_at")).first()["run_id"]


def test_generate_qa_then_judge_with_faults_and_no_key_anywhere(llm_ctx, server, api_key, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    ctx = llm_ctx("llm.generate_qa.min_chars=10", "llm.generate_qa.pairs_per_doc=2", "llm.request_timeout_s=0.5")
    pad = "测试填充文字。" * 4  # markers sit past character 50: not copied into the generated QA pairs

    write_documents(ctx, [
        ("q1", "高血压患者应低盐饮食，规律服用降压药，定期监测血压并复诊。"),
        ("q2", "糖尿病患者需要控制血糖，合理饮食，适当运动，按医嘱用药。" + pad + "[[429]]"),
        ("q3", "感冒通常由病毒引起，多休息多喝水，一般一周左右可自愈。" + pad + "[[badjson]]"),
        ("q4", "骨折后需要固定制动，遵医嘱进行康复训练，避免过早负重。" + pad + "[[slow]]"),
        ("q5", "这份文档的回复总是无法解析，应该记录为失败并保留原文。" + pad + "[[alwaysbad]]"),
        ("q6", "这个端点会在错误信息中回显请求头，客户端必须把密钥遮住。" + pad + "[[echoauth]]"),
        ("tt", "[[tie]]两个回答得分相同的例子：头痛时应注意休息，必要时就医检查。"),
    ])
    qa = run_stage(ctx, "generate-qa")
    assert (qa.rows_in, qa.rows_out, qa.rows_quarantined) == (7, 5, 2)
    assert qa.removed_by_reason == {"llm_failed:malformed_reply": 1, "llm_failed:http_400": 1}
    generated = ctx.warehouse.read("generated_qa")
    assert generated.count() == 10
    row = generated.filter(F.col("source_doc_id") == "q1").orderBy("pair_index").first()
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert row["messages"][0]["content"].startswith("问题1：高血压") and row["type"] == "single_turn"
    assert row["language"] == "zh" and row["source"] == "test"
    raw = {r["cache_key"]: r for r in ctx.warehouse.read("llm_failures").collect()}
    assert any(r["raw_response"] == '{"this is": not json' for r in raw.values())
    assert all(api_key not in (r["error"] or "") for r in raw.values())
    assert any("***" in (r["error"] or "") for r in raw.values())  # the echoed key was redacted

    sft = generated.select(F.col("qa_id").alias("sample_id"), "messages", "language", "source", "type")
    ctx.warehouse.overwrite_rows("sft", as_table(sft, "sft"), "sft")  # the judge reads the sft table
    judged = run_stage(llm_ctx(), "judge")
    assert (judged.rows_in, judged.rows_out, judged.rows_removed, judged.rows_quarantined) == (10, 8, 2, 0)
    assert judged.removed_by_reason == {"tie": 2}
    prefs = ctx.warehouse.read("judged_preferences").collect()
    assert len(prefs) == 8
    assert {p["chosen_origin"] for p in prefs} == {"generated"}  # the doctor answer wins, whatever the order shown
    for p in prefs:
        assert p["chosen"].startswith("医生建议：") and p["rejected"].startswith("答案")
        assert p["chosen_score"] > p["rejected_score"] and p["kind"] == "subjective"
        assert p["source"] == "llm_judge:sft" and p["sample_id"]
    usage = {r["template"]: r for r in ctx.warehouse.read("llm_usage").filter(F.col("stage") == "judge").collect()}
    assert set(usage) == {"doctor_answer.v1", "judge.v1"}

    # the key reached the server, and nowhere else: logs, captured output, every file of every table
    assert server.auth_headers and all(h == f"Bearer {api_key}" for h in server.auth_headers)
    assert api_key not in caplog.text
    out, err = capfd.readouterr()
    assert api_key not in out and api_key not in err
    leaks = [p for p in Path(ctx.config.warehouse).rglob("*") if p.is_file() and api_key.encode() in p.read_bytes()]
    assert leaks == []
    assert api_key not in " ".join(str(r["note"]) for r in ctx.warehouse.read("run_log").collect())


def test_llm_stages_need_an_endpoint_and_fail_before_spark(ctx, capsys):
    from medcorpus.cli import main

    with pytest.raises(ConfigError, match="llm.base_url is not set"):
        run_stage(ctx, "annotate")
    assert main(["translate", "--warehouse", ctx.config.warehouse]) == 2
    assert "llm.base_url is not set" in capsys.readouterr().err
    assert main(["judge", "--set", "llm.base_url=http://127.0.0.1:9/v1", "--set", "llm.judge.template=judge.v7"]) == 2
    assert "'judge.v7' not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# pure transforms
def test_classical_detection_and_paragraph_split(spark):
    docs = spark.createDataFrame(
        [("a", "子曰：学而时习之，不亦说乎？\n\n  有朋自远方来，不亦乐乎？ \n", "zh"),
         ("b", "今天我们去医院看病。", "zh"), ("c", "", "zh"), ("d", "之乎者也", "en")],
        "doc_id string, text string, lang string",
    )
    picked = llm_stages.classical_documents(docs, "is_classical", 0.02)
    assert [r["doc_id"] for r in picked.collect()] == ["a"]
    marked = docs.withColumn("is_classical", F.col("doc_id") == "b")
    assert [r["doc_id"] for r in llm_stages.classical_documents(marked, "is_classical", 0.02).collect()] == ["b"]
    paras = [(r["paragraph_index"], r["source_text"]) for r in llm_stages.paragraphs(docs.filter("doc_id = 'a'"), 2).collect()]
    assert paras == [(0, "子曰：学而时习之，不亦说乎？"), (2, "有朋自远方来，不亦乐乎？")]


@pytest.mark.slow
def test_a_killed_cli_run_resumes_and_sends_only_the_unanswered_prompts(spark, make_config, api_key, tmp_path):
    """`medcorpus translate` in a subprocess, SIGKILLed half way; the rerun sends only the unanswered prompts."""
    import os
    import signal
    import subprocess
    import sys
    import time

    with FakeLLMServer(api_key=api_key, delay_s=0.4) as server:
        ctx = RunContext.create(spark, make_config("run_id=seed-docs"))
        write_documents(ctx, [("classic", "\n".join(f"子曰：学而时习之，不亦说乎？其{i}也。" for i in range(12)))])
        settings = [f"llm.base_url={server.base_url}", f"llm.api_key_env={KEY_ENV}", "llm.model=fake-model",
                    "llm.commit_every=2", "llm.partitions=1", "llm.concurrency=1", "spark.shuffle_partitions=2"]
        argv = [sys.executable, "-m", "medcorpus.cli", "translate", "--warehouse", ctx.config.warehouse,
                "--run-id", "killed-run"]
        for item in settings:
            argv += ["--set", item]
        log_file = tmp_path / "killed.log"
        with open(log_file, "wb") as log_out:
            proc = subprocess.Popen(argv, stdout=log_out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                # kill once the first chunk is committed to llm_cache (Delta version 1) and the next is in flight
                first_commit = Path(ctx.warehouse.path("llm_cache")) / "_delta_log" / f"{1:020d}.json"
                deadline = time.monotonic() + 300
                while not first_commit.exists() and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                sent_at_commit = server.requests_total
                while server.requests_total == sent_at_commit and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert proc.poll() is None, "the run finished before it could be killed"
            finally:
                os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its Spark JVM, nothing else
                proc.wait()
        answered = ctx.warehouse.read("llm_cache").count() if ctx.warehouse.exists("llm_cache") else 0
        sent_before = set(server.prompts_seen)
        assert 0 < answered < 12
        assert len(sent_before) >= answered  # sent = committed + the chunk in flight, lost with the process

        server.reset_counts()
        resumed = run_stage(RunContext.create(spark, make_config("run_id=resumed", *settings)), "translate")
        assert server.requests_total == 12 - answered
        assert (resumed.rows_in, resumed.rows_out) == (12, 12)
        assert ctx.warehouse.read("translations").count() == 12
        assert api_key.encode() not in log_file.read_bytes()
