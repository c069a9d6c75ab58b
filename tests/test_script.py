"""One Han definition: the Python regexes and the Spark (Java) class count the same characters."""

from __future__ import annotations

from pyspark.sql import functions as F

from medcorpus.text import script

# One of each range's ends, then what is not counted: radicals, 〇, 々, a supplementary-plane ideograph,
# kana, hangul, full-width punctuation, Latin.
EDGES = "\u3400\u4dbf\u4e00\u9fff\uf900\ufaff" + "\u2e8f\u2f00\u3007\u3005\U00020000" + "かカ한。，A1"


def test_the_ranges_and_what_is_left_out():
    assert [c for c in EDGES if script.is_han_char(c)] == list("\u3400\u4dbf\u4e00\u9fff\uf900\ufaff")
    assert len(script.HAN.findall(EDGES)) == 6
    assert script.HAN_RUN.findall("abc中文def㐀") == ["中文", "㐀"]
    assert script.NOT_HAN_RUN.sub("", "血压 138/90 mmHg，正常。") == "血压正常"
    assert script.han_share("") == 0.0
    assert script.han_share("中文ab") == 0.5


def test_mostly_han_reads_the_head():
    assert script.mostly_han("中文" * 10 + "a" * 10)
    assert not script.mostly_han("a" * 20 + "中文" * 5)  # 10 of 30: not more than a third
    assert not script.mostly_han("a" * 400 + "中" * 1000)  # Han only after the first 400 characters
    assert not script.mostly_han("")


def test_spark_counts_what_python_counts(spark):
    texts = [EDGES, "高血压患者 takes 阿司匹林 100mg", "", "plain English"]
    df = spark.createDataFrame([(t,) for t in texts], "text string")
    got = [r["n"] for r in df.select(script.han_count(F.col("text")).alias("n")).collect()]
    assert got == [len(script.HAN.findall(t)) for t in texts] == [6, 9, 0, 0]
