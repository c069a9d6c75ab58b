"""Language id and Traditional->Simplified conversion measured on the real datasets in ../shared/data.

Run with ``-s`` to see the figures quoted in the issue notes.
"""

import csv
import glob
import json
import random

import pytest

from medcorpus.text.normalize import guess_language, to_simplified
from tests.conftest import shared_data_path

pytestmark = pytest.mark.shared_data


def _labelled_samples(n_per_source: int = 150) -> list[tuple[str, str, str]]:
    rng = random.Random(0)
    out: list[tuple[str, str, str]] = []

    huatuo = shared_data_path("medical_zh", "huatuo", "llama_data.json")
    rows = [json.loads(line) for line in huatuo.read_text(encoding="utf-8").splitlines() if line.strip()]
    out += [("huatuo", "zh", r["instruction"] + r["output"]) for r in rng.sample(rows, n_per_source)]

    reviews = shared_data_path("general_zh", "reviews", "hotel_reviews.csv")
    with reviews.open(encoding="utf-8") as f:
        rev = [r["review"] for r in csv.DictReader(f) if r.get("review")]
    out += [("hotel_reviews", "zh", t) for t in rng.sample(rev, n_per_source)]

    laws = sorted(glob.glob(str(shared_data_path("general_zh", "laws") / "*" / "*.md")))
    out += [("laws", "zh", open(p, encoding="utf-8").read()[:3000]) for p in rng.sample(laws, min(n_per_source, len(laws)))]

    pqal = json.loads(shared_data_path("medical_en", "pubmedqa", "ori_pqal.json").read_text())
    out += [("pubmedqa", "en", v["QUESTION"] + " " + " ".join(v["CONTEXTS"]))
            for v in rng.sample(list(pqal.values()), n_per_source)]

    medquad = sorted(glob.glob(str(shared_data_path("medical_en", "medquad") / "*" / "*.xml")))
    texts = []
    import xml.etree.ElementTree as ET

    for p in rng.sample(medquad, n_per_source * 2):
        try:
            ans = " ".join((a.text or "") for a in ET.parse(p).getroot().iter("Answer"))
        except ET.ParseError:
            continue
        if ans.strip():
            texts.append(ans[:3000])
    out += [("medquad", "en", t) for t in texts[:n_per_source]]

    tang = sorted(glob.glob(str(shared_data_path("general_zh", "classical") / "全唐诗" / "poet.tang.*.json")))
    poems = json.loads(open(tang[0], encoding="utf-8").read())
    out += [("tang_poems_traditional", "zh", "".join(p["paragraphs"])) for p in rng.sample(poems, n_per_source)]
    return out


def test_language_id_accuracy_on_real_sources():
    samples = _labelled_samples()
    per_source: dict[str, list[bool]] = {}
    for source, lang, text in samples:
        per_source.setdefault(source, []).append(guess_language(text).lang == lang)
    total = sum(sum(v) for v in per_source.values()) / sum(len(v) for v in per_source.values())
    print("\nlanguage id accuracy:", f"{total:.4f}", {k: round(sum(v) / len(v), 4) for k, v in per_source.items()})
    assert total >= 0.98
    assert all(sum(v) / len(v) >= 0.95 for v in per_source.values())


def test_traditional_to_simplified_against_cmmlu_gold():
    """cmmlu_traditional/test is row-aligned with cmmlu/test: convert and compare character by character."""
    trad_dir = shared_data_path("benchmarks", "cmmlu_traditional", "test")
    simp_dir = shared_data_path("benchmarks", "cmmlu", "test")
    chars = same = exact = rows = flagged = 0
    for path in sorted(trad_dir.glob("*.csv"))[:20]:
        with path.open(encoding="utf-8") as ft, (simp_dir / path.name).open(encoding="utf-8") as fs:
            for t_row, s_row in zip(csv.DictReader(ft), csv.DictReader(fs)):
                t, s = t_row["Question"], s_row["Question"]
                got, converted = to_simplified(t, "t2s", 0.02)
                if t != s:
                    flagged += converted
                rows += 1
                exact += got == s
                if len(got) == len(s):
                    chars += len(s)
                    same += sum(a == b for a, b in zip(got, s))
    char_acc, row_acc = same / chars, exact / rows
    print(f"\nT->S on {rows} CMMLU questions: char accuracy {char_acc:.4f}, exact rows {row_acc:.4f}")
    assert char_acc >= 0.99
    assert row_acc >= 0.85
