"""The demo corpus: a small mixed corpus generated from templates written for this project.

Deterministic (seeded): the same call writes the same bytes. It mixes medical (clinical, TCM, pharmacy,
consumer health) and general text in Simplified Chinese, Traditional Chinese and English, across every
input format ingest reads, with planted exact and near duplicates, PII, spam, broken records and one
GB18030 + CRLF book.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from pathlib import Path
from typing import Any

MARKER = ".demo-complete"
DEMO_VERSION = "1"

# ---------------------------------------------------------------------------------------------------
# vocabularies
# ---------------------------------------------------------------------------------------------------
EN_DISEASES = [
    ("type 2 diabetes", "high blood sugar, frequent urination and fatigue", "metformin", "HbA1c"),
    ("hypertension", "headaches and, often, no symptoms at all", "amlodipine", "blood pressure"),
    ("asthma", "wheezing, chest tightness and shortness of breath", "inhaled corticosteroids", "peak flow"),
    ("community-acquired pneumonia", "fever, productive cough and pleuritic chest pain", "amoxicillin", "chest X-ray"),
    ("migraine", "throbbing unilateral headache with nausea and photophobia", "sumatriptan", "headache diary"),
    ("iron-deficiency anemia", "pallor, fatigue and brittle nails", "oral ferrous sulfate", "ferritin"),
    ("gastroesophageal reflux disease", "heartburn and regurgitation after meals", "omeprazole", "endoscopy"),
    ("hypothyroidism", "weight gain, cold intolerance and constipation", "levothyroxine", "TSH"),
    ("atrial fibrillation", "palpitations and an irregularly irregular pulse", "apixaban", "ECG"),
    ("chronic kidney disease", "swelling of the ankles and reduced urine output", "ACE inhibitors", "eGFR"),
    ("rheumatoid arthritis", "symmetric joint pain with morning stiffness", "methotrexate", "rheumatoid factor"),
    ("urinary tract infection", "burning on urination and urgency", "nitrofurantoin", "urinalysis"),
]
EN_TEMPLATES = [
    "{D} is a common condition. Patients usually present with {S}. The diagnosis is confirmed by {T}, and "
    "first-line treatment is {M}. Clinicians should review the dose at each visit and watch for adverse "
    "effects. Lifestyle measures such as a balanced diet, regular exercise and stopping smoking also help.",
    "Clinical overview: {D}. Typical symptoms include {S}. Work-up relies on {T}. Management starts with {M} "
    "at the lowest effective dose, with follow-up in four to six weeks. Refer to a specialist when the response "
    "is poor or complications appear.",
    "Patient information leaflet. What is {D}? It is a condition in which people notice {S}. Your doctor may "
    "check your {T}. The medicine most often prescribed is {M}. Take it exactly as prescribed and tell your "
    "doctor about any other medicines you use.",
]
EN_GENERAL = [
    "The city council approved a new budget for public parks on Tuesday. The plan adds bicycle lanes along the "
    "river and extends library opening hours. Residents will be able to comment on the proposals until the end "
    "of the month, and the first works are expected to begin in spring.",
    "Our recipe of the week is a simple tomato soup. Roast the tomatoes with garlic and olive oil, blend them "
    "with vegetable stock, and season with salt, pepper and fresh basil. Serve it warm with toasted bread.",
    "The home team won the championship after a dramatic final match. The striker scored twice in the second "
    "half, and the goalkeeper saved a penalty in the last minute. Fans celebrated in the streets until late.",
    "Learning a programming language takes practice. Start with small projects, read other people's code, and "
    "write tests for the functions you create. Version control helps you keep track of your changes over time.",
    "The museum opened an exhibition of nineteenth-century landscape paintings. Visitors can see more than "
    "eighty works, many of them lent by private collectors, together with letters written by the artists.",
    "Autumn is a good time to plant bulbs in the garden. Choose a sunny spot with well-drained soil, plant the "
    "bulbs at about three times their height, and water them once after planting.",
]
ZH_CLINICAL = [
    ("高血压", "头晕、头痛，部分患者没有明显症状", "氨氯地平", "动态血压监测"),
    ("2型糖尿病", "多饮、多尿、体重下降和乏力", "二甲双胍", "糖化血红蛋白"),
    ("社区获得性肺炎", "发热、咳嗽、咳痰和胸痛", "阿莫西林", "胸部X线检查"),
    ("慢性胃炎", "上腹部隐痛、饱胀和嗳气", "奥美拉唑", "胃镜检查"),
    ("支气管哮喘", "反复发作的喘息、气急和胸闷", "吸入糖皮质激素", "肺功能检查"),
    ("缺铁性贫血", "面色苍白、乏力和心悸", "硫酸亚铁", "血清铁蛋白"),
    ("甲状腺功能减退症", "怕冷、乏力、便秘和体重增加", "左甲状腺素", "促甲状腺激素"),
    ("冠心病", "活动后胸闷、胸痛，休息后可缓解", "阿司匹林", "冠状动脉造影"),
    ("痛风", "第一跖趾关节红肿热痛", "秋水仙碱", "血尿酸"),
    ("偏头痛", "反复发作的一侧搏动性头痛，伴恶心", "布洛芬", "头痛日记"),
]
ZH_CLINICAL_TEMPLATES = [
    "{D}是临床常见疾病。患者主要表现为{S}。诊断需要结合病史和{T}。治疗上首选{M}，并根据病情调整剂量。"
    "患者应定期复诊，注意饮食清淡，适量运动，戒烟限酒。如出现病情加重，应及时到医院就诊。",
    "问：医生您好，我最近总是{S}，是不是得了{D}？答：您好，根据您的描述，需要考虑{D}的可能。建议到医院做"
    "{T}明确诊断。确诊后可以在医生指导下使用{M}，不要自行停药。平时注意休息，保持良好的生活习惯。",
    "【疾病概述】{D}。【临床表现】{S}。【辅助检查】{T}。【治疗】{M}为常用药物，用药期间需监测不良反应。"
    "【预防】合理膳食，规律作息，定期体检。",
]
ZH_TCM = [
    ("黄芪", "甘，微温。归脾、肺经", "补气升阳，固表止汗，利水消肿", "气虚乏力，食少便溏，表虚自汗"),
    ("当归", "甘、辛，温。归肝、心、脾经", "补血活血，调经止痛，润肠通便", "血虚萎黄，月经不调，经闭痛经"),
    ("人参", "甘、微苦，微温。归脾、肺、心经", "大补元气，复脉固脱，补脾益肺", "体虚欲脱，脾虚食少，肺虚喘咳"),
    ("甘草", "甘，平。归心、肺、脾、胃经", "补脾益气，清热解毒，祛痰止咳", "脾胃虚弱，倦怠乏力，咳嗽痰多"),
    ("茯苓", "甘、淡，平。归心、肺、脾、肾经", "利水渗湿，健脾宁心", "水肿尿少，痰饮眩悸，脾虚食少"),
    ("柴胡", "辛、苦，微寒。归肝、胆、肺经", "疏散退热，疏肝解郁，升举阳气", "感冒发热，寒热往来，胸胁胀痛"),
    ("川芎", "辛，温。归肝、胆、心包经", "活血行气，祛风止痛", "胸痹心痛，头痛，风湿痹痛"),
    ("白术", "苦、甘，温。归脾、胃经", "健脾益气，燥湿利水，止汗，安胎", "脾虚食少，腹胀泄泻，痰饮眩悸"),
]
ZH_TCM_TEMPLATES = [
    "{H}，性味归经：{X}。功效：{E}。主治：{Z}。用法用量：煎服，常用剂量遵医嘱。中医认为，用药须辨证论治，"
    "因人、因时、因地制宜。",
    "《本草》载：{H}，{X}。其功{E}，可治{Z}。临证配伍得当，则效如桴鼓；若辨证不明，则不宜妄用。",
]
ZH_GENERAL = [
    "今天上午，市里召开了城市建设工作会议。会议提出，今年将新建三座公园，改造老旧小区二十个，并继续推进"
    "地铁线路建设。市民可以通过政务网站提出意见和建议。",
    "这家酒店位置很好，离地铁站只有五分钟路程。房间干净整洁，服务员态度热情，早餐品种也比较丰富。"
    "下次来这里出差还会选择入住。",
    "周末我们全家去郊外爬山。山上空气清新，风景优美，沿途还能看到很多野花。中午在山顶吃了带来的午餐，"
    "下午三点多才下山回家。",
    "学习编程需要多动手实践。可以先从简单的小项目开始，阅读优秀的开源代码，并为自己写的函数编写测试。"
    "坚持一段时间，就能看到明显的进步。",
    "本届足球联赛决赛十分精彩。主队在下半场连进两球，守门员在最后一分钟扑出点球，最终夺得冠军。"
    "赛后球迷们在街头庆祝到深夜。",
    "这部电影讲述了一个普通家庭在时代变迁中的故事。演员表演自然，画面精美，音乐也很动人，"
    "上映以来获得了观众的一致好评。",
]
ZH_SPAM = [
    "特价优惠！！！点击购买，加微信 abc12345 领取优惠券，限时抢购，先到先得！！！",
    "加微信领取优惠券 加微信领取优惠券 加微信领取优惠券 加微信领取优惠券 加微信领取优惠券",
]
EN_SPAM = [
    "CLICK HERE!!! Buy now and get 90% OFF!!! Limited offer, click here, click here, free shipping $$$ !!!",
    "best price best price best price best price best price best price best price best price",
]


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _resident_id(rng: random.Random) -> str:
    """A syntactically valid 18-digit resident ID (checksum per GB 11643); random, not a real person."""
    body = f"110105{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(100, 999)}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]
    return body + check


def _pii_sentence_zh(rng: random.Random) -> str:
    phone = f"1{rng.choice('3589')}{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"
    card = "622202" + "".join(str(rng.randint(0, 9)) for _ in range(12))
    card += _luhn_digit(card)
    return f"患者联系电话{phone}，身份证号{_resident_id(rng)}，银行卡号{card}，邮箱 patient{rng.randint(1, 999)}@example.com。"


def _pii_sentence_en(rng: random.Random) -> str:
    return (f"Contact the clinic at ({rng.randint(200, 899)}) {rng.randint(200, 899)}-{rng.randint(1000, 9999)} or "
            f"nurse{rng.randint(1, 99)}@example.org; the server is 10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.7.")


# ---------------------------------------------------------------------------------------------------
# documents
# ---------------------------------------------------------------------------------------------------
def _medical_en(rng: random.Random, n: int) -> list[dict[str, Any]]:
    docs = []
    for i in range(n):
        d, s, m, t = EN_DISEASES[i % len(EN_DISEASES)]
        text = rng.choice(EN_TEMPLATES).format(D=d.capitalize(), S=s, M=m, T=t)
        extra = rng.sample(EN_TEMPLATES, 1)[0].format(D=d, S=s, M=m, T=t)
        text = text + "\n\n" + extra
        if i % 17 == 5:
            text += " " + _pii_sentence_en(rng)
        docs.append({"id": f"en-med-{i}", "url": f"https://health.example.org/{i}", "title": d, "text": text,
                     "meta": {"source": "demo", "domain": "medical", "subdomain": "clinical"}})
    return docs


def _general_en(rng: random.Random, n: int) -> list[dict[str, Any]]:
    docs = []
    for i in range(n):
        parts = rng.sample(EN_GENERAL, 2)
        docs.append({"id": f"en-gen-{i}", "url": f"https://news.example.com/{i}", "text": "\n\n".join(parts),
                     "meta": {"source": "demo", "domain": "general"}})
    return docs


def _medical_zh(rng: random.Random, n: int) -> list[dict[str, Any]]:
    docs = []
    for i in range(n):
        if i % 3 == 2:
            h, x, e, z = ZH_TCM[i % len(ZH_TCM)]
            text = rng.choice(ZH_TCM_TEMPLATES).format(H=h, X=x, E=e, Z=z)
            sub = "tcm"
        else:
            d, s, m, t = ZH_CLINICAL[i % len(ZH_CLINICAL)]
            text = rng.choice(ZH_CLINICAL_TEMPLATES).format(D=d, S=s, M=m, T=t)
            text += rng.choice(ZH_CLINICAL_TEMPLATES).format(D=d, S=s, M=m, T=t)
            sub = "clinical"
        if i % 13 == 4:
            text += _pii_sentence_zh(rng)
        if i % 19 == 7:
            text = "<p>" + text.replace("。", "。&nbsp;", 2) + "</p>\u200b"
        docs.append({"id": f"zh-med-{i}", "text": text, "meta": {"source": "demo", "domain": "medical", "subdomain": sub}})
    return docs


def _general_zh(rng: random.Random, n: int) -> list[dict[str, Any]]:
    return [{"id": f"zh-gen-{i}", "text": "".join(rng.sample(ZH_GENERAL, 2)), "meta": {"source": "demo", "domain": "general"}}
            for i in range(n)]


def _traditional(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import opencc

    s2t = opencc.OpenCC("s2t")
    out = []
    for d in docs:
        t = dict(d)
        t["id"] = str(d["id"]) + "-hant"
        t["text"] = s2t.convert(str(d["text"]))
        out.append(t)
    return out


def _near_duplicate(text: str, rng: random.Random) -> str:
    """Same text with a small edit: a changed sentence ending and an appended short note."""
    words = text.split(" ")
    if len(words) > 8:
        i = rng.randrange(len(words))
        words[i] = words[i].upper()
        return " ".join(words) + " (updated)"
    return text[:-4] + "另外，注意多喝水。" + text[-4:]


def _book_text(rng: random.Random) -> str:
    lines = ["<篇名>伤寒论选读", "属性：中医经典"]
    for i in range(30):
        h, x, e, z = ZH_TCM[i % len(ZH_TCM)]
        lines.append(f"第{i + 1}条  {h}，{x}，{e}。主{z}。")
    return "\r\n".join(lines) + "\r\n"


def _warc_bytes(docs: list[tuple[str, str, str]]) -> bytes:
    import uuid

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    def fixed(name: str) -> dict[str, str]:
        rid = uuid.uuid5(uuid.NAMESPACE_URL, name)
        return {"WARC-Record-ID": f"<urn:uuid:{rid}>", "WARC-Date": "2026-01-01T00:00:00Z"}

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    info = writer.create_warcinfo_record("demo.warc.gz", {"software": "medcorpus-demo"})
    for key, value in fixed("warcinfo").items():
        info.rec_headers.replace_header(key, value)
    writer.write_record(info)
    for url, title, body in docs:
        html = f"<html><head><title>{title}</title><style>p{{color:red}}</style></head><body><h1>{title}</h1>" \
               f"<p>{body}</p><script>var x=1;</script></body></html>"
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        record = writer.create_warc_record(url, "response", payload=io.BytesIO(html.encode("utf-8")),
                                           http_headers=headers, warc_headers_dict=fixed(url))
        writer.write_record(record)
    return buf.getvalue()


def _jsonl(docs: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n" for d in docs).encode("utf-8")


def write_demo_corpus(out: Path, scale: int = 1, seed: int = 7) -> Path:
    """Write the demo corpus under ``out`` (replacing what is there) and return ``out``."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.rglob("*"):
        if old.is_file():
            old.unlink()
    med_en = _medical_en(rng, 60 * scale)
    gen_en = _general_en(rng, 40 * scale)
    med_zh = _medical_zh(rng, 90 * scale)
    gen_zh = _general_zh(rng, 60 * scale)
    hant = _traditional(med_zh[: 15 * scale] + gen_zh[: 10 * scale])

    # planted duplicates: exact copies under new ids, and near copies
    exact = [dict(d, id=f"{d['id']}-copy") for d in (med_en[:5] + med_zh[:5])]
    near = [dict(d, id=f"{d['id']}-near", text=_near_duplicate(str(d["text"]), rng)) for d in (med_en[5:10] + med_zh[5:10])]
    spam = [{"id": f"spam-{i}", "text": t} for i, t in enumerate(ZH_SPAM + EN_SPAM)]

    (out / "web").mkdir(exist_ok=True)
    (out / "web" / "medical_en.jsonl").write_bytes(_jsonl(med_en + exact[:5] + near[:5] + spam[2:]))
    (out / "web" / "general_en.jsonl.gz").write_bytes(gzip.compress(_jsonl(gen_en), mtime=0))
    (out / "web" / "medical_zh.jsonl").write_bytes(_jsonl(med_zh + exact[5:] + near[5:] + spam[:2]))
    (out / "web" / "traditional_zh.jsonl").write_bytes(_jsonl(hant))

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{"id": d["id"], "text": d["text"], "title": None} for d in gen_zh])
    pq.write_table(table, out / "general_zh.parquet")

    books = out / "books"
    books.mkdir(exist_ok=True)
    (books / "shanghan_selection.txt").write_bytes(_book_text(rng).encode("gb18030"))
    (books / "home_remedies.txt").write_text(
        "\n\n".join(t.format(D=d, S=s, M=m, T=t2) for (d, s, m, t2), t in zip(EN_DISEASES, EN_TEMPLATES * 4)),
        encoding="utf-8",
    )

    pages = [(f"https://clinic.example.net/{i}", EN_DISEASES[i][0].title(),
              EN_TEMPLATES[0].format(D=EN_DISEASES[i][0], S=EN_DISEASES[i][1], M=EN_DISEASES[i][2], T=EN_DISEASES[i][3]))
             for i in range(6)]
    (out / "crawl.warc.gz").write_bytes(_warc_bytes(pages))

    broken = out / "broken"
    broken.mkdir(exist_ok=True)
    good_line = json.dumps({"id": "ok-1", "text": "A short but valid note about hand washing and infection control."})
    (broken / "mixed.jsonl").write_bytes(
        (good_line + "\n" + '{"id": "bad-1", "text": "unterminated\n' + '{"id": "no-text", "body": "x"}\n'
         + '{"id": "empty", "text": "   "}\n' + '{"id": "num", "text": 42}\n').encode("utf-8")
        + b'{"id": "latin1", "text": "caf\xe9 \xff\xfe\xfd\xfc broken bytes \xff\xff\xff\xff\xff"}\n'
    )
    full = gzip.compress(_jsonl(gen_en[:40]), mtime=0)
    (broken / "truncated.jsonl.gz").write_bytes(full[: len(full) // 2])
    (broken / "empty.jsonl").write_bytes(b"")
    (out / MARKER).write_text(DEMO_VERSION)
    return out


def ensure_demo_corpus(out: Path) -> Path:
    marker = out / MARKER
    if marker.exists() and marker.read_text() == DEMO_VERSION:
        return out
    return write_demo_corpus(out)


# ---------------------------------------------------------------------------------------------------
# SFT-style demo inputs (datasets stage): instructions, dialogues, exam items, scored responses
# ---------------------------------------------------------------------------------------------------
SFT_DEMO_DIR = "build/demo-sft"


def write_demo_sft_inputs(out: Path, seed: int = 11) -> Path:
    """Small SFT inputs in four importer formats, built from the vocabularies above (deterministic)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    alpaca, dialogues, exam, scored = [], [], [], []
    for i, (d, s, m, t) in enumerate(ZH_CLINICAL):
        alpaca.append({"instruction": f"请详细说明{d}的主要表现、诊断方法和常用治疗药物。", "input": "",
                       "output": f"{d}的主要表现为{s}。\n1. 诊断：结合病史和{t}。\n2. 治疗：常用{m}，需遵医嘱调整剂量。"
                                 f"\n3. 随访：定期复诊，注意生活方式干预。"})
        dialogues.append({"id": f"zh-dlg-{i}", "conversations": [
            {"from": "human", "value": f"医生您好，我最近{s}，会是{d}吗？"},
            {"from": "gpt", "value": f"您描述的{s}需要考虑{d}的可能，建议先做{t}明确诊断。"},
            {"from": "human", "value": f"如果{t}确诊是{d}，一般怎么治疗？{m}需要吃多久？"},
            {"from": "gpt", "value": f"确诊{d}后常用{m}治疗，疗程要根据{t}复查的结果由医生决定，不要自行停药。"}]})
        wrong = rng.sample([x[2] for x in ZH_CLINICAL if x[0] != d], 3)
        opts = sorted([m] + wrong)
        exam.append({"id": f"zh-mc-{i}", "question": f"治疗{d}的常用药物是", "department": "内科",
                     "options": dict(zip("ABCD", opts)), "answer": "ABCD"[opts.index(m)],
                     "explanation": f"{m}是{d}的常用治疗药物，其余选项主要用于其他疾病。"})
        scored.append({"id": f"zh-sc-{i}", "prompt": f"{d}患者日常生活中需要注意什么？", "responses": [
            {"content": f"{d}患者应规律用药（如{m}），定期做{t}，饮食清淡，适量运动，戒烟限酒。", "score": 4.5},
            {"content": "多休息就好。", "score": 1.5 if i % 4 else 4.5}]})
    for i, (d, s, m, t) in enumerate(EN_DISEASES):
        alpaca.append({"instruction": f"Explain how {d} is diagnosed and treated, and what patients should watch for.",
                       "input": "", "output": f"{d.capitalize()} usually presents with {s}.\n1. Diagnosis: {t} "
                       f"confirms it.\n2. Treatment: {m} is first-line.\n3. Follow-up: review the dose and side effects "
                       f"at every visit."})
        dialogues.append({"id": f"en-dlg-{i}", "conversations": [
            {"from": "human", "value": f"I have had {s} for two weeks. Could it be {d}?"},
            {"from": "gpt", "value": f"{s.capitalize()} can be caused by {d}. A {t} test would help confirm it."},
            {"from": "human", "value": f"If the {t} shows {d}, how long will I need {m}?"},
            {"from": "gpt", "value": f"Treatment of {d} with {m} is usually long-term; your doctor will repeat the {t} "
                                     f"to decide the dose."}]})
        wrong = rng.sample([x[2] for x in EN_DISEASES if x[0] != d], 3)
        opts = sorted([m] + wrong)
        exam.append({"id": f"en-mc-{i}", "question": f"Which drug is a first-line treatment for {d}?",
                     "options": dict(zip("ABCD", opts)), "answer": "ABCD"[opts.index(m)],
                     "explanation": f"{m} is first-line for {d}; the other drugs treat other conditions."})
    # dialogues whose second turn ignores the first, and one that only repeats it (ConFilter examples)
    dialogues.append({"id": "zh-dlg-offtopic", "conversations": [
        {"from": "human", "value": "医生您好，我最近反复头痛，伴有恶心，需要做什么检查？"},
        {"from": "gpt", "value": "反复头痛伴恶心建议先测血压，必要时做头颅CT检查，并记录头痛日记。"},
        {"from": "human", "value": "周末去哪里爬山比较好？山上的风景怎么样？"},
        {"from": "gpt", "value": "郊外的山空气清新，风景优美，沿途还能看到很多野花，适合全家一起去。"}]})
    echo = "饭后上腹部隐痛饱胀嗳气，需要做胃镜检查吗"
    dialogues.append({"id": "zh-dlg-echo", "conversations": [
        {"from": "human", "value": echo}, {"from": "gpt", "value": echo + "，需要做胃镜检查。"},
        {"from": "human", "value": echo}, {"from": "gpt", "value": echo + "，需要做胃镜检查。"}]})
    (out / "instructions.jsonl").write_bytes(_jsonl(alpaca))
    (out / "dialogues.jsonl").write_bytes(_jsonl(dialogues))
    (out / "exam.jsonl").write_bytes(_jsonl(exam))
    (out / "scored.jsonl").write_bytes(_jsonl(scored))
    return out


DEMO_BENCHMARKS_DIR = "build/demo-benchmarks"
_DEMO_BENCHMARK_ITEMS = (
    ("高血压患者长期服用下列哪种药物最容易引起干咳的不良反应", "硝苯地平", "卡托普利", "氢氯噻嗪", "美托洛尔", "B"),
    ("治疗单纯性甲状腺肿碘缺乏所致者首选的处理方法是补充", "碘剂", "甲状腺素", "丙硫氧嘧啶", "糖皮质激素", "A"),
    ("中医理论中被称为后天之本并主运化水谷精微的脏是", "心", "肝", "脾", "肾", "C"),
    ("Which electrolyte abnormality is most characteristic of untreated primary adrenal insufficiency in adults "
     "presenting with fatigue and hypotension", "Hypernatremia", "Hyperkalemia", "Hypokalemia", "Hypercalcemia", "B"),
)


def write_demo_benchmarks(out: Path) -> Path:
    """A tiny benchmark folder in CMMLU's test-file shape (``cmmlu/test/*.csv``: Question, A-D, Answer), used
    by the demo run when the configured ``decontaminate.benchmarks_dir`` (the shared CMMLU/CMExam files)
    is not on this machine. Deterministic; rewritten only when absent."""
    import csv

    path = out / "cmmlu" / "test" / "demo_clinical_medicine.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
            for i, item in enumerate(_DEMO_BENCHMARK_ITEMS):
                writer.writerow([i, *item])
    return out
