"""Normalization: pure helpers, and the Spark transform on a tiny frame with the odd rows."""

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from medcorpus.core.config import NormalizeConfig
from medcorpus.text.normalize import (
    clean_whitespace,
    guess_language,
    normalize_documents,
    normalize_unicode,
    to_simplified,
)

CFG = NormalizeConfig()


@pytest.mark.parametrize(
    "text,lang",
    [
        ("患者男性，58岁，反复胸闷两年，加重三天。", "zh"),
        ("使用 CT 和 MRI 检查后，医生诊断为脑梗死，给予阿司匹林治疗。", "zh"),
        ("The patient was treated with metformin and advised to exercise regularly.", "en"),
        ("Le patient a été traité avec de la metformine et doit faire de l'exercice.", "other"),
        ("患者の血圧は高いです。", "other"),
        ("12345 67890 !!!", "other"),
    ],
)
def test_guess_language(text, lang):
    assert guess_language(text).lang == lang


def test_nfkc_and_entities():
    assert normalize_unicode("ＡＢＣ１２３&amp;&lt;") == "ABC123&<"


def test_traditional_is_converted_and_simplified_left_alone():
    text, converted = to_simplified("醫生建議患者多喝水，頭痛時服用藥物。", "t2s", 0.02)
    assert converted and text == "医生建议患者多喝水，头痛时服用药物。"
    same, converted = to_simplified("医生建议患者多喝水。", "t2s", 0.02)
    assert (same, converted) == ("医生建议患者多喝水。", False)


def test_clean_whitespace_expression(spark):
    df = spark.createDataFrame(
        [("a\r\nb",), ("x\u200by\u00ad",), ("  many    spaces \t here  ",), ("l1\n\n\n\n\nl2",), ("ctl\x07\x1b!",),
         ("",), (None,)],
        "t string",
    )
    got = [r[0] for r in df.select(clean_whitespace(F.col("t"))).collect()]
    assert got == ["a\nb", "xy", "many spaces here", "l1\n\nl2", "ctl!", "", None]


def test_normalize_documents_frame(spark):
    """The whole output frame: column order and types, pass-through columns, every row (not only spot checks)."""
    cols = ("source", "source_file", "source_format", "url", "title", "meta")
    raw = spark.createDataFrame(
        [("d1", "醫院&nbsp;門診\u200b：頭痛三天。"), ("d2", "The clinic opens at 9 am."), ("d3", " \u200b\u3000 ")],
        "doc_id string, text string",
    ).select("doc_id", *(F.lit(c).alias(c) for c in cols), "text")
    got = normalize_documents(raw, CFG, "r1")
    expected = spark.createDataFrame(
        [
            ("d1", *cols, "医院 门诊:头痛三天。", "zh", True, 11, 7, "r1"),  # 8 Han x 0.7 + 3 other x 0.25 -> 7
            ("d2", *cols, "The clinic opens at 9 am.", "en", False, 25, 7, "r1"),  # 25 x 0.25 -> 7
            ("d3", *cols, "", "other", False, 0, 0, "r1"),
        ],
        "doc_id string, source string, source_file string, source_format string, url string, title string, "
        "meta string, text string, lang string, t2s_converted boolean, char_count long, token_estimate long, "
        "normalize_run_id string",
    )
    assert_df_equality(got.drop("lang_confidence", "text_hash").orderBy("doc_id"), expected, ignore_nullable=True)
    hashes = got.select("text", F.sha2("text", 256).alias("want"), "text_hash").collect()
    assert all(r["text_hash"] == r["want"] for r in hashes)


def test_normalize_documents_columns(spark):
    raw = spark.createDataFrame(
        [
            ("d1", "醫院&nbsp;門診\u200b：頭痛三天。", "zh"),
            ("d2", "The clinic opens at 9 am and the doctor will see you then.", "en"),
            ("d3", " \u200b\u3000 ", "empty"),
        ],
        "doc_id string, text string, expect string",
    ).select("doc_id", "text", *(F.lit("s").alias(c) for c in ("source", "source_file", "source_format", "url", "title", "meta")))
    out = {r["doc_id"]: r for r in normalize_documents(raw, CFG, "r1").collect()}
    assert out["d1"]["text"] == "医院 门诊:头痛三天。"
    assert (out["d1"]["lang"], out["d1"]["t2s_converted"]) == ("zh", True)
    assert out["d1"]["char_count"] == len("医院 门诊:头痛三天。")
    assert out["d1"]["token_estimate"] == 7  # 8 Han x 0.7 = 5.6 + 3 other x 0.25 = 0.75 -> ceil(6.35)
    assert (out["d2"]["lang"], out["d2"]["t2s_converted"]) == ("en", False)
    assert out["d3"]["text"] == ""
    assert len(out["d2"]["text_hash"]) == 64
