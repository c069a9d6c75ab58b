"""The SFT importers on the real files in ../shared/data (pure Python readers, no Spark)."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from medcorpus.readers.formats import IMPORTERS
from tests.conftest import shared_data_path

pytestmark = pytest.mark.shared_data


@pytest.mark.parametrize(
    ("fmt", "parts", "expected_rows", "expected_type"),
    [
        ("alpaca_jsonl", ("medical_zh", "huatuo", "llama_data.json"), 8658, "single_turn"),
        ("toyhom_csv", ("medical_zh", "toyhom_dialogue", "im_sample_5000-6000.gb18030.csv"), 7644, "single_turn"),
        ("cmtmedqa_json", ("medical_zh", "cmtmedqa", "CMtMedQA_test.json"), 1144, "multi_turn"),
        ("covid_dialogue_txt", ("medical_zh", "covid_dialogue", "COVID-Dialogue-Dataset-Chinese.txt"), 1393, "multi_turn"),
        ("covid_dialogue_txt", ("medical_en", "covid_dialogue", "COVID-Dialogue-Dataset-English.txt"), 604, "single_turn"),
        ("sharegpt_jsonl", ("medical_zh", "medicalgpt", "medical_sft_1K_format.jsonl"), 1000, "single_turn"),
        ("pubmedqa_json", ("medical_en", "pubmedqa", "ori_pqal.json"), 1000, "multiple_choice"),
        ("cmexam_xlsx", ("benchmarks", "cmexam_val", "val.xlsx"), 6811, "multiple_choice"),
    ],
)
def test_real_file_imports_every_record(fmt, parts, expected_rows, expected_type):
    path = shared_data_path(*parts)
    recs = list(IMPORTERS[fmt]("real", path))
    assert len(recs) == expected_rows  # one record (or one quarantine record) per source item
    ids = Counter(r["sample_id"] for r in recs if r["error"] is None)
    assert ids.most_common(1)[0][1] == 1, "sample_id must be a key (covid_en repeats id=18)"
    ok = [r for r in recs if r["error"] is None]
    assert len(ok) >= 0.9 * expected_rows
    assert Counter(r["type"] for r in ok).most_common(1)[0][0] == expected_type
    for r in ok[:200]:
        assert r["messages"][-1]["role"] == "assistant"
        assert {m["role"] for m in r["messages"]} <= {"system", "user", "assistant"}


def test_cmexam_options_and_answers_parse():
    recs = [r for r in IMPORTERS["cmexam_xlsx"]("cmexam", shared_data_path("benchmarks", "cmexam_val", "val.xlsx"))
            if r["error"] is None]
    assert all(len(r["options"]) >= 4 for r in recs[:500])
    assert all(set(r["answer"]) <= {o["label"] for o in r["options"]} for r in recs)
    assert sum(r["explanation"] is not None for r in recs) > 0.8 * len(recs)  # 85% of val items have one


def test_medquad_and_cmmlu_medical_subjects():
    medquad = list(itertools.islice(IMPORTERS["medquad_xml"]("medquad", shared_data_path("medical_en", "medquad")), 3000))
    assert all(r["language"] == "en" for r in medquad)
    cmmlu = list(IMPORTERS["cmmlu_csv"]("cmmlu", shared_data_path("benchmarks", "cmmlu", "dev"),
                                        subjects=("anatomy", "virology")))
    assert len(cmmlu) == 10 and {r["discipline"] for r in cmmlu} == {"anatomy", "virology"}
    assert all(r["answer"] in "ABCD" for r in cmmlu)
