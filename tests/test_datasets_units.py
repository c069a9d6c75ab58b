"""Pure-Python parts of the dataset stage: importers, the ConFilter LM, mixture planning. No Spark."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from medcorpus.core.config import MixtureConfig
from medcorpus.core.errors import ConfigError
from medcorpus.datasets.confilter import BOS, CharNgramLM, dialogue_cf, turns_of
from medcorpus.datasets.pretrain import MixtureError, MixtureResult, check_tolerance, plan_mixture, validate_mixture
from medcorpus.readers.formats import (
    IMPORTERS,
    covid_messages,
    importer,
    parse_covid_block,
    parse_options,
    read_cmexam_xlsx,
    read_covid_dialogue_txt,
    read_medquad_xml,
    read_scored_jsonl,
    read_sharegpt_jsonl,
    read_toyhom_csv,
)


# ---------------------------------------------------------------------------------------------------
# importers
# ---------------------------------------------------------------------------------------------------
def test_cmexam_options_split_on_literal_backslash_n_and_newlines():
    assert parse_options("A 原发病\\nB 出血部位\\nC 出血量") == [
        {"label": "A", "text": "原发病"}, {"label": "B", "text": "出血部位"}, {"label": "C", "text": "出血量"}]
    assert [o["label"] for o in parse_options("A. one\nB、two\n\nnoise\nC：three")] == ["A", "B", "C"]


def test_cmexam_xlsx_reads_items_and_quarantines_bad_answers(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Question", "Options", "Answer", "Explanation", "Difficulty level"])
    ws.append(["夜间阵发性呼吸困难，可见于", "A 急性喉炎\\nB 左心功能不全", "B", "左心功能不全（B对）", "3"])
    ws.append(["无解释的题", "A 甲\\nB 乙", "A", "nan", None])
    ws.append(["答案不在选项中", "A 甲\\nB 乙", "E", "x", None])
    wb.save(tmp_path / "val.xlsx")
    recs = list(read_cmexam_xlsx("cmexam", tmp_path / "val.xlsx"))
    assert [r["error"] for r in recs] == [None, None, "bad_multiple_choice"]
    first = recs[0]
    assert first["type"] == "multiple_choice" and first["answer"] == "B" and first["difficulty"] == "3"
    assert first["messages"][-1]["content"] == "答案：B. 左心功能不全\n\n解析：左心功能不全（B对）"
    assert recs[1]["explanation"] is None and "解析" not in recs[1]["messages"][-1]["content"]


def test_toyhom_csv_is_gb18030_with_embedded_newlines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes('department,title,ask,answer\r\n心血管科,高血压能吃党参吗？,"我有高血压\n能吃吗？","可以。\n注意血压。"\r\n'
                     .encode("gb18030"))
    (rec,) = list(read_toyhom_csv("toyhom", path))
    assert rec["department"] == "心血管科" and rec["language"] == "zh"
    assert rec["messages"] == [{"role": "user", "content": "高血压能吃党参吗？\n我有高血压\n能吃吗？"},
                               {"role": "assistant", "content": "可以。\n注意血压。"}]


COVID_ZH = """id=1
https://example.org/1

Description
疾病： 咳嗽
病情描述： 咳嗽两周

Dialogue
医生：
咳嗽有痰吗？
病人：
有一点痰。
病人：
没有发烧。
医生：
建议查血常规。

id=2
https://example.org/2

Description
只有描述

Dialogue
病人：
还在吗？
"""


def test_covid_dialogue_blocks_merge_speakers_and_open_with_the_description(tmp_path):
    path = tmp_path / "covid.txt"
    path.write_text(COVID_ZH.replace("\n", "\r\n"), encoding="utf-8")
    recs = list(read_covid_dialogue_txt("covid", path))
    assert recs[0]["type"] == "multi_turn"
    assert [m["role"] for m in recs[0]["messages"]] == ["user", "assistant", "user", "assistant"]
    assert recs[0]["messages"][0]["content"] == "疾病： 咳嗽\n病情描述： 咳嗽两周"
    assert recs[0]["messages"][2]["content"] == "有一点痰。\n没有发烧。"
    assert recs[1]["error"] == "no_doctor_reply"  # the doctor never answered: nothing to train on


def test_covid_description_repeated_by_the_patient_is_not_duplicated():
    desc, turns = parse_covid_block(["Description", "Sore throat.", "Dialogue", "Patient:", "Sore throat. Help?",
                                     "Doctor:", "Gargle."])
    assert covid_messages(desc, turns) == [{"role": "user", "content": "Sore throat. Help?"},
                                           {"role": "assistant", "content": "Gargle."}]


def test_medquad_keeps_empty_answers_for_the_stage_to_count(tmp_path):
    d = tmp_path / "1_X_QA"
    d.mkdir()
    (d / "a.xml").write_text('<?xml version="1.0"?><Document id="1"><QAPairs><QAPair pid="1"><Question qid="q">What is '
                             'asthma ?</Question><Answer>A lung disease.</Answer></QAPair><QAPair pid="2"><Question>'
                             'Who gets it ?</Question><Answer></Answer></QAPair></QAPairs></Document>', encoding="utf-8")
    (d / "bad.xml").write_text("<Document><QAPairs>", encoding="utf-8")
    recs = list(read_medquad_xml("medquad", tmp_path))
    assert [r["error"] for r in recs] == [None, None, "malformed_xml"]
    assert recs[1]["messages"][1]["content"] == ""  # removed downstream as empty_turn
    assert recs[0]["sample_id"] != recs[1]["sample_id"]


def test_sharegpt_and_scored_jsonl(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
                                               {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]})
                 + "\n{broken\n" + json.dumps({"conversations": [{"from": "robot", "value": "x"}]}) + "\n",
                 encoding="utf-8")
    recs = list(read_sharegpt_jsonl("g", p))
    assert [r["error"] for r in recs] == [None, "malformed_json", "bad_role"]
    assert recs[0]["type"] == "multi_turn"
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"prompt": "p", "responses": [{"content": "bad", "score": 1}, {"content": "good", "score": 4}]})
                 + "\n", encoding="utf-8")
    (rec,) = list(read_scored_jsonl("q", q))
    assert rec["messages"][-1]["content"] == "good" and len(rec["responses"]) == 2


def test_unknown_importer_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown SFT importer 'csv_magic'; valid: alpaca_jsonl"):
        importer("csv_magic")
    assert {"cmexam_xlsx", "cmmlu_csv", "medquad_xml", "pubmedqa_json", "toyhom_csv"} <= set(IMPORTERS)


# ---------------------------------------------------------------------------------------------------
# ConFilter language model
# ---------------------------------------------------------------------------------------------------
def _counts(text: str, order: int = 3) -> dict[str, int]:
    c: Counter[str] = Counter()
    padded = BOS * (order - 1) + text
    for k in range(1, order + 1):
        for i in range(order - k, len(padded) - k + 1):
            c[padded[i:i + k]] += 1
    return dict(c)


CORPUS = ("医生您好，我最近头痛恶心，需要做什么检查？建议先测血压，必要时做头颅CT检查。"
          "高血压患者应规律服药，定期复诊。周末我们去郊外爬山，山上空气清新，风景优美。") * 3


def test_ngram_probabilities_sum_to_one():
    lm = CharNgramLM(_counts(CORPUS), 3, 0.2)
    seen = set(CORPUS)
    for ctx in (BOS * 2, "头痛", "xx"):
        total = sum(lm.p_ngram(ctx, c) for c in seen) + (lm.vocab - len(seen)) * lm.p_ngram(ctx, "龘")
        assert math.isclose(total, 1.0, rel_tol=1e-9)


def test_cf_is_low_for_a_repeating_turn_and_high_for_an_unrelated_one():
    lm = CharNgramLM(_counts(CORPUS), 3, 0.2)
    related = [{"role": "user", "content": "我头痛恶心，血压高"}, {"role": "assistant", "content": "建议测血压"},
               {"role": "user", "content": "血压高头痛恶心怎么办"}, {"role": "assistant", "content": "规律服药，测血压"}]
    echo = [{"role": "user", "content": "头痛恶心需要做什么检查"}, {"role": "assistant", "content": "需要做头颅CT检查"},
            {"role": "user", "content": "头痛恶心需要做什么检查"}, {"role": "assistant", "content": "需要做头颅CT检查"}]
    unrelated = [{"role": "user", "content": "我头痛恶心"}, {"role": "assistant", "content": "建议测血压"},
                 {"role": "user", "content": "周末去郊外爬山好吗"}, {"role": "assistant", "content": "山上风景优美"}]
    cf_echo, cf_rel, cf_unrel = (dialogue_cf(lm, d) for d in (echo, related, unrelated))
    assert cf_echo < cf_rel < cf_unrel
    assert cf_echo < 0.6 and cf_unrel > 0.95  # ~1: the history does not help
    assert dialogue_cf(lm, related[:2]) is None  # one turn: no history to measure


def test_turns_group_a_question_with_its_answers():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
            {"role": "assistant", "content": "a1b"}, {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]
    assert turns_of(msgs) == ["q1\na1\na1b", "q2\na2"]


# ---------------------------------------------------------------------------------------------------
# mixture planning
# ---------------------------------------------------------------------------------------------------
STABLE = MixtureConfig(components={"medical": 19, "general": 1}, languages={"zh": 1, "en": 9})


def test_plan_takes_the_binding_cell_whole_and_scales_the_rest():
    available = {("medical", "zh"): 1000, ("medical", "en"): 100_000, ("general", "zh"): 5000, ("general", "en"): 50_000}
    plan = plan_mixture("stable", STABLE, available)
    # medical/zh binds: share 0.095 -> total = 1000 / 0.095
    assert plan.total == int(1000 / 0.095)
    assert plan.targets[("medical", "zh")] == 1000 - 1 or plan.targets[("medical", "zh")] == 1000
    assert plan.targets[("general", "en")] == int(plan.total * 0.045)
    assert all(plan.targets[c] <= available[c] for c in available)


def test_plan_fails_naming_the_empty_cell():
    available = {("medical", "zh"): 1000, ("medical", "en"): 100_000, ("general", "en"): 50_000}
    with pytest.raises(MixtureError, match=r"no tokens for general/zh \(needs 0.5% of the mix\)"):
        plan_mixture("stable", STABLE, available)


def test_tolerance_check_reports_requested_and_achieved():
    plan = plan_mixture("stable", STABLE, {("medical", "zh"): 95, ("medical", "en"): 855, ("general", "zh"): 5,
                                           ("general", "en"): 45})
    ok = MixtureResult("stable", {("medical", "zh"): 95, ("medical", "en"): 855, ("general", "zh"): 5,
                                  ("general", "en"): 45}, {"medical": 0.95, "general": 0.05}, {"zh": 0.1, "en": 0.9})
    check_tolerance(ok, 0.02, plan)
    bad = MixtureResult("stable", {("medical", "zh"): 95, ("medical", "en"): 855, ("general", "zh"): 0,
                                   ("general", "en"): 0}, {"medical": 0.95, "general": 0.05}, {"zh": 0.1, "en": 0.9})
    with pytest.raises(MixtureError, match="component:medical requested 0.950 achieved 1.000"):
        check_tolerance(bad, 0.02, plan)


def test_unknown_mixture_component_fails_fast():
    with pytest.raises(MixtureError, match="unknown component/language \\['books'\\]"):
        validate_mixture("x", MixtureConfig(components={"books": 1}, languages={"zh": 1}))
