"""The labelled-data builder reads the shared dataset formats with the SFT import's parsers: the same
records, and the unreadable ones counted (the SFT import quarantines them) instead of silently dropped."""

from __future__ import annotations

import json
import logging

from medcorpus.classify import labelled
from medcorpus.readers import formats

GOOD = [{"instruction": "头痛怎么办", "input": "", "output": "多休息。"},
        {"instruction": "What is BP?", "input": "adult", "output": "Blood pressure."}]


def _huatuo(root):
    path = root / "medical_zh/huatuo/llama_data.json"
    path.parent.mkdir(parents=True)
    lines = [json.dumps(GOOD[0], ensure_ascii=False), "{not json", "", json.dumps({"instruction": "no output"}),
             json.dumps(GOOD[1])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_labelled_and_sft_import_read_the_same_records(tmp_path, caplog):
    path = _huatuo(tmp_path)
    labelled.SKIPPED.clear()
    with caplog.at_level(logging.WARNING, logger="medcorpus.classify.labelled"):
        rows = list(labelled.read_huatuo(tmp_path))
    assert rows == [("huatuo#0", "头痛怎么办\n\n多休息。"), ("huatuo#0", "What is BP?\nadult\nBlood pressure.")]
    assert labelled.SKIPPED == {("huatuo", "malformed_json"): 1, ("huatuo", "missing_fields"): 1}
    assert "skipped 2 unreadable records (malformed_json: 1, missing_fields: 1)" in caplog.text

    records = list(formats.read_alpaca_jsonl("huatuo", path))
    assert [r["error"] for r in records] == [None, "malformed_json", "missing_fields", None]
    assert [r["position"] for r in records] == [0, 1, 3, 4]
    good = [r for r in records if r["error"] is None]
    assert [m["content"] for r in good for m in r["messages"]] == ["头痛怎么办", "多休息。", "What is BP?\nadult",
                                                                  "Blood pressure."]


def test_covid_blocks_are_numbered_the_same_for_both(tmp_path):
    path = tmp_path / "medical_zh/covid_dialogue/COVID-Dialogue-Dataset-Chinese.txt"
    path.parent.mkdir(parents=True)
    path.write_text("\nid=1\nhttps://x\nDescription\n发烧\nDialogue\n病人：\n发烧两天\n医生：\n多喝水\n\n"
                    "id=2\nhttps://y\nDescription\n咳嗽\nDialogue\n病人：\n咳嗽\n", encoding="utf-8")
    items = list(formats.parse_covid_dialogue_txt(path))
    assert [(i.obj["id"], i.obj["block"]) for i in items] == [("1", 1), ("2", 2)]  # the leading blank line is block 0
    assert list(labelled.read_covid_zh(tmp_path))[0] == (
        "covid_zh#0", "Description\n发烧\nDialogue\n病人：\n发烧两天\n医生：\n多喝水")
    records = list(formats.read_covid_dialogue_txt("covid", path))
    assert [r["error"] for r in records] == [None, "no_doctor_reply"]  # an SFT rule; labelled keeps the block
    assert len(list(labelled.read_covid_zh(tmp_path))) == 2
