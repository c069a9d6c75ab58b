"""ConFilter on the real dialogues without Spark (a quick cross-check of the ``sft`` stage's drops).

    .venv/bin/python bench/measure_confilter.py [--train-rows 20000] [--examples 10]

Imports every source of configs/real_data.yaml with the project's importers, trains the same character
3-gram + cache model on a seeded random sample of all records (the stage samples by xxhash64 order
instead, so the model differs slightly), scores the multi-turn dialogues and prints the CF quantiles, the
drops per bound and example dialogues from both ends.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))


def main() -> None:
    from medcorpus.core.config import load_config
    from medcorpus.datasets.confilter import BOS, CharNgramLM, dialogue_cf
    from medcorpus.readers.formats import importer

    parser = argparse.ArgumentParser()
    parser.add_argument("--train-rows", type=int, default=None)
    parser.add_argument("--examples", type=int, default=10)
    args = parser.parse_args()
    cfg = load_config(REPO / "configs" / "real_data.yaml").datasets
    records = []
    for src in cfg.sft_sources:
        path = Path(src.path) if Path(src.path).is_absolute() else REPO / src.path
        records += [r for r in importer(src.format)(src.name, path, subjects=tuple(src.subjects)) if not r["error"]]
    rng = random.Random(cfg.seed)
    train = rng.sample(records, min(len(records), args.train_rows or cfg.confilter_train_rows))
    order = cfg.confilter_ngram_order
    counts: Counter[str] = Counter()
    for r in train:
        padded = BOS * (order - 1) + "\n".join(m["content"] for m in r["messages"])[: cfg.confilter_train_chars]
        for k in range(1, order + 1):
            for i in range(order - k, len(padded) - k + 1):
                counts[padded[i:i + k]] += 1
    kept = dict(sorted(((g, n) for g, n in counts.items() if n >= cfg.confilter_min_count),
                       key=lambda x: (-x[1], x[0]))[: cfg.confilter_max_ngrams])
    lm = CharNgramLM(kept, order, cfg.confilter_cache_weight)
    scored = []
    for r in records:
        if r["type"] != "multi_turn":
            continue
        cf = dialogue_cf(lm, r["messages"], cfg.confilter_max_turn_chars)
        if cf is not None:
            scored.append((cf, r))
    scored.sort(key=lambda x: x[0])
    cfs = [c for c, _ in scored]
    q = lambda p: round(cfs[min(len(cfs) - 1, int(p * len(cfs)))], 3)  # noqa: E731
    low = [x for x in scored if x[0] < cfg.confilter_lower]
    high = [x for x in scored if x[0] > cfg.confilter_upper]
    by_source = Counter(r["source"] for _, r in scored)
    dropped_by_source = Counter(r["source"] for _, r in low + high)
    show = lambda xs: [{"source": r["source"], "cf": round(c, 3),  # noqa: E731
                        "turns": [f"{m['role']}: {m['content'][:100]}" for m in r["messages"][:4]]} for c, r in xs]
    half = args.examples // 2
    print(json.dumps({
        "model_ngrams": len(kept), "dialogues_scored": len(scored), "by_source": by_source,
        "cf_quantiles": {p: q(p) for p in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)},
        "bounds": [cfg.confilter_lower, cfg.confilter_upper],
        "dropped_low": len(low), "dropped_high": len(high), "dropped_by_source": dropped_by_source,
        "examples_high": show(high[::-1][:half]), "examples_low": show(low[:half]),
    }, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
