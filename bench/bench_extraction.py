"""Extraction quality (issue 17): the shipped models validated by whole source, and lexicon false positives.

* ``models``: ``medcorpus.classify.modelbuild.build`` again into a temporary folder: leave-one-source-out domain figures
  (per source, per language, reliability table of the calibrated ``p_medical``), the rater's degradation
  pairs, per-source length correlation and zh/en parity; plus whether the rebuilt arrays have the shipped
  checksums (``make models`` is reproducible).
* ``lexicons``: every document of every medical source in ``../shared/data`` (no cap; books in ~1,200-char
  chunks) against the ads/toxic/porn/violence/gambling rules with the filter's thresholds, counted with the
  same patterns and protected words as the Spark stage (Python ``regex``; the Spark path is tested in
  tests/test_filters.py); every remaining hit is listed. Recall on a small hand-made spam set.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"

SPAM = {
    "gambling_zh": ("澳门百家乐在线赌场，真人荷官，注册送38元彩金，首存返水，在线下注，赔率全网最高！", "gambling"),
    "lottery_zh": ("时时彩北京赛车pk10计划群，稳赚不赔，投注技巧免费教，注册送彩金，棋牌游戏天天返水。", "gambling"),
    "porn_zh": ("同城约炮，裸聊一对一，成人视频免费看，上门服务，小姐上门，一夜情交友！", "porn"),
    "porn_zh_2": ("最新三级片、毛片、黄片在线看，成人网站永久免费，激情视频每日更新，偷拍视频合集。", "porn"),
    "seo_zh": ("点击这里立即抢购！加微信领取优惠券，全场包邮，限时优惠，扫码关注公众号！", "ads"),
    "seo_zh_2": ("咨询热线：400-000-0000，免费咨询，招商加盟，诚招代理，点击进入官网，秒杀低至一折。", "ads"),
    "casino_en": ("Online casino with free spins and a casino bonus! Sports betting, blackjack and roulette, "
                  "place your bets now.", "gambling"),
    "seo_en": ("Click here to buy now! Free shipping, limited time offer, use code SAVE50 at checkout. "
               "Subscribe now and act now for the lowest price, money back guarantee.", "ads"),
}


def _patterns(cfg: Any) -> tuple[dict[str, Any], Any]:
    import regex

    from medcorpus.filters import rules as filters

    def py(p: str) -> str:  # Java's \Q...\E quoting -> escaped literals
        return re.sub(r"\\Q(.*?)\\E", lambda m: regex.escape(m.group(1)), p, flags=re.S)

    pats = {cat: regex.compile(py(filters.lexicon_pattern(filters.load_lexicon(cfg, cat))))
            for cat in cfg.lexicon_categories}
    prot = filters.protected_pattern(cfg)
    return pats, (regex.compile(py(prot)) if prot else None)


def first_failing_rule(text: str, cfg: Any, pats: dict[str, Any], prot: Any) -> tuple[str | None, list[str]]:
    counted = prot.sub("\u0001", text) if prot is not None else text
    for cat, min_hits, min_per_1k in zip(cfg.lexicon_categories, cfg.lexicon_min_hits, cfg.lexicon_min_per_1k):
        hits = pats[cat].findall(counted)
        if len(hits) >= min_hits and len(hits) * 1000 / max(len(text), 1) >= min_per_1k:
            return cat, hits
    return None, []


def lexicon_audit(shared: Path) -> dict[str, Any]:
    from medcorpus.classify import labelled
    from medcorpus.core.config import load_config

    cfg = load_config().filter
    pats, prot = _patterns(cfg)
    per_source: dict[str, Any] = {}
    listed: list[dict[str, Any]] = []
    for spec in labelled.SOURCES:
        if spec.label != labelled.MEDICAL:
            continue
        n = removed = 0
        for group, text in spec.reader(shared):
            if not text or not text.strip():
                continue
            n += 1
            rule, hits = first_failing_rule(text, cfg, pats, prot)
            if rule:
                removed += 1
                listed.append({"source": spec.name, "group": group, "rule": rule, "hits": hits[:10]})
        per_source[spec.name] = {"documents": n, "removed": removed,
                                 "removed_pct": round(100.0 * removed / max(n, 1), 4)}
    spam = {name: first_failing_rule(text * 2, cfg, pats, prot)[0] for name, (text, _) in SPAM.items()}
    return {
        "per_medical_source": per_source,
        "max_removed_pct": max(v["removed_pct"] for v in per_source.values()),
        "target_max_removed_pct": 0.1,
        "remaining_hits": listed,
        "spam_recall": {"caught": sum(spam[k] == rule for k, (_, rule) in SPAM.items()), "of": len(SPAM),
                        "rules": spam},
    }


def _checksum(folder: Path) -> str:
    return json.loads((folder / "model.json").read_text(encoding="utf-8"))["checksum"]


def run(spark: Any, args: Any) -> dict[str, Any]:
    from medcorpus.classify import modelbuild

    if not SHARED.is_dir():
        return {"skipped": f"{SHARED} not found"}
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    out["lexicons"] = lexicon_audit(SHARED)
    out["lexicons"]["seconds"] = round(time.perf_counter() - t0, 1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = modelbuild.build(SHARED, Path(tmp))
        shipped = HERE.parent / "models"
        report["rebuilt_equals_shipped"] = {k: _checksum(Path(tmp) / k) == _checksum(shipped / k)
                                            for k in ("domain", "rater")}
        report["seconds"] = round(time.perf_counter() - t0, 1)
    out["models"] = report
    return out


if __name__ == "__main__":
    print(json.dumps(lexicon_audit(SHARED), indent=1, ensure_ascii=False)[:4000])

