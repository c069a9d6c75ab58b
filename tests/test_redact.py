"""The one PII redaction policy (medcorpus.text.pii): every format of issue 20 case 4, the medical numbers
that must stay, the Spark and Python engines agreeing, and a hypothesis fuzz over the Python engine."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medcorpus.text import pii as R
from tests.test_filters import NOT_PII, PII_CASES, luhn_complete

_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id18(first17: str) -> str:
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, _W)) % 11]


ID = id18("11010119900307123")  # 110101 19900307 123 + check digit
CARD19 = luhn_complete("622202123456789012")
FW = str.maketrans("0123456789", "０１２３４５６７８９")

# issue 20 case 4: formats the filter missed
NEW_FORMATS = [
    ("手机138.0013.8005，", "手机<PHONE>，", {"PHONE": 1}),
    ("或拨1380 013 8007。", "或拨<PHONE>。", {"PHONE": 1}),
    (f"身份证 {ID[:6]} {ID[6:14]} {ID[14:]} 已核对", "身份证 <ID_CARD> 已核对", {"ID_CARD": 1}),
    (f"ID {ID[:6]} {ID[6:10]} {ID[10:14]} {ID[14:]}.", "ID <ID_CARD>.", {"ID_CARD": 1}),
    ("旧身份证号110101900307123。", "旧身份证号<ID_CARD>。", {"ID_CARD": 1}),
    (f"卡号{CARD19[:4]} {CARD19[4:8]} {CARD19[8:12]} {CARD19[12:16]} {CARD19[16:]}。", "卡号<BANK_CARD>。",
     {"BANK_CARD": 1}),
    ("座机0755 83881234，总机021-6888-1234。", "座机<LANDLINE>，总机<LANDLINE>。", {"LANDLINE": 2}),
    ("电话" + "13912345678".translate(FW) + "。", "电话<PHONE>。", {"PHONE": 1}),
    ("证件" + ID.translate(FW) + "。", "证件<ID_CARD>。", {"ID_CARD": 1}),
    ("卡" + CARD19.translate(FW) + "。", "卡<BANK_CARD>。", {"BANK_CARD": 1}),
    ("see https://bob:pa55@example.org/x", "see https://<URL_CREDENTIALS>@example.org/x", {"URL_CREDENTIALS": 1}),
]
MORE_NOT_PII = [
    "随访日期2023.10.12，复查2023-10-12，记录于2023/10/12 08:30。",
    "ICD-10 E11.900, J45.901, I10.x00; ICD-9-CM 250.00, 401.9。",
    "WBC 13.5×10^9/L, PLT 150-400, 钾3.5-5.5 mmol/L, 肌酐 88 μmol/L, 比值 1:1000, 0.9%氯化钠 500 mL。",
    "剂量：10 mg/kg q8h，每日总量不超过 4000 mg；体重 65.5 kg，BMI 23.4。",
    "证号" + id18("11010119900307123")[:-1] + ("0" if ID[-1] != "0" else "1") + "（校验位错误）。",
    "旧号110101901307123（月份13，无效）。",
]
CASES = PII_CASES + NEW_FORMATS
UNCHANGED = NOT_PII + MORE_NOT_PII


@pytest.mark.parametrize("text,expected,counts", CASES)
def test_python_engine_redacts_each_format(text, expected, counts):
    assert R.redact_text(text) == (expected, counts)


@pytest.mark.parametrize("text", UNCHANGED)
def test_python_engine_keeps_medical_numbers(text):
    assert R.redact_text(text) == (text, {})


def test_spark_engine_equals_python_engine(spark):
    texts = [t for t, _, _ in CASES] + UNCHANGED + [None, "", "   ", "\u200b\ufeff"]
    df = spark.createDataFrame(list(enumerate(texts)), "i int, text string")
    got = {r["i"]: (r["text"], dict(r["pii_counts"] or {})) for r in R.redact_pii(df).collect()}
    for i, text in enumerate(texts):
        expected = R.redact_text(text)
        assert got[i] == (expected[0], expected[1]), text


def test_columns_and_message_arrays_are_redacted(spark):
    df = spark.createDataFrame(
        [("a", "邮件 a.b@example.org", [("user", "电话13912345678"), ("assistant", "好的")])],
        "id string, title string, messages array<struct<role:string,content:string>>",
    )
    out = R.redact_struct_arrays(R.redact_columns(df, ("title", "absent")), {"messages": ("content",)}).first()
    assert out["title"] == "邮件 <EMAIL>"
    assert [tuple(m) for m in out["messages"]] == [("user", "电话<PHONE>"), ("assistant", "好的")]


def test_json_strings_are_redacted_inside():
    meta = '{"contact": {"tel": "13912345678"}, "n": 3, "tags": ["a@b.org"]}'
    assert R.redact_json_string(meta) == '{"contact": {"tel": "<PHONE>"}, "n": 3, "tags": ["<EMAIL>"]}'
    assert R.redact_json_string("not json 13912345678") == "not json <PHONE>"


def test_unknown_pii_type_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown PII type 'SSN'.*EMAIL"):
        R.Policy(("SSN",))


# ---------------------------------------------------------------------------------------------------
# fuzz: the Python engine never fails, is idempotent, and a planted PII value never survives
# ---------------------------------------------------------------------------------------------------
_NOISE = st.lists(
    st.sampled_from(list("0123456789０１２３ -.:/()（）@+xX患者电话abc\n\t\u200b") + ["<PHONE>", "2023-10-12"]),
    max_size=30,
).map("".join)
_PLANTED = st.sampled_from(["13912345678", "138.0013.8005", "1380 013 8007", ID, CARD19, "021-6888-1234",
                            "zhang.san@example.com", "13912345678".translate(FW)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_fuzz_redaction_never_fails_and_is_idempotent(text):
    once, _ = R.redact_text(text)
    assert isinstance(once, str)
    assert R.redact_text(once)[0] == once


@settings(max_examples=300, deadline=None)
@given(_NOISE, _PLANTED, _NOISE)
def test_fuzz_planted_pii_is_removed_between_separators(before, pii, after):
    text = before + " 联系 " + pii + " 谢谢 " + after
    redacted, counts = R.redact_text(text)
    assert pii not in redacted
    assert sum(counts.values()) >= 1


# ---------------------------------------------------------------------------------------------------
# the necessary conditions (PII_NEEDS) tested before the patterns: a text that fails them holds no match
# ---------------------------------------------------------------------------------------------------
def _matching_types(text: str) -> list[str]:
    import re

    return [t for t, p in R.PII_PATTERNS.items() if re.search(p, text, re.ASCII)]


@pytest.mark.parametrize("text", [t for t, _, _ in CASES] + ["10.0.0.1", "1.1.1.10", "(555) 234-5678", "+1 555 234 5678"])
def test_every_known_format_meets_the_necessary_condition_of_its_type(text):
    import re

    types = _matching_types(text)
    assert types, text  # each case matches some pattern, so the condition below is exercised
    for t in types:
        assert re.search(R.needs_of(t), text), (t, text)


def test_text_without_an_at_sign_or_a_run_of_digits_skips_the_patterns(spark):
    from pyspark.sql import functions as F

    policy = R.Policy()
    texts = ["复查2023年10月12日，血压120/80。", "剂量 10 mg，一日 3 次。", "电话13912345678", "a.b@example.org"]
    df = spark.createDataFrame([(t,) for t in texts], "text string")
    got = [r[0] for r in df.select(F.col("text").rlike(R.any_need_pattern(policy))).collect()]
    assert got == [False, False, True, True]


_PLANTED_MORE = st.sampled_from(["10.0.0.1", "192.168.10.254", "(555) 234-5678", "+1 555 234 5678",
                                 "+86 139 1234 5678", "(０７５５)２３４５６７８９", "https://u:p@h.org"])


@settings(max_examples=400, deadline=None)
@given(_NOISE, st.one_of(_PLANTED, _PLANTED_MORE, _NOISE), _NOISE)
def test_fuzz_every_match_of_a_type_meets_its_necessary_condition(before, middle, after):
    import re

    text = before + middle + after
    for t in _matching_types(text):
        assert re.search(R.needs_of(t), text), (t, text)
