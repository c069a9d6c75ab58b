"""Classification throughput on real data: docs/s and chars/s, total and per core.

Texts: real documents from ../shared/data through the labelled builder (several Chinese and English
sources, medical and general). Model: the shipped default classifier + rater (models/). Two figures:

* ``spark``: the classify scoring pass (mapInArrow, broadcast model) over a cached DataFrame, written to
  the ``noop`` sink; per core = total / Spark's default parallelism. It also reports the model loads
  counted by the accumulators against the Arrow batches: loads == Python workers, not batches.
* ``in_process``: featurise + predict in one Python process (one core), no Spark overhead.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

SOURCES = ("huatuo", "toyhom_dialogue", "pubmedqa", "hotel_reviews", "laws", "cmtmedqa", "news_msra", "brown")


def _texts(quick: bool) -> list[str]:
    from medcorpus.classify.labelled import BuildParams, build_from_shared_data
    from medcorpus.core.config import REPO_ROOT, NormalizeConfig

    root = REPO_ROOT.parent / "shared" / "data"
    if not root.exists():
        raise SystemExit(f"bench_classify needs the real data at {root}")
    cap = 150 if quick else 1000
    rows = build_from_shared_data(Path(root), BuildParams(train_cap=cap, validation_cap=cap // 3, synthetic_percent=0),
                                  NormalizeConfig(), SOURCES)
    return [r.text for r in rows if r.source in SOURCES]


def run(spark: Any, args: Any) -> dict[str, Any]:

    from medcorpus.classify.scoring import prepare_backend, score_documents
    from medcorpus.classify.textmodel import Featurizer
    from medcorpus.classify.training import ensure_default_models
    from medcorpus.core.config import load_config
    from medcorpus.core.pipeline import RunContext

    quick = bool(getattr(args, "quick", False))
    texts = _texts(quick)
    chars = sum(len(t) for t in texts)
    tmp = Path(tempfile.mkdtemp(prefix="bench_classify_"))
    config = load_config(overrides=[f"warehouse={tmp / 'wh'}"])
    ensure_default_models(RunContext.create(spark, config))
    prepared = prepare_backend(config.classify)
    cores = spark.sparkContext.defaultParallelism

    # in-process: one core
    backend = __import__("medcorpus.classify.scoring", fromlist=["HashedLinearBackend"]).HashedLinearBackend.load(prepared)
    t0 = time.perf_counter()
    for start in range(0, len(texts), config.classify.batch_rows):
        backend.score(texts[start: start + config.classify.batch_rows])
    in_proc = time.perf_counter() - t0
    featurizer = Featurizer(backend.domain.spec)
    t0 = time.perf_counter()
    featurizer.transform(texts[:2000])
    feat_share = (time.perf_counter() - t0) / max(1e-9, in_proc * min(1.0, 2000 / len(texts)))

    # Spark: broadcast model, mapInArrow
    df = spark.createDataFrame([(f"b{i}", t) for i, t in enumerate(texts)], "doc_id string, text string")
    df = df.repartition(cores * 2).cache()
    df.count()
    sc = spark.sparkContext
    best = None
    loads = batches = 0
    for _ in range(1 if quick else 2):
        accs = (sc.accumulator(0), sc.accumulator(0))
        t0 = time.perf_counter()
        score_documents(df, prepared, config.classify, accumulators=accs).select(
            "doc_id", "p_medical", "quality_score").write.format("noop").mode("overwrite").save()
        elapsed = time.perf_counter() - t0
        best = elapsed if best is None else min(best, elapsed)
        loads, batches = accs[0].value, accs[1].value
    df.unpersist()
    medical = None
    return {
        "docs": len(texts),
        "chars": chars,
        "sources": list(SOURCES),
        "cores": cores,
        "spark": {
            "seconds": round(best, 2),
            "docs_per_s": round(len(texts) / best, 1),
            "chars_per_s": round(chars / best),
            "docs_per_s_per_core": round(len(texts) / best / cores, 1),
            "chars_per_s_per_core": round(chars / best / cores),
            "model_loads_last_pass": loads,
            "arrow_batches_last_pass": batches,
        },
        "in_process_one_core": {
            "seconds": round(in_proc, 2),
            "docs_per_s": round(len(texts) / in_proc, 1),
            "chars_per_s": round(chars / in_proc),
            "featurise_share": round(min(1.0, feat_share), 2),
        },
        "model": {"classifier": prepared.classifier_version, "rater": prepared.rater_version,
                  "max_chars_featurised": config.classify.max_chars},
        "note": medical or "chars counts whole documents; only the first classify.max_chars of each are featurised",
    }
