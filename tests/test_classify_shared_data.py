"""The default classifier and rater measured on the real sources, validated on sources/files training never saw.

``pytest -s -m shared_data tests/test_classify_shared_data.py`` prints the figures. The full-size measurement
(default caps, the numbers quoted in the issue) is the CLI: ``medcorpus build-labelled`` then
``medcorpus train-classifier`` / ``train-rater`` (see docs/classify.md). This test uses smaller caps.
"""

from __future__ import annotations

import json

import pytest

from medcorpus.classify.labelled import BuildParams, build_from_shared_data
from medcorpus.classify.training import fit_domain, rows_frame
from medcorpus.core.config import ClassifyConfig, NormalizeConfig
from tests.conftest import shared_data_path

pytestmark = pytest.mark.shared_data


def test_default_models_on_held_out_real_data():
    root = shared_data_path()
    cfg = ClassifyConfig()
    params = BuildParams(train_cap=400, validation_cap=150, validation_percent=cfg.validation_percent,
                         holdout_sources=cfg.holdout_sources, synthetic_percent=cfg.synthetic_percent)
    frame = rows_frame(build_from_shared_data(root, params, NormalizeConfig()))
    train, validation = frame[frame["split"] == "train"], frame[frame["split"] == "validation"]

    # validation rows come from files (or whole sources) that training never saw
    train_groups = set(zip(train["source"], train["group"]))
    assert not any((s, g) in train_groups for s, g in zip(validation["source"], validation["group"]))
    for held in cfg.holdout_sources:
        assert held not in set(train["source"]) and held in set(validation["source"])

    domain, dm = fit_domain(train, validation, cfg)
    print(json.dumps({"domain": dm["domain"], "subdomain_accuracy": dm["subdomain"]["accuracy"],
                      "subdomain_cm": dm["subdomain"]["confusion_matrix"], "by_source": dm["domain_accuracy_by_source"]},
                     indent=1))
    assert dm["domain"]["per_class"]["medical"]["f1"] >= 0.95
    assert dm["domain"]["per_class"]["general"]["f1"] >= 0.95
    assert dm["subdomain"]["accuracy"] >= 0.8
    # the held-out general sources are not called medical (English web text is the weak spot: 94% here)
    for held, floor in (("kdconv", 0.97), ("thucnews", 0.97), ("nltk_webtext", 0.9)):
        assert dm["domain_accuracy_by_source"][held] >= floor, held


def test_shipped_rater_ranks_real_documents_above_their_degraded_twins():
    """Real documents of every source (the validation files of the labelled builder) against their twins."""
    import numpy as np

    from medcorpus.classify.degrade import DEGRADATIONS, degrade, eligible
    from medcorpus.classify.rater import ends_complete
    from medcorpus.classify.scoring import resolve
    from medcorpus.classify.textmodel import RATER_KIND, load_artifact

    root = shared_data_path()
    rows = build_from_shared_data(root, BuildParams(train_cap=0, validation_cap=20, synthetic_percent=0),
                                  NormalizeConfig())
    texts = [r.text for r in rows if not r.synthetic and eligible(r.text)]
    assert len(texts) > 150
    rater = load_artifact(resolve(ClassifyConfig().rater_model_dir), RATER_KIND)
    q = rater.predict(texts)
    complete = np.array([ends_complete(t) for t in texts])
    wins = {}
    for kind in DEGRADATIONS:
        twins = [degrade(t, kind, 11) for t in texts]
        keep = np.array([a != b for a, b in zip(texts, twins)])
        won = q > rater.predict(twins)
        wins[kind] = float(won[keep].mean())
        if kind == "truncated":
            wins["truncated_complete_originals"] = float(won[keep & complete].mean())
    print(json.dumps(wins, indent=1))
    # a cut mid-sentence, where the original ends at a sentence end (README: COMPLETE_ORIGINAL_ONLY)
    assert wins["truncated_complete_originals"] >= 0.93, wins
    robust = ("spam_injected", "keyword_stuffing", "ocr_noise", "mojibake", "boilerplate_menu", "garbled_order")
    assert all(wins[k] >= 0.93 for k in robust), wins
    # the weak ones (see README, Extraction quality): lost order and clean-looking cuts
    assert wins["repeated_paragraphs"] >= 0.85 and wins["truncated"] >= 0.8 and wins["shuffled_sentences"] >= 0.55, wins


def test_cmmlu_subjects_give_medical_and_general_exam_documents_and_leave_the_undecided_out():
    from medcorpus.classify.labelled import CMMLU_MEDICAL, CMMLU_UNDECIDED, SOURCES

    root = shared_data_path()
    by_name = {s.name: s for s in SOURCES}
    medical = list(by_name["cmmlu_medical"].reader(root))
    general = list(by_name["cmmlu_general"].reader(root))
    assert {g for g, _ in medical} == set(CMMLU_MEDICAL)
    subjects = {g for g, _ in general}
    assert len(subjects) > 40 and not subjects & (CMMLU_MEDICAL | CMMLU_UNDECIDED)
    assert "high_school_chemistry" in subjects and "agronomy" in subjects
    assert all(doc.count("\nA. ") >= 1 for _, doc in medical[:20] + general[:20])
