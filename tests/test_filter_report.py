"""Beside the run report (issue 21): example documents per filter rule, redacted, and a histogram of each
filter signal against its threshold, in the page and as JSON."""

from __future__ import annotations

import json
import re

from pyspark.sql import functions as F

from medcorpus.text.pii import PII_PATTERNS
from tests.test_filters import BAD, GOOD_EN, GOOD_ZH, _documents

PII_CHECKED = ("EMAIL", "PHONE", "PHONE_EN", "ID_CARD", "URL_CREDENTIALS")


def _leftover_pii(text: str) -> list[str]:
    return [t for t in PII_CHECKED if re.search(PII_PATTERNS[t], text, re.ASCII)]


def test_examples_per_rule_are_redacted_and_histograms_count_every_scored_document(spark, make_config):
    from medcorpus.core.pipeline import RunContext
    from medcorpus.stages import run_stage
    from medcorpus.views.filter_report import filter_examples, signal_histograms
    from medcorpus.views.report import build_report
    from tests.conftest import as_table

    items = {
        "good-zh": GOOD_ZH + "\n联系电话13912345678。", "good-en": GOOD_EN + "\nEmail a.b@example.org today.",
        "short-zh": BAD["too_short"][0], "short-en": BAD["too_short"][1],
        "pii-en": "Call 13912345678 or a.b@example.org",  # too short, with PII
        "casino-en": BAD["gambling"][1], "dup-zh": BAD["dup_lines"][0],
    }
    ctx = RunContext.create(spark, make_config("run_id=fr1"))
    ctx.warehouse.merge_new_rows("documents", _documents(spark, items), stage="normalize")
    report = run_stage(ctx, "filter")
    assert report.removed_by_reason == {"too_short": 3, "gambling": 1, "dup_lines": 1}
    # a removed row written with raw text (as by an older filter): the examples redact it anyway
    raw = spark.createDataFrame([("raw-en", "legacy_rule", "mail x.y@example.com or 13812345678 now")],
                                "doc_id string, rule string, text string")
    ctx.warehouse.merge_new_rows("filtered_out", as_table(raw, "filtered_out"), stage="test")

    page = build_report(ctx, "fr1")
    examples = json.loads((page.parent / "run-fr1.filter_examples.json").read_text(encoding="utf-8"))
    histograms = json.loads((page.parent / "run-fr1.signal_histograms.json").read_text(encoding="utf-8"))

    removed = examples["removed"]
    assert list(removed)[:3] == ["too_short", "dup_lines", "gambling"]  # the rules' checking order
    assert removed["too_short"]["documents"] == 3 and len(removed["too_short"]["examples"]) == 3
    pii = next(e for e in removed["too_short"]["examples"] if e["doc_id"] == "pii-en")
    assert pii["text"] == "Call <PHONE> or <EMAIL>" and pii["threshold"] == f"< {ctx.config.filter.en_min_words}"
    assert [e["doc_id"] for e in removed["legacy_rule"]["examples"]] == ["raw-en"]
    assert removed["legacy_rule"]["examples"][0]["text"] == "mail <EMAIL> or <PHONE> now"
    assert {e["doc_id"] for e in examples["kept"]["examples"]} == {"good-zh", "good-en"}
    texts = [e["text"] for r in removed.values() for e in r["examples"]] + [e["text"] for e in
                                                                            examples["kept"]["examples"]]
    assert all(len(t) <= 300 for t in texts) and any(len(t) == 300 for t in texts)  # the long good docs: cut
    assert [t for t in texts if _leftover_pii(t)] == []
    assert json.loads(json.dumps(filter_examples(ctx, per_rule=3), default=str)) == examples  # deterministic

    scored = 7 + 1  # every document the filter scored, and the hand-written row
    assert histograms["documents"] == scored
    for name, entry in histograms["signals"].items():
        assert sum(entry["counts"]) + entry["missing"] == scored, name
        assert len(entry["counts"]) == histograms["bins"] and len(entry["edges"]) == histograms["bins"] + 1
    length = histograms["signals"]["length"]
    assert [r["rule"] for r in length["rules"]] == ["too_short", "too_long"]
    short = length["rules"][0]["thresholds"]
    assert (short["en"]["op"], short["en"]["value"]) == ("<", ctx.config.filter.en_min_words)
    assert (short["zh"]["op"], short["zh"]["value"]) == ("<", ctx.config.filter.zh_min_chars)
    assert length["missing"] == 1 and length["edges"][0] <= 2.0 + 1e-9  # short-en's 2 words are in range
    assert length["scale"] == "log10(1+x)" and max(length["counts"]) < 7  # up to 3 M chars, yet spread out
    assert histograms["signals"]["digit_ratio"]["scale"] == "linear"
    gambling = histograms["signals"]["gambling_per_1k"]["rules"][0]["thresholds"]["en"]
    assert gambling["op"] == ">=" and gambling["value"] == ctx.config.filter.lexicon_min_per_1k[
        list(ctx.config.filter.lexicon_categories).index("gambling")]
    assert histograms == signal_histograms(ctx)

    html = page.read_text(encoding="utf-8")
    assert 'id="rule-too_short"' in html and "Removed by legacy_rule" in html and "Kept (2 documents)" in html
    assert html.count('<svg class="hist"') == len(histograms["signals"]) and 'stroke="#C44E52"' in html
    assert "13912345678" not in html and "a.b@example.org" not in html and "x.y@example.com" not in html
    assert "<script src" not in html  # offline
    assert ctx.warehouse.read("filtered_out").filter(F.col("doc_id") == "raw-en").count() == 1  # nothing changed
