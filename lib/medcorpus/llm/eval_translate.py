"""Measure the ``translate`` prompt on the real parallel classical/modern text (NiuTrans, chapter level).

``python -m medcorpus.llm.eval_translate --base-url http://127.0.0.1:8000/v1 --model NAME --chapters 20``
translates sampled chapters of ``../shared/data/general_zh/niutrans`` paragraph by paragraph with the same
template, validator and client as the Spark stage (no Spark needed) and prints corpus chrF against the
modern reference. ``--copy-baseline`` scores the untranslated source instead (the floor a model must beat).
Source and reference chapters are not line-aligned (8 of 265 are), so chrF is computed per chapter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from medcorpus.core.config import REPO_ROOT, load_config

DEFAULT_ROOT = REPO_ROOT.parent / "shared" / "data" / "general_zh" / "niutrans"


def _ngrams(text: str, n: int) -> Counter[str]:
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf_statistics(hypothesis: str, reference: str, max_n: int = 6) -> list[tuple[int, int, int]]:
    """Per n: (matching n-grams, hypothesis n-grams, reference n-grams); whitespace is ignored."""
    hyp, ref = "".join(hypothesis.split()), "".join(reference.split())
    stats = []
    for n in range(1, max_n + 1):
        h, r = _ngrams(hyp, n), _ngrams(ref, n)
        stats.append((sum((h & r).values()), sum(h.values()), sum(r.values())))
    return stats


def corpus_chrf(pairs: Iterable[tuple[str, str]], max_n: int = 6, beta: float = 2.0) -> float:
    """chrF (Popović 2015) as sacrebleu 2.x computes it by default: statistics summed over segments, then
    precision/recall averaged over the effective n-gram orders, F-beta with beta=2, whitespace ignored."""
    totals = [[0, 0, 0] for _ in range(max_n)]
    for hypothesis, reference in pairs:
        for i, (m, h, r) in enumerate(chrf_statistics(hypothesis, reference, max_n)):
            totals[i][0] += m
            totals[i][1] += h
            totals[i][2] += r
    # average over the orders both sides have n-grams of (sacrebleu 2.x's default "effective order")
    effective = [(m / h, m / r) for m, h, r in totals if h and r]
    if not effective:
        return 0.0
    precision = sum(x for x, _ in effective) / len(effective)
    recall = sum(y for _, y in effective) / len(effective)
    if precision + recall == 0:
        return 0.0
    return 100 * (1 + beta**2) * precision * recall / (beta**2 * precision + recall)


def chapter_pairs(root: Path) -> list[tuple[str, Path, Path]]:
    """(chapter id, classical source, modern target) for every chapter that has both files."""
    pairs = []
    for target in sorted((root / "双语数据").rglob("target.txt")):
        chapter = target.parent.relative_to(root / "双语数据")
        source = root / "古文原文" / chapter / "text.txt"
        if source.exists():
            pairs.append((str(chapter), source, target))
    return pairs


def sample(pairs: list[tuple[str, Path, Path]], k: int, max_chars: int) -> list[tuple[str, Path, Path]]:
    """A deterministic sample (hash order) of chapters no longer than ``max_chars`` of source."""
    ordered = sorted(pairs, key=lambda p: hashlib.sha256(p[0].encode()).hexdigest())
    picked = [p for p in ordered if len(p[1].read_text(encoding="utf-8")) <= max_chars]
    return picked[:k]


def particle_ratio(text: str, particles: str) -> float:
    """Python twin of stages.classical_particle_ratio (the Spark column), for this offline measurement."""
    import re

    compact = re.sub(r"\s+", "", text)
    return sum(ch in particles for ch in compact) / len(compact) if compact else 0.0


def classical_detection(root: Path, threshold: float) -> dict[str, float]:
    """Share of classical sources flagged and of modern references not flagged, over all chapter pairs."""
    from medcorpus.llm.tasks import CLASSICAL_PARTICLES

    pairs = chapter_pairs(root)
    src = [particle_ratio(s.read_text(encoding="utf-8"), CLASSICAL_PARTICLES) for _, s, _ in pairs]
    tgt = [particle_ratio(t.read_text(encoding="utf-8"), CLASSICAL_PARTICLES) for _, _, t in pairs]
    return {
        "chapter_pairs": len(pairs),
        "threshold": threshold,
        "classical_flagged": round(sum(x >= threshold for x in src) / len(pairs), 4),
        "modern_not_flagged": round(sum(x < threshold for x in tgt) / len(pairs), 4),
    }


def translate_chapter(client, template, text: str) -> tuple[str, int]:
    """Paragraph by paragraph, as the stage does; returns (translation, failed paragraphs)."""
    from medcorpus.llm.worker import answer_item

    out, failed = [], 0
    for i, paragraph in enumerate(p.strip() for p in text.splitlines()):
        if not paragraph:
            continue
        answer = answer_item(client, template, f"p{i}", {"text": paragraph}, None, {})
        if answer.ok and answer.parsed is not None:
            out.append(json.loads(answer.parsed)["translation"])
        else:
            failed += 1
            out.append(paragraph)
    return "\n".join(out), failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(DEFAULT_ROOT))
    parser.add_argument("--chapters", type=int, default=20)
    parser.add_argument("--max-chars", type=int, default=3000, help="skip longer source chapters")
    parser.add_argument("--copy-baseline", action="store_true", help="score the source itself (no model)")
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--classical-detection", action="store_true",
                        help="measure llm.translate.classical_particle_ratio on all chapter pairs instead")
    args = parser.parse_args(argv)
    if args.classical_detection:
        threshold = load_config(args.config, args.set).llm.translate.classical_particle_ratio
        print(json.dumps(classical_detection(Path(args.root), threshold)))
        return 0
    chapters = sample(chapter_pairs(Path(args.root)), args.chapters, args.max_chars)
    if not chapters:
        print(f"no chapters under {args.root}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    scored, failed = [], 0
    if args.copy_baseline:
        scored = [(s.read_text(encoding="utf-8"), t.read_text(encoding="utf-8")) for _, s, t in chapters]
    else:
        from medcorpus.llm.client import ChatClient, ClientSettings, Secret
        from medcorpus.llm.prompts import load_template, prompt_dir

        config = load_config(args.config, args.set)
        client = ChatClient(ClientSettings.from_config(config.llm), Secret(os.environ.get(config.llm.api_key_env)))
        template = load_template(config.llm.translate.template, prompt_dir(config.llm.prompt_dir))
        for _, source, target in chapters:
            hypothesis, bad = translate_chapter(client, template, source.read_text(encoding="utf-8"))
            failed += bad
            scored.append((hypothesis, target.read_text(encoding="utf-8")))
    result = {
        "chapters": len(chapters),
        "source_chars": sum(len(s.read_text(encoding="utf-8")) for _, s, _ in chapters),
        "chrF": round(corpus_chrf(scored), 2),
        "failed_paragraphs": failed,
        "mode": "copy-baseline" if args.copy_baseline else "model",
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
