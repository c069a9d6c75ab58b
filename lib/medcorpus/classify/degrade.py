"""Degraded twins of real documents: the quality rater's training pairs and its benchmark.

Each degradation takes a text and a seeded ``random.Random`` and returns a worse version of the same
content, the kinds of damage a web corpus shows: sentence order lost, advertising or SEO spam injected,
keyword stuffing, a document cut mid-sentence, OCR-like noise, mojibake, navigation boilerplate, repeated
paragraphs, and machine-garbled character order. A rater that measures quality must rank the original above
every twin; because a twin keeps the original's topic, source and (mostly) length, the comparison isolates
what the rater sees of quality itself.

Deterministic: the same text, kind and seed give the same twin.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from medcorpus.text.script import HAN_CLASS, mostly_han

_SENT_END = "。！？!?；;…"
_SENT_SPLIT = re.compile(r"(?<=[。！？!?；;…])|(?<=[.])(?=\s)|\n")

AD_LINES_ZH = (
    "限时特价！点击链接立即抢购，加微信领取优惠券，全场包邮！！",
    "扫码关注公众号，免费领取价值999元的健康大礼包，名额有限！",
    "代理招募中，月入过万不是梦，详情私聊，加v咨询。",
    "【热销】正品保证 七天无理由退换 下单立减50元 www.hao-deal.cn",
    "澳门首家线上娱乐城，注册即送38元，日赚千元不是梦！",
)
AD_LINES_EN = (
    "CLICK HERE to claim your FREE gift!!! Limited offer, buy now, free shipping $$$",
    "Best price guaranteed!!! Subscribe today and get 70% discount, click here now!!!",
    "Work from home and earn $5000 a week -- sign up now at www.easy-cash.biz",
    "Hot deals: cheap pills online, no prescription needed, order now and save 80%!",
    "Follow us on Facebook, Twitter and Instagram for exclusive coupon codes!!!",
)
MENUS_ZH = (
    "首页 | 新闻中心 | 产品展示 | 关于我们 | 联系我们",
    "网站地图 | 隐私政策 | 免责声明 | 版权所有 © 2024",
    "上一篇 下一篇 返回顶部 分享到：微博 微信 QQ空间",
    "热门标签：健康 养生 减肥 美容 母婴 两性 心理",
)
MENUS_EN = (
    "Home | About us | Products | News | Contact",
    "Privacy policy | Terms of use | Cookie settings | Sitemap",
    "Share on Facebook | Share on Twitter | Email | Print",
    "Previous post | Next post | Back to top | Related articles",
)
_OCR_SWAPS = {"l": "1", "1": "l", "O": "0", "0": "O", "m": "rn", "e": "c", "a": "o", "i": "j", "S": "5",
              "人": "入", "日": "曰", "己": "已", "未": "末", "土": "士", "大": "太", "天": "夭", "目": "自"}
_NOISE = "~^`|¦¬°•■□▲◆※¤§¨"


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT_SPLIT.split(text) if s and s.strip()]


def shuffle_sentences(text: str, rng: random.Random) -> str:
    """Sentences in a random order, put back into the original layout (the same number of sentences on each
    line), so only the order is lost, not the line breaks."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    per_line = [[s.strip() for s in _SENT_SPLIT.split(ln) if s and s.strip()] for ln in lines]
    flat = [s for ss in per_line for s in ss]
    if len(flat) < 3:
        return text
    order = list(range(len(flat)))
    while order == sorted(order):
        rng.shuffle(order)
    shuffled = iter([flat[i] for i in order])
    sep = "" if mostly_han(text) else " "
    return "\n".join(sep.join(next(shuffled) for _ in ss) for ss in per_line)


def inject_spam(text: str, rng: random.Random) -> str:
    sents = sentences(text)
    pool = AD_LINES_ZH if mostly_han(text) else AD_LINES_EN
    out: list[str] = []
    for i, s in enumerate(sents):
        out.append(s)
        if i % 3 == 1:
            out.append(rng.choice(pool))
    if len(out) == len(sents):
        out.append(rng.choice(pool))
    return "\n".join(out)


def stuff_keywords(text: str, rng: random.Random) -> str:
    if mostly_han(text):
        words = re.findall(f"[{HAN_CLASS}]{{2,4}}", text)
    else:
        words = [w for w in re.findall(r"[A-Za-z]{5,}", text)]
    words = words or ["health"]
    keys = [rng.choice(words) for _ in range(3)]
    sep = "，" if mostly_han(text) else ", "
    stuffed = sep.join(rng.choice(keys) for _ in range(40))
    half = len(text) // 2
    return f"{text[:half]}\n{stuffed}\n{text[half:]}\n{stuffed}"


def truncate_mid_sentence(text: str, rng: random.Random) -> str:
    """Cut inside a sentence, between 35% and 75% of the text, never at sentence end punctuation."""
    lo, hi = int(len(text) * 0.35), int(len(text) * 0.75)
    for _ in range(50):
        cut = rng.randint(max(1, lo), max(1, hi))
        head = text[:cut].rstrip()
        if head and head[-1] not in _SENT_END + ".\n" and head[-1].isalnum():
            return head
    return text[: max(1, lo)].rstrip(_SENT_END + ".\n ")


def ocr_noise(text: str, rng: random.Random) -> str:
    chars = list(text)
    for i, c in enumerate(chars):
        r = rng.random()
        if c in _OCR_SWAPS and r < 0.25:
            chars[i] = _OCR_SWAPS[c]
        elif not c.isspace() and r < 0.06:
            chars[i] = rng.choice(_NOISE)
        elif c == " " and r < 0.1:
            chars[i] = ""
    return "".join(chars)


def mojibake(text: str, rng: random.Random) -> str:
    """Spans decoded with the wrong codec (UTF-8 read as GBK or Latin-1), as in a mis-declared page."""
    out, i = [], 0
    while i < len(text):
        span = rng.randint(20, 60)
        chunk = text[i: i + span]
        if rng.random() < 0.5:
            codec = "gbk" if mostly_han(text) else "latin-1"
            chunk = chunk.encode("utf-8").decode(codec, errors="replace")
        out.append(chunk)
        i += span
    return "".join(out)


def boilerplate_menu(text: str, rng: random.Random) -> str:
    pool = MENUS_ZH if mostly_han(text) else MENUS_EN
    top = "\n".join(rng.sample(pool, 3))
    bottom = "\n".join(rng.sample(pool, 3))
    return f"{top}\n{text}\n{bottom}"


def repeat_paragraphs(text: str, rng: random.Random) -> str:
    paras = [p for p in text.split("\n") if p.strip()] or [text]
    pick = paras[: max(1, len(paras) // 2)]
    return "\n".join(paras + pick * rng.randint(1, 2))


def garble_char_order(text: str, rng: random.Random) -> str:
    """Characters shuffled inside short windows (Chinese) or inside words (English): machine-garbled order."""
    if mostly_han(text):
        chars = list(text)
        for start in range(0, len(chars), 6):
            window = chars[start: start + 6]
            rng.shuffle(window)
            chars[start: start + 6] = window
        return "".join(chars)

    def scramble(m: re.Match[str]) -> str:
        w = list(m.group(0))
        mid = w[1:-1]
        rng.shuffle(mid)
        return w[0] + "".join(mid) + w[-1]

    return re.sub(r"[A-Za-z]{4,}", scramble, text)


DEGRADATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "shuffled_sentences": shuffle_sentences,
    "spam_injected": inject_spam,
    "keyword_stuffing": stuff_keywords,
    "truncated": truncate_mid_sentence,
    "ocr_noise": ocr_noise,
    "mojibake": mojibake,
    "boilerplate_menu": boilerplate_menu,
    "repeated_paragraphs": repeat_paragraphs,
    "garbled_order": garble_char_order,
}


def degrade(text: str, kind: str, seed: int) -> str:
    """The ``kind`` twin of ``text``; unknown kinds fail listing the valid ones."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(DEGRADATIONS)}")
    return DEGRADATIONS[kind](text, random.Random(seed))


def eligible(text: str) -> bool:
    """Texts a twin is made of: enough sentences for order to matter, long enough to cut."""
    return len(text) >= 200 and len(sentences(text)) >= 4
