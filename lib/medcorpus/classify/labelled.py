"""Labelled data for the default classifier and quality rater.

Two builders return plain rows (``LabelledRow``); the stage runner writes them to the Delta table
``labelled_documents`` or trains on them directly:

* :func:`build_from_shared_data` turns the real sources in ``../shared/data`` into labelled rows: the domain
  label comes from the source (medical vs general, see its README), the sub-domain where the source implies
  one (``tcm_books`` -> tcm, MedQuAD ``MPlusDrugs`` -> pharmacy, MedlinePlus health topics and CDC ->
  consumer_health, consultations and biomedical QA -> clinical). The split keeps validation honest: whole
  sources listed in ``holdout_sources`` and a share of the *files* (books, XML files, law files, chapters)
  of multi-file sources go to validation, so validation rows come from files training never saw.
* :func:`build_seed` is a small seed written for this project (from the demo corpus vocabularies and a few
  extra templates), used when the real data is absent.

Quality labels are proxies (the issue allows them; a user with LLM annotations trains on those instead):
a prior per source (edited references and books high, reviews and chit-chat lower) adjusted by rule signals
(length, repeated lines, symbols, spam cues), plus synthetic low-quality twins made from real rows
(repeated sentence, shuffled words, advertising injected) and boilerplate written here — scored 0-1.

Everything here is deterministic: caps and splits use stable hashes, never a random generator seeded by time.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import logging
import random
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from medcorpus.classify.textmodel import GENERAL, MEDICAL, dense_signals
from medcorpus.core.config import NormalizeConfig
from medcorpus.readers import formats
from medcorpus.text.normalize import normalize_one
from medcorpus.text.script import mostly_han

log = logging.getLogger(__name__)

BUILDER_VERSION = "labelled-v2"


@dataclass(frozen=True)
class LabelledRow:
    text: str
    label: str  # medical | general
    subdomain: str | None
    score: float  # proxy quality 0..5
    source: str
    group: str  # the file (or block) the row came from: the split unit
    split: str  # train | validation
    synthetic: bool = False


@dataclass(frozen=True)
class BuildParams:
    train_cap: int = 1200
    validation_cap: int = 400
    validation_percent: int = 20
    holdout_sources: tuple[str, ...] = ()
    chunk_chars: int = 1200
    synthetic_percent: int = 10
    salt: str = "medcorpus"


def stable_hash(*parts: str) -> int:
    return int(hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:12], 16)


# ---------------------------------------------------------------------------------------------------
# proxy quality
# ---------------------------------------------------------------------------------------------------
def proxy_quality(text: str, prior: float) -> float:
    """Source prior adjusted by rule signals; 0..5, rounded to a tenth."""
    (log_chars, _han, _uniq, dup_lines, compress, symbols, _digits, spam, short) = dense_signals(text)
    score = prior
    score -= 1.5 * short
    score -= 0.8 if log_chars < 0.55 else 0.0  # under ~100 characters
    score -= 2.0 * max(0.0, dup_lines - 0.2)
    score -= 2.0 * max(0.0, 0.25 - compress) * 4
    score -= 1.5 * symbols
    score -= 2.0 * spam
    return round(min(5.0, max(0.0, score)), 1)


_AD_LINES = [
    "限时特价！点击链接立即抢购，加微信领取优惠券，全场包邮！！",
    "扫码关注公众号，免费领取价值999元的健康大礼包，名额有限！",
    "代理招募中，月入过万不是梦，详情私聊，加v咨询。",
    "CLICK HERE to claim your FREE gift!!! Limited offer, buy now, free shipping $$$",
    "Best price guaranteed!!! Subscribe today and get 70% discount, click here now!!!",
]
_BOILERPLATE = [
    "首页 | 新闻中心 | 产品展示 | 关于我们 | 联系我们\n版权所有 © 2024 保留所有权利\n网站地图 | 隐私政策 | 免责声明\n"
    "首页 | 新闻中心 | 产品展示 | 关于我们 | 联系我们",
    "上一篇：暂无 下一篇：暂无\n分享到：微博 微信 QQ空间\n相关推荐 热门文章 最新评论\n返回顶部",
    "Home | About us | Products | News | Contact\nCopyright 2024. All rights reserved.\nPrivacy policy | Terms of use "
    "| Cookie settings\nWe use cookies to improve your experience. Accept all cookies?",
    "Sign in | Register | Forgot password?\nShare on Facebook Share on Twitter Share by email\nRelated posts\n"
    "Previous post Next post\nBack to top",
]


def synthetic_twins(row: LabelledRow, rng: random.Random) -> list[LabelledRow]:
    """One low-quality twin of a real row: repeated sentence, shuffled words or injected advertising."""
    text = row.text
    sentences = [s for s in re.split(r"(?<=[。！？.!?])\s*", text) if len(s) > 4] or [text[:80]]
    kind = rng.randrange(3)
    if kind == 0:
        twin, score = (rng.choice(sentences) + " ") * rng.randint(6, 15), 0.5
    elif kind == 1:
        units = list(text[:600]) if mostly_han(text) else text[:1500].split()
        rng.shuffle(units)
        twin, score = ("" if mostly_han(text) else " ").join(units), 1.0
    else:
        parts = sentences[:6]
        mixed = []
        for s in parts:
            mixed += [s, rng.choice(_AD_LINES)]
        twin, score = "\n".join(mixed), 1.0
    return [LabelledRow(twin, row.label, row.subdomain, score, row.source, row.group, row.split, True)]


def boilerplate_rows() -> list[LabelledRow]:
    """The hand-written boilerplate and ad rows, every fourth one held out for validation.

    Each text lands in exactly one split, so validation never scores a text that training saw."""
    def split(i: int) -> str:
        return "validation" if i % 4 == 3 else "train"

    rows = [LabelledRow(t, GENERAL, None, 0.5, "boilerplate", f"boilerplate-{i}", split(i), True)
            for i, t in enumerate(_BOILERPLATE)]
    rows += [LabelledRow(t, GENERAL, None, 0.3, "ads", f"ads-{i}", split(i), True) for i, t in enumerate(_AD_LINES)]
    return rows


# ---------------------------------------------------------------------------------------------------
# readers: each yields (group, text) for one source
# ---------------------------------------------------------------------------------------------------
Reader = Callable[[Path], Iterator[tuple[str, str]]]


def _chunks(text: str, size: int) -> Iterator[str]:
    """Paragraph-aligned chunks of about ``size`` characters (long books become many documents)."""
    buf: list[str] = []
    n = 0
    for para in re.split(r"\n\s*\n|\r?\n", text):
        para = para.strip()
        if not para:
            continue
        buf.append(para)
        n += len(para)
        if n >= size:
            yield "\n".join(buf)
            buf, n = [], 0
    if n >= size // 4:
        yield "\n".join(buf)


def _read(path: Path, encoding: str = "utf-8") -> str:
    return path.read_bytes().decode(encoding, errors="replace")


# The dataset formats shared with the SFT import are read by their one parser in medcorpus.readers.formats;
# an item the parser cannot read is skipped here, counted per source and reason and logged (the SFT import
# quarantines the same items).
SKIPPED: Counter[tuple[str, str]] = Counter()


def _readable(source: str, items: Iterable[formats.Item]) -> Iterator[formats.Item]:
    """The items that parsed; the others are counted in :data:`SKIPPED` and logged once per source."""
    bad: Counter[str] = Counter()
    for item in items:
        if item.error:
            bad[item.error] += 1
            continue
        yield item
    for reason, n in sorted(bad.items()):
        SKIPPED[(source, reason)] += n
    if bad:
        log.warning("labelled %s: skipped %d unreadable records (%s)", source, sum(bad.values()),
                    ", ".join(f"{r}: {n}" for r, n in sorted(bad.items())))


def read_toyhom(root: Path) -> Iterator[tuple[str, str]]:
    path = root / "medical_zh/toyhom_dialogue/im_sample_5000-6000.gb18030.csv"
    for item in _readable("toyhom_dialogue", formats.parse_toyhom_csv(path)):
        r = item.obj
        yield f"toyhom#{item.position // 200}", f"{r.get('title') or ''}\n{r.get('ask') or ''}\n{r.get('answer') or ''}"


def read_huatuo(root: Path) -> Iterator[tuple[str, str]]:
    for item in _readable("huatuo", formats.parse_alpaca_jsonl(root / "medical_zh/huatuo/llama_data.json")):
        r = item.obj
        yield f"huatuo#{item.position // 200}", f"{r.get('instruction', '')}\n{r.get('input', '')}\n{r.get('output', '')}"


def read_tcm_books(root: Path) -> Iterator[tuple[str, str]]:
    for path in sorted((root / "medical_zh/tcm_books").glob("*.txt")):
        for chunk in _chunks(_read(path, "gb18030"), 1200):
            yield path.name, chunk


def read_cmtmedqa(root: Path) -> Iterator[tuple[str, str]]:
    for item in _readable("cmtmedqa", formats.parse_cmtmedqa_json(root / "medical_zh/cmtmedqa/CMtMedQA_test.json")):
        r = item.obj
        turns = [t for pair in r.get("history") or [] for t in pair] + [r.get("instruction", ""), r.get("output", "")]
        yield f"cmtmedqa#{item.position // 100}", "\n".join(t for t in turns if t)


def _dialogue_blocks(source: str, path: Path) -> Iterator[tuple[int, str]]:
    """(block number, the block's non-empty lines without the URL line)."""
    for item in _readable(source, formats.parse_covid_dialogue_txt(path)):
        lines = item.obj["body"].splitlines()
        body = "\n".join(ln for ln in lines if ln.strip() and not ln.startswith(("id=", "http")))
        if body.strip():
            yield item.obj["block"], body


def read_covid_zh(root: Path) -> Iterator[tuple[str, str]]:
    path = root / "medical_zh/covid_dialogue/COVID-Dialogue-Dataset-Chinese.txt"
    for i, body in _dialogue_blocks("covid_dialogue_zh", path):
        yield f"covid_zh#{i // 100}", body


def read_covid_en(root: Path) -> Iterator[tuple[str, str]]:
    path = root / "medical_en/covid_dialogue/COVID-Dialogue-Dataset-English.txt"
    for i, body in _dialogue_blocks("covid_dialogue_en", path):
        yield f"covid_en#{i // 100}", body


def read_medicalgpt(root: Path) -> Iterator[tuple[str, str]]:
    path = root / "medical_zh/medicalgpt/medical_sft_1K_format.jsonl"
    for item in _readable("medicalgpt", formats.parse_sharegpt_jsonl(path)):
        conv = item.obj["conversations"]
        yield f"medicalgpt_sft#{item.position // 100}", "\n".join(str(t.get("value", "")) for t in conv)
    for chunk in _chunks(_read(root / "medical_zh/medicalgpt/fever.txt"), 1200):
        yield "fever.txt", chunk


MEDQUAD_SUBDOMAIN = {"MPlusDrugs": "pharmacy", "MPlus_Health_Topics": "consumer_health", "CDC": "consumer_health"}


def medquad_collection(group: str) -> str:
    """``11_MPlusDrugs_QA/0000001_1.xml`` -> ``MPlusDrugs``."""
    return group.split("/", 1)[0].split("_", 1)[1].removesuffix("_QA")


def read_medquad(root: Path) -> Iterator[tuple[str, str]]:
    for item in _readable("medquad", formats.parse_medquad_xml(root / "medical_en/medquad")):
        path, doc = item.obj
        parts = [doc.findtext("Focus") or ""]
        for pair in doc.iter("QAPair"):
            parts += [pair.findtext("Question") or "", (pair.findtext("Answer") or "").strip()]
        text = "\n".join(p.strip() for p in parts if p and p.strip())
        if text:
            yield f"{path.parent.name}/{path.name}", text


def read_pubmedqa(root: Path) -> Iterator[tuple[str, str]]:
    for item in _readable("pubmedqa", formats.parse_pubmedqa_json(root / "medical_en/pubmedqa/ori_pqal.json")):
        _pmid, r = item.obj
        yield f"pubmedqa#{item.position // 100}", "\n".join([r["QUESTION"], *r["CONTEXTS"], r.get("LONG_ANSWER", "")])


def read_msra(root: Path) -> Iterator[tuple[str, str]]:
    with zipfile.ZipFile(root / "general_zh/news_msra/dh_msra.zip") as z:
        raw = z.read(z.namelist()[0]).decode("utf-8", errors="replace")
    sentences, buf = [], []
    for line in raw.splitlines():
        if line.strip():
            buf.append(line.split("\t", 1)[0])
        elif buf:
            sentences.append("".join(buf))
            buf = []
    for i in range(0, len(sentences), 8):
        yield f"msra#{i // 800}", "".join(sentences[i: i + 8])


def read_hotel(root: Path) -> Iterator[tuple[str, str]]:
    with (root / "general_zh/reviews/hotel_reviews.csv").open(encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f)):
            yield f"hotel#{i // 400}", r.get("review") or ""


def read_shopping(root: Path) -> Iterator[tuple[str, str]]:
    with zipfile.ZipFile(root / "general_zh/reviews/online_shopping_10_cats.zip") as z:
        raw = z.read(z.namelist()[0]).decode("utf-8-sig", errors="replace")
    for r in csv.DictReader(io.StringIO(raw)):
        yield f"shopping/{r.get('cat')}", (r.get("review") or "").lstrip("\ufeff")


def read_tang(root: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(glob.glob(str(root / "general_zh/classical/全唐诗/poet.tang.*.json"))):
        poems = json.loads(Path(path).read_text(encoding="utf-8"))
        for i in range(0, len(poems), 4):
            yield Path(path).name, "\n".join(f"{p.get('title', '')}\n{''.join(p.get('paragraphs', []))}"
                                             for p in poems[i: i + 4])


def read_confucian(root: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(glob.glob(str(root / "general_zh/classical/四书五经/*.json")) +
                       glob.glob(str(root / "general_zh/classical/论语/*.json"))):
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        for ch in data if isinstance(data, list) else [data]:
            yield Path(path).name, f"{ch.get('chapter', '')}\n" + "\n".join(ch.get("paragraphs", []))


def read_niutrans(root: Path) -> Iterator[tuple[str, str]]:
    base = root / "general_zh/niutrans"
    for path in sorted(base.glob("双语数据/**/target.txt")) + sorted(base.glob("古文原文/**/text.txt")):
        book = path.relative_to(base).parts[1]
        for chunk in _chunks(_read(path), 1200):
            yield book, chunk


def read_laws(root: Path) -> Iterator[tuple[str, str]]:
    for path in sorted((root / "general_zh/laws").glob("*/*.md")):
        text = _read(path).split("<!-- INFO END -->", 1)[-1]
        for chunk in _chunks(text, 1200):
            yield f"{path.parent.name}/{path.name}", chunk


def read_kdconv(root: Path) -> Iterator[tuple[str, str]]:
    for path in sorted((root / "general_zh/kdconv").glob("*/*.json")):
        for d in json.loads(path.read_text(encoding="utf-8")):
            yield f"{path.parent.name}/{path.name}", "\n".join(m.get("message", "") for m in d.get("messages", []))


def read_thucnews(root: Path) -> Iterator[tuple[str, str]]:
    lines = _read(root / "general_zh/thucnews/dev_titles.txt").splitlines()
    for i in range(0, len(lines), 5):  # five headlines make one short "news digest" document
        titles = [ln.split("\t", 1)[0] for ln in lines[i: i + 5] if ln.strip()]
        yield f"thucnews#{i // 500}", "\n".join(titles)


def read_dpo(root: Path) -> Iterator[tuple[str, str]]:
    for i, line in enumerate(_read(root / "general_zh/preference_examples/dpo_zh_500.jsonl").splitlines()):
        if line.strip():
            r = json.loads(line)
            prompt = "\n".join(str(c.get("value", "")) for c in r.get("conversations") or [])
            yield f"dpo#{i // 100}", f"{prompt}\n{r.get('chosen', '')}"


# CMMLU subjects that are medicine (the medical pool of the benchmark) and subjects too close to call either way
# (left out of both labels). Every other subject — chemistry, biology, agronomy, engineering, law, economics... —
# is a general hard negative: academic Chinese that is not medical text.
CMMLU_MEDICAL = frozenset({"anatomy", "clinical_knowledge", "college_medicine", "college_medical_statistics",
                           "professional_medicine", "traditional_chinese_medicine", "virology", "nutrition"})
CMMLU_UNDECIDED = frozenset({"genetics", "human_sexuality", "professional_psychology"})


def _cmmlu_documents(path: Path, per_doc: int = 5) -> Iterator[str]:
    """Five consecutive questions, each with its four options, make one exam-sheet document."""
    with path.open(encoding="utf-8", newline="") as fh:
        items = [r for r in csv.DictReader(fh) if r.get("Question")]
    for i in range(0, len(items), per_doc):
        yield "\n".join(f"{r['Question']}\nA. {r.get('A', '')}\nB. {r.get('B', '')}\nC. {r.get('C', '')}\n"
                        f"D. {r.get('D', '')}" for r in items[i: i + per_doc])


def _cmmlu_reader(medical: bool) -> Reader:
    def reader(root: Path) -> Iterator[tuple[str, str]]:
        for path in sorted((root / "benchmarks/cmmlu/test").glob("*.csv")):
            subject = path.stem
            if subject in CMMLU_UNDECIDED or (subject in CMMLU_MEDICAL) != medical:
                continue
            for doc in _cmmlu_documents(path):
                yield subject, doc

    return reader


_BROWN_TAG = re.compile(r"/[^\s]+")


def _nltk_files(root: Path, name: str) -> Iterator[tuple[str, str]]:
    with zipfile.ZipFile(root / f"general_en/nltk/{name}.zip") as z:
        for member in sorted(z.namelist()):
            base = member.rsplit("/", 1)[-1]
            if member.endswith("/") or base.upper().startswith("README") or base in {"cats.txt", "CONTENTS"}:
                continue
            yield member, z.read(member).decode("utf-8", errors="replace")


def read_brown(root: Path) -> Iterator[tuple[str, str]]:
    for member, text in _nltk_files(root, "brown"):
        plain = _BROWN_TAG.sub("", text)
        plain = re.sub(r"\s+([,.;:?!'])", r"\1", re.sub(r"``|''", '"', plain))
        for chunk in _chunks(plain, 1200):
            yield member, chunk


def _plain_nltk(name: str) -> Reader:
    def reader(root: Path) -> Iterator[tuple[str, str]]:
        for member, text in _nltk_files(root, name):
            for chunk in _chunks(text, 1200):
                yield member, chunk

    return reader


@dataclass(frozen=True)
class SourceSpec:
    name: str
    label: str
    subdomain: str | None
    prior: float  # proxy quality prior 0..5
    reader: Reader
    subdomain_of: Callable[[str], str | None] | None = None


SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec("toyhom_dialogue", MEDICAL, "clinical", 3.0, read_toyhom),
    SourceSpec("huatuo", MEDICAL, "clinical", 3.5, read_huatuo),
    SourceSpec("tcm_books", MEDICAL, "tcm", 4.0, read_tcm_books),
    SourceSpec("cmtmedqa", MEDICAL, "clinical", 3.5, read_cmtmedqa),
    SourceSpec("covid_dialogue_zh", MEDICAL, "clinical", 3.0, read_covid_zh),
    SourceSpec("medicalgpt", MEDICAL, "clinical", 3.5, read_medicalgpt),
    SourceSpec("medquad", MEDICAL, "clinical", 4.5, read_medquad,
               lambda g: MEDQUAD_SUBDOMAIN.get(medquad_collection(g), "clinical")),
    SourceSpec("pubmedqa", MEDICAL, "clinical", 4.5, read_pubmedqa),
    SourceSpec("covid_dialogue_en", MEDICAL, "clinical", 3.0, read_covid_en),
    SourceSpec("cmmlu_medical", MEDICAL, None, 3.0, _cmmlu_reader(True)),
    SourceSpec("news_msra", GENERAL, None, 3.5, read_msra),
    SourceSpec("hotel_reviews", GENERAL, None, 2.0, read_hotel),
    SourceSpec("online_shopping", GENERAL, None, 1.5, read_shopping),
    SourceSpec("tang_poems", GENERAL, None, 3.0, read_tang),
    SourceSpec("confucian_classics", GENERAL, None, 3.5, read_confucian),
    SourceSpec("niutrans", GENERAL, None, 3.5, read_niutrans),
    SourceSpec("laws", GENERAL, None, 4.0, read_laws),
    SourceSpec("kdconv", GENERAL, None, 3.0, read_kdconv),
    SourceSpec("thucnews", GENERAL, None, 2.5, read_thucnews),
    SourceSpec("dpo_zh", GENERAL, None, 3.0, read_dpo),
    SourceSpec("cmmlu_general", GENERAL, None, 3.0, _cmmlu_reader(False)),
    SourceSpec("brown", GENERAL, None, 3.5, read_brown),
    SourceSpec("nltk_abc", GENERAL, None, 3.5, _plain_nltk("abc")),
    SourceSpec("nltk_webtext", GENERAL, None, 2.0, _plain_nltk("webtext")),
    SourceSpec("nltk_inaugural", GENERAL, None, 4.0, _plain_nltk("inaugural")),
    SourceSpec("nltk_state_union", GENERAL, None, 4.0, _plain_nltk("state_union")),
)


def source_names() -> list[str]:
    return [s.name for s in SOURCES]


def _split_of(spec: SourceSpec, group: str, params: BuildParams) -> str:
    if spec.name in params.holdout_sources:
        return "validation"
    return "validation" if stable_hash(params.salt, spec.name, group) % 100 < params.validation_percent else "train"


def rows_of_source(spec: SourceSpec, root: Path, params: BuildParams, normalize_cfg: NormalizeConfig) -> list[LabelledRow]:
    """Read one source, split by group, keep at most the cap per split (by stable hash order), normalise."""
    candidates: dict[str, list[tuple[int, str, str]]] = {"train": [], "validation": []}
    for i, (group, text) in enumerate(spec.reader(root)):
        if not text or not text.strip():
            continue
        split = _split_of(spec, group, params)
        candidates[split].append((stable_hash(params.salt, spec.name, str(i)), group, text))
    rows: list[LabelledRow] = []
    for split, cap in (("train", params.train_cap), ("validation", params.validation_cap)):
        for _, group, text in sorted(candidates[split])[:cap]:
            norm, _lang, _conf, _t2s = normalize_one(text, normalize_cfg)
            norm = re.sub(r"[ \t]+", " ", (norm or "").replace("\r", "")).strip()
            if not norm:
                continue
            sub = spec.subdomain_of(group) if spec.subdomain_of else spec.subdomain
            rows.append(LabelledRow(norm, spec.label, sub, proxy_quality(norm, spec.prior), spec.name, group, split))
    return rows


def with_synthetic(rows: list[LabelledRow], params: BuildParams) -> list[LabelledRow]:
    """Add low-quality twins for ``synthetic_percent`` of the rows, and the boilerplate rows, per split."""
    out = list(rows)
    for row in rows:
        h = stable_hash(params.salt, "twin", row.source, row.text[:200])
        if h % 100 < params.synthetic_percent:
            out += synthetic_twins(row, random.Random(h))
    out += boilerplate_rows()
    return out


def build_from_shared_data(root: Path, params: BuildParams, normalize_cfg: NormalizeConfig,
                           sources: Iterable[str] | None = None) -> list[LabelledRow]:
    wanted = set(sources) if sources is not None else None
    rows: list[LabelledRow] = []
    for spec in SOURCES:
        if wanted is not None and spec.name not in wanted:
            continue
        rows += rows_of_source(spec, root, params, normalize_cfg)
    return with_synthetic(rows, params)


# ---------------------------------------------------------------------------------------------------
# the shipped seed (no real data needed)
# ---------------------------------------------------------------------------------------------------
_PHARMACY_EN = [
    "{M}: dosage and administration. Take {M} exactly as prescribed. Common side effects include nausea and "
    "dizziness. Do not combine it with other medicines without asking your pharmacist; tell your doctor if you "
    "are pregnant. Store the tablets at room temperature away from moisture.",
    "Drug interactions with {M}: some antibiotics and antifungals raise its blood level. A missed dose should be "
    "taken as soon as you remember unless the next dose is due. Overdose symptoms need emergency care.",
]
_PHARMACY_ZH = [
    "【药品名称】{M}片。【适应症】用于{D}。【用法用量】口服，一次一片，一日两次，或遵医嘱。【不良反应】偶见恶心、"
    "头晕、皮疹。【禁忌】对本品过敏者禁用。【注意事项】孕妇及哺乳期妇女慎用。【贮藏】密封，置阴凉干燥处。",
    "药师提醒：服用{M}期间应避免饮酒，不要与其他同类药物同时服用。漏服时不要一次服用双倍剂量。如出现过敏反应应立即停药就医。",
]
_NUTRITION_EN = [
    "Healthy eating tips: fill half your plate with vegetables and fruit, choose whole grains, and drink water "
    "instead of sugary drinks. Adults should aim for at least 150 minutes of moderate activity each week and "
    "keep salt below five grams a day.",
    "Vitamin D and calcium keep bones strong. Good sources include milk, yogurt, leafy greens and oily fish. "
    "Sleep seven to nine hours, limit alcohol and do not smoke to lower the risk of heart disease.",
]
_NUTRITION_ZH = [
    "健康饮食小贴士：每天吃够蔬菜水果，主食粗细搭配，少吃油炸食品，每日食盐不超过5克。成年人每周至少进行150分钟中等强度"
    "运动，保证充足睡眠，有助于控制体重、预防慢性病。",
    "补钙不只靠喝骨头汤。牛奶、豆制品、深绿色蔬菜都是钙的良好来源。同时要多晒太阳，促进维生素D合成。老年人还应注意预防跌倒。",
]


_SEED_SENTENCES: dict[tuple[str, str | None], list[str]] = {
    ("zh", "clinical"): [
        "患者男性，六十岁，因胸闷气短三天入院。", "查体：体温37.8℃，心率98次/分，双肺可闻及湿啰音。",
        "血常规提示白细胞升高，考虑细菌感染。", "诊断为慢性阻塞性肺疾病急性加重。", "给予抗感染、化痰、平喘等对症治疗。",
        "医生建议患者戒烟，定期复查肺功能。", "术后伤口愈合良好，无发热，予以出院。", "孩子发烧两天，咳嗽有痰，需要去医院看吗？",
        "您好，根据您描述的症状，建议先做血常规和胸片检查。", "高血压患者应长期规律服用降压药，不可随意停药。",
        "糖尿病的并发症包括视网膜病变、肾病和周围神经病变。", "心电图显示ST段压低，需排除心肌缺血。",
        "头晕伴恶心呕吐，可能与颈椎病或耳石症有关。", "如症状持续加重，请及时到急诊就诊。",
    ],
    ("en", "clinical"): [
        "The patient is a 60-year-old man admitted with chest pain and shortness of breath.",
        "On examination his temperature was 38.2 C and crackles were heard at both lung bases.",
        "Blood tests showed a raised white cell count and C-reactive protein.",
        "He was treated with intravenous antibiotics and oxygen therapy.",
        "Hello doctor, I have had a fever and cough for three days.",
        "Thanks for your query; based on your symptoms I suggest a chest X-ray and a blood test.",
        "Chronic kidney disease is staged by the estimated glomerular filtration rate.",
        "The surgeon recommended a laparoscopic cholecystectomy after the ultrasound confirmed gallstones.",
        "Randomised controlled trials showed a lower mortality in the treatment group.",
        "Seek emergency care if the pain spreads to your arm or jaw.",
        "The MRI revealed a small lesion in the left temporal lobe.",
    ],
    ("zh", "tcm"): [
        "脉浮紧，头痛发热，恶寒无汗，麻黄汤主之。", "本方以补中益气为主，兼以升阳举陷。", "气血两虚者，宜八珍汤加减。",
        "舌淡苔白，脉沉细，属脾肾阳虚之证。", "针刺足三里、合谷，留针二十分钟。", "此药性寒，脾胃虚寒者慎用。",
    ],
    ("zh", "pharmacy"): [
        "本品为白色薄膜衣片，除去包衣后显白色。",
        "用法用量：口服，成人一次0.5克，一日三次。",
        "不良反应：偶见皮疹、腹泻和肝功能异常。",
        "孕妇及哺乳期妇女禁用。", "与华法林合用可增加出血风险。", "请遵医嘱用药，儿童用量请咨询医师或药师。",
    ],
    ("en", "pharmacy"): [
        "Take one tablet by mouth twice daily with food.", "Common side effects include headache, nausea and dizziness.",
        "Do not take this medicine if you are allergic to penicillin.", "Tell your pharmacist about all the drugs you take.",
        "Store at room temperature, away from light and moisture.",
        "If you miss a dose, skip it and return to your regular schedule.",
    ],
    ("zh", "consumer_health"): [
        "每天喝足八杯水有助于身体代谢。", "多吃新鲜蔬菜水果，少吃高油高盐的食物。", "坚持每周三次有氧运动，有助于控制体重。",
        "保证充足睡眠，避免熬夜。", "孕期需要适当补充叶酸和铁。", "老年人应注意补钙，预防骨质疏松。",
    ],
    ("en", "consumer_health"): [
        "Eat plenty of vegetables, fruit and whole grains every day.", "Adults need seven to nine hours of sleep each night.",
        "Regular physical activity lowers the risk of heart disease and diabetes.",
        "Wash your hands often to prevent infections.",
        "Limit sugary drinks and choose water instead.", "Get your blood pressure checked at least once a year.",
    ],
    ("zh", None): [
        "今年的春节联欢晚会收视率再创新高。", "这款手机的电池续航很好，拍照效果也不错。", "股市今天小幅上涨，成交量有所放大。",
        "新开的咖啡店环境安静，适合看书。", "周末我们去博物馆看了一场书画展。", "这本小说情节紧凑，人物刻画生动。",
        "城市地铁四号线将于明年年底通车。", "比赛进入加时赛，主队最终以两分险胜。", "今天天气晴朗，最高气温二十五度。",
        "房价上涨让很多年轻人望而却步。", "学校组织学生参加植树活动。", "这家餐厅的红烧肉味道很正宗。",
        "快递昨天就到了，包装完好无损。", "大学生就业形势依然严峻。", "他利用业余时间学习摄影和绘画。",
        "酒店前台服务热情，房间干净整洁。", "这部电视剧改编自同名网络小说。", "公司发布了新一季度的财报。",
        "黄河流域的生态保护取得了明显成效。", "古人云：学而不思则罔，思而不学则殆。",
    ],
    ("en", None): [
        "The stock market closed higher on Friday after a volatile week.", "Our hotel room had a lovely view of the harbour.",
        "The new phone has a larger screen and a faster processor.", "The band released its third album last spring.",
        "Heavy rain is expected across the region this weekend.", "The council voted to build a new library in the town centre.",
        "She scored the winning goal in the final minute of the match.",
        "This novel follows three generations of a farming family.",
        "The recipe calls for two cups of flour and a pinch of salt.", "Tourists crowded the old square to watch the parade.",
        "The company announced record profits for the last quarter.", "Students must submit their essays by Monday morning.",
        "The president delivered his speech to a joint session of Congress.", "The museum reopened after a long renovation.",
        "Traffic was slow on the highway because of road works.", "He spent the summer hiking in the mountains.",
    ],
}


def _seed_compositions(rng: random.Random, per_pool: int) -> list[tuple[str, str, str | None, float, str]]:
    """Documents of 2-5 sentences drawn from one pool (deterministic): lexical variety for the seed."""
    out = []
    for (lang, sub), pool in sorted(_SEED_SENTENCES.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        for i in range(per_pool * (3 if sub is None else 1)):
            k = min(len(pool), rng.randint(2, 5))
            sep = "" if lang == "zh" else " "
            out.append((f"seed_{lang}_{sub or 'general'}", sep.join(rng.sample(pool, k)), sub, 3.5,
                        f"compose-{lang}-{sub}-{i}"))
    return out


def build_seed(normalize_cfg: NormalizeConfig, params: BuildParams | None = None) -> list[LabelledRow]:
    """A small labelled seed generated from templates written for this project (deterministic)."""
    from medcorpus import demo

    params = params or BuildParams(validation_percent=25)
    rng = random.Random(11)
    raw: list[tuple[str, str, str | None, float, str]] = []
    for i, (d, s, m, t) in enumerate(demo.EN_DISEASES):
        for tpl in demo.EN_TEMPLATES:
            raw.append(("seed_en_clinical", tpl.format(D=d, S=s, M=m, T=t), "clinical", 4.0, f"en-clin-{i}"))
        for tpl in _PHARMACY_EN:
            raw.append(("seed_en_pharmacy", tpl.format(M=m), "pharmacy", 4.0, f"en-pharm-{i}"))
    for i, (d, s, m, t) in enumerate(demo.ZH_CLINICAL):
        for tpl in demo.ZH_CLINICAL_TEMPLATES:
            raw.append(("seed_zh_clinical", tpl.format(D=d, S=s, M=m, T=t), "clinical", 4.0, f"zh-clin-{i}"))
        for tpl in _PHARMACY_ZH:
            raw.append(("seed_zh_pharmacy", tpl.format(M=m, D=d), "pharmacy", 4.0, f"zh-pharm-{i}"))
    for i, (h, x, e, z) in enumerate(demo.ZH_TCM):
        for tpl in demo.ZH_TCM_TEMPLATES:
            raw.append(("seed_zh_tcm", tpl.format(H=h, X=x, E=e, Z=z), "tcm", 4.0, f"zh-tcm-{i}"))
    for i, t in enumerate(_NUTRITION_EN + _NUTRITION_ZH):
        raw.append(("seed_nutrition", t, "consumer_health", 4.0, f"nutrition-{i}"))
    for i in range(len(demo.EN_GENERAL)):
        raw.append(("seed_en_general", " ".join(rng.sample(demo.EN_GENERAL, 2)), None, 3.5, f"en-gen-{i}"))
    for i in range(len(demo.ZH_GENERAL)):
        raw.append(("seed_zh_general", "".join(rng.sample(demo.ZH_GENERAL, 2)), None, 3.5, f"zh-gen-{i}"))
    raw += _seed_compositions(rng, 30)
    rows = []
    for source, text, sub, prior, group in raw:
        norm = normalize_one(text, normalize_cfg)[0] or ""
        split = "validation" if stable_hash(params.salt, group) % 100 < params.validation_percent else "train"
        label = MEDICAL if sub else GENERAL
        rows.append(LabelledRow(norm, label, sub, proxy_quality(norm, prior), source, group, split))
    for i, t in enumerate(demo.ZH_SPAM + demo.EN_SPAM):
        rows.append(LabelledRow(t, GENERAL, None, 0.3, "seed_spam", f"spam-{i}", "train", True))
    return with_synthetic(rows, params)
