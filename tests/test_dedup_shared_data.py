"""Dedup quality on real-corpus samples (Toyhom, Huatuo, MedQuAD template families, every other shared source,
planted edited copies):
verified duplicate pairs vs the brute-force exact Jaccard of the same shingles, precision and recall >= 0.95."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medcorpus.core.config import DedupConfig
from medcorpus.dedup.minhash import dedup_documents

from .conftest import shared_data_path

pytestmark = pytest.mark.shared_data
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


@pytest.mark.parametrize("sample", ["core", "mixed"])
def test_pair_precision_and_recall_on_real_sample(spark, sample):
    """core: the four medical sources of the bench's core sample; mixed: a few hundred of those plus ~300k
    characters from every other source (reviews, TCM books, classical prose, laws, English corpora ...)."""
    from dedup_corpus import build_corpus, build_mixed_corpus, lang_of, pair_scores, true_pairs

    root = shared_data_path()
    cfg = DedupConfig()
    if sample == "core":
        corpus = build_corpus(root, 700, seed=3)
    else:
        corpus = build_mixed_corpus(root, 300_000, core_docs=200, seed=3)
    truth = true_pairs(corpus, cfg)
    assert len(truth) > 30  # the sample holds real and planted near duplicates
    rows = [(d, s, t, lang_of(t), len(t)) for d, s, t in corpus]
    docs = spark.createDataFrame(rows, "doc_id string, source string, text string, lang string, char_count long")
    result = dedup_documents(docs, cfg)
    predicted = {(r["a"], r["b"]) for r in result.edges.select("a", "b").collect()}
    scores = pair_scores(predicted, truth)
    assert scores["precision"] >= 0.95 and scores["recall"] >= 0.95, scores
    removed = result.assignments.filter("not is_keeper").count()
    assert 0 < removed < len(corpus) // 2
