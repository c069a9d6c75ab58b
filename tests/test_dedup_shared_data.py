"""Dedup quality on a real-corpus sample (Toyhom, Huatuo, MedQuAD template families, planted edited copies):
verified duplicate pairs vs the brute-force exact Jaccard of the same shingles, precision and recall >= 0.95."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medcorpus.config import DedupConfig
from medcorpus.dedup import dedup_documents

from .conftest import shared_data_path

pytestmark = pytest.mark.shared_data
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_pair_precision_and_recall_on_real_sample(spark):
    from dedup_corpus import build_corpus, lang_of, pair_scores, true_pairs

    root = shared_data_path()
    cfg = DedupConfig()
    corpus = build_corpus(root, 700, seed=3)
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
