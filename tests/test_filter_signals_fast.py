"""The filter's signals from one Arrow pass (``rules.score_documents``, :mod:`medcorpus.filters.textsignals`)
equal the Spark-expression definitions (``rules.reference_score_documents``): every code point's character
classes against the JVM's regex classes, edge-case texts, and ~1,500 real documents of ../shared/data."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
from pyspark.sql import functions as F

from medcorpus.core.config import FilterConfig
from medcorpus.filters import rules
from medcorpus.filters import textsignals as ts
from tests.conftest import shared_data_path

_ZH = "高血压是最常见的慢性病之一，也是心脑血管病最主要的危险因素。患者应低盐饮食，每日食盐摄入量不超过5克。"
_EN = "Hypertension is a common condition; ACE inhibitors are often prescribed first. Don't skip doses!"
_LINE = "患者应低盐饮食，每日食盐摄入量不超过5克，并保持规律运动"

EDGE_TEXTS = [
    "", " ", "     ", "\n", "\n\n\n", " \n \n ", "\t", "\r", "\r\n", "\x0b\x0c", "\u3000", "\u00a0\u2003",
    _ZH, _EN, _ZH + "\n" + _EN, _EN + "\r\n" + _EN + "\r\n", _ZH.replace("。", "。\r"), _ZH + "\n\n\n",
    "\n\n" + _ZH + "\n \n\t\n" + _ZH + "\n\n", f"{_LINE}\n{_LINE}\n{_LINE}\n\n{_LINE}\n\n{_LINE}\n",
    f"{_LINE}。\r\n{_LINE}！ \r\n{_LINE}\r \n{_LINE}\u2028\n{_LINE}.\u0085\n{_LINE}.\r\r\n  {_LINE}”  \n",
    "a line.\n\n\nanother line.\n\r\nthird\n \x0c\n" * 3, "Hello.\u2029", "end.\r", "end.\t",
    "😀😀 emoji 🏥💊 text 👨‍⚕️!\n" * 4, "Ã© Ã¨ â€™ â€œ cafÃ© Ã\x80 Â©", "锟斤拷锟斤拷烫烫烫烫屯屯屯屯屯屯 \ufffd\ufffd",
    "\ue000\ue123\U000f0001\U0010fffd private", "０１２３４５６７８９ full-width", "٠١٢٣٤٥٦٧٨٩ ۰۱۲ Arabic-Indic",
    "高血压 hypertension 患者 patients' doctor’s 'quoted' ’’x y’’ 1,000mg 5'", "...!!!???,,,;;;:::---",
    "★■◆▲#@*|" * 20, "###\n***\n|||\n", "it's o'clock ''' ’ ' a'b'c ''d", "ŉǅⅫ㉑½ Ⅻ ¹²³",
    "Tangsa \U00016ac0\U00016ac1 and U+9FFD \u9ffd\u9ffe, Kannada \u0cdd", "x\u0300\u0301 e\u0301 combining",
    "\x00\x01 control \x7f \x85 chars", "Ÿ\u00ff\u00bf\u00c0\u0080\u00ff\u00bf", "a" * 300,
    ("问：高血压怎么办？\n答：" + _ZH + "\n") * 3, "医生：" + _ZH + "\n患者：好的。\n医生：" + _ZH + "\n" + _ZH,
    "\n".join([_LINE[:12]] * 8 + [_LINE] * 3), "\n\n".join([_ZH] * 4), (_EN + "\n") * 5 + "Thanks.",
]
LANGS = ["en", "zh", "other", None]


def _signals(spark, rows: list[tuple[str, str | None, str | None]], cfg: FilterConfig) -> tuple[dict, dict]:
    df = spark.createDataFrame(rows, "doc_id string, text string, lang string").repartition(2)
    fast = {r["doc_id"]: dict(r["signals"]) for r in rules.score_documents(df, cfg).select("doc_id", "signals").collect()}
    ref = {r["doc_id"]: dict(r["signals"])
           for r in rules.reference_score_documents(df, cfg).select("doc_id", "signals").collect()}
    return fast, ref


def _differences(fast: dict, ref: dict) -> list[tuple[str, str, object, object]]:
    assert fast.keys() == ref.keys()
    return [(d, k, fast[d].get(k), v) for d in ref for k, v in ref[d].items() if fast[d].get(k) != v]


def test_class_table_equals_the_jvm_regex_classes_on_every_code_point(spark):
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    chunks = [(i, "".join(map(chr, cps[i : i + 65536]))) for i in range(0, len(cps), 65536)]
    classes = {ts.SPECIAL: rules.SPECIAL_CHAR, ts.DIGIT: r"\p{Nd}", ts.WORD: r"[\p{L}\p{N}]",
               ts.MOJI_CHAR: r"\x{FFFD}|\p{Co}", ts.SPACE: r"\s"}
    # matching characters -> U+0001, the others -> U+0002 (U+0001/U+0002 themselves are checked below)
    marked = [F.regexp_replace(F.regexp_replace("t", F.lit(f"(?s)(?:{p})"), F.lit("\u0001")),
                               F.lit("[^\u0001]"), F.lit("\u0002")).alias(str(bit)) for bit, p in classes.items()]
    rows = sorted(spark.createDataFrame(chunks, "i int, t string").select("i", *marked).collect())
    table = ts.class_table(rules.ORDINARY_PUNCT)[np.array(cps)]
    for bit, pattern in classes.items():
        java = np.array([c == "\u0001" for r in rows for c in r[str(bit)]])
        assert len(java) == len(cps)
        java[:3] = [False, False, False]  # U+0000-U+0002 are controls: in no class but SPECIAL
        if bit == ts.SPECIAL:
            java[:3] = True
        differ = np.array(cps)[java != ((table & bit) != 0)]
        assert differ.size == 0, (pattern, [hex(c) for c in differ[:20]])
    assert ts.java_class_chars(r"a\-\x{2010}-\x{2012}\]") == set("a-\u2010\u2011\u2012]")


@pytest.mark.parametrize("cfg", [FilterConfig(), FilterConfig(min_dup_unit_chars=0, max_quote_frac=0.0)])
def test_fast_signals_equal_the_reference_on_edge_cases(spark, cfg):
    rows = [(f"e{i}-{lang}", text, lang) for i, text in enumerate(EDGE_TEXTS) for lang in LANGS]
    rows += [("null-en", None, "en"), ("null-zh", None, "zh")]
    fast, ref = _signals(spark, rows, cfg)
    assert _differences(fast, ref) == []
    # the cases exercise what they are meant to: mojibake, digits, lines, Java's $ before a final \r, words
    def at(text: str, lang: str = "zh") -> dict:
        return ref[f"e{EDGE_TEXTS.index(text)}-{lang}"]

    assert at("Ã© Ã¨ â€™ â€œ cafÃ© Ã\x80 Â©")["mojibake_ratio"] == pytest.approx(7 / 19, abs=1e-6)
    assert at("锟斤拷锟斤拷烫烫烫烫屯屯屯屯屯屯 \ufffd\ufffd")["mojibake_ratio"] == pytest.approx(7 / 18, abs=1e-6)
    assert at("０１２３４５６７８９ full-width")["digit_ratio"] == pytest.approx(0.5, abs=1e-6)
    assert at(f"{_LINE}\n{_LINE}\n{_LINE}\n\n{_LINE}\n\n{_LINE}\n")["n_lines"] == 5
    assert at(EDGE_TEXTS[20])["end_punct_frac"] == pytest.approx(3 / 7, abs=1e-6)
    assert at("it's o'clock ''' ’ ' a'b'c ''d", "en")["length"] == 4
    assert at(EDGE_TEXTS[-4])["dup_line_frac"] > 0 and ref["null-en"]["length"] is None


def _real_rows(per_source: int = 64, head: int = 2000) -> list[tuple[str, str, str]]:
    """About 1,500 real documents: ``per_source`` of the first ``head`` records of every labelled source, by
    a stable hash, with the language normalize would give them."""
    from medcorpus.classify.labelled import SOURCES, stable_hash
    from medcorpus.text.normalize import guess_language

    root = shared_data_path()
    rows = []
    for spec in SOURCES:
        found = [(stable_hash("signals", spec.name, str(i)), text)
                 for i, (_, text) in enumerate(islice(spec.reader(root), head)) if text and text.strip()]
        rows += [(f"{spec.name}-{h}", text, guess_language(text).lang) for h, text in sorted(found)[:per_source]]
    return rows


@pytest.mark.shared_data
def test_fast_signals_equal_the_reference_on_real_documents(spark):
    rows = _real_rows()
    assert len(rows) >= 1400 and {lang for _, _, lang in rows} >= {"en", "zh"}
    fast, ref = _signals(spark, rows, FilterConfig())
    assert _differences(fast, ref) == []
    # real documents reach the signals that need lines, quotes and repeated lines
    assert sum(s["n_lines"] >= 3 for s in ref.values()) > 300
    assert sum(s["dup_line_frac"] > 0 for s in ref.values()) > 10
    assert sum(s["quote_frac"] > 0 for s in ref.values()) > 10
