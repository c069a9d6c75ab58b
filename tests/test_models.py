"""The shipped models (models/domain, models/rater; built by `make models`): they load by default with no
training step, refuse a changed file, score medical vs general text and rank originals above degraded
twins. No Spark, no ../shared/data: these run on a fresh clone."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from medcorpus.classify.degrade import DEGRADATIONS, degrade
from medcorpus.classify.fluency import CharLM
from medcorpus.classify.rater import QualityRater
from medcorpus.classify.scoring import backend_class, prepare_backend
from medcorpus.classify.textmodel import DOMAIN_KIND, RATER_KIND, ModelError, load_artifact
from medcorpus.core.config import REPO_ROOT, load_config

MODELS = REPO_ROOT / "models"

# original texts written for this test (none is in the training data): a clinical note, a TCM passage, a
# consumer-health answer, general prose in both languages
ORIGINALS = [
    "患者男，62岁，因反复胸闷气短三年、加重一周入院。三年前无明显诱因出现活动后胸闷，休息后可缓解。"
    "一周前受凉后症状加重，夜间不能平卧，伴咳嗽、咳白色泡沫痰。查体：血压150/90mmHg，双肺底可闻及湿啰音。"
    "心脏彩超提示左心室扩大，射血分数38%。诊断为慢性心力衰竭急性加重。给予利尿、扩血管及强心治疗后症状明显缓解。"
    "出院后嘱低盐饮食，规律服药，每月门诊复查。",
    "脾胃虚弱者，饮食减少，食后腹胀，大便溏薄，面色萎黄，四肢乏力。治宜健脾益气，方用参苓白术散加减。"
    "若兼见脘腹冷痛、喜温喜按者，为脾阳不足，可加干姜、肉桂以温中散寒。若食积不化，嗳腐吞酸，加山楂、神曲消食导滞。"
    "服药期间忌食生冷油腻之物，并宜调畅情志，劳逸结合。",
    "High blood pressure often has no symptoms, so many people do not know they have it. It is checked with a cuff "
    "around the upper arm. A reading of 130/80 or higher on repeated visits usually means hypertension. Lifestyle "
    "changes come first: less salt, regular exercise, limited alcohol and a healthy weight. If the pressure stays "
    "high, your doctor may prescribe medicine such as a diuretic or an ACE inhibitor. Keep taking it even when you "
    "feel well, and check your pressure at home.",
    "The library opened its new reading room on Saturday morning. Families queued along the river path before the "
    "doors opened. Inside, the shelves were arranged by theme rather than by author. The head librarian said the "
    "change had been requested by readers for years. A small café now occupies the old map room. By noon, every "
    "table by the windows was taken, and the children's corner was full of noise and laughter.",
    "周末的早晨，老街上的集市格外热闹。卖菜的摊贩早早摆好了新鲜的青菜和瓜果，吆喝声此起彼伏。"
    "街角的早点铺飘出油条和豆浆的香味，排队的人一直排到了路口。几个孩子围着捏面人的老艺人看得入迷。"
    "太阳升高以后，人渐渐多了起来，整条街都变得拥挤而有生气。",
]


@pytest.fixture(scope="module")
def shipped():
    cfg = load_config().classify
    backend = backend_class(cfg.backend)
    return backend.load(prepare_backend(cfg))


def test_default_config_points_at_the_shipped_models_and_never_trains():
    cfg = load_config().classify
    assert cfg.train_if_missing is False
    for kind, folder in ((DOMAIN_KIND, cfg.domain_model_dir), (RATER_KIND, cfg.rater_model_dir)):
        meta = json.loads((REPO_ROOT / folder / "model.json").read_text(encoding="utf-8"))
        assert meta["kind"] == kind
        assert meta["training_data"]["version"].startswith("shared_data:")
        assert "validation" in meta and meta["checksum"]
    # every artifact is small enough to ship in the repo
    assert sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file()) < 8 * 1024 * 1024


def test_ensure_default_models_does_nothing_when_the_shipped_models_are_there(monkeypatch):
    from medcorpus.classify import training

    monkeypatch.setattr(training, "labelled_rows", lambda *a, **k: pytest.fail("a training step ran"))
    training.ensure_default_models(SimpleNamespace(config=load_config()))


def test_a_changed_shipped_model_is_refused(tmp_path):
    copy = tmp_path / "domain"
    shutil.copytree(MODELS / "domain", copy)
    arrays = dict(np.load(copy / "model.npz"))
    arrays["domain_coef"] = arrays["domain_coef"] * 1.01
    np.savez_compressed(copy / "model.npz", **arrays)
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_artifact(copy, DOMAIN_KIND)
    with pytest.raises(ModelError, match="pinned"):
        load_artifact(MODELS / "rater", RATER_KIND, expected_checksum="0" * 64)


def test_shipped_domain_model_separates_medical_from_general(shipped):
    scores = shipped.score(ORIGINALS)
    assert list(scores.p_medical >= 0.5) == [True, True, True, False, False]
    tcm = dict(zip(scores.subdomains, scores.subdomain_probs[1]))
    assert max(tcm, key=tcm.get) == "tcm"


@pytest.mark.parametrize("kind", sorted(set(DEGRADATIONS) - {"shuffled_sentences"}))
def test_shipped_rater_ranks_each_original_above_its_twin(shipped, kind):
    originals = ORIGINALS
    twins = [degrade(t, kind, 7) for t in originals]
    pairs = [(o, t) for o, t in zip(originals, twins) if o != t]
    assert pairs
    q_orig = shipped.rater.predict([o for o, _ in pairs])
    q_twin = shipped.rater.predict([t for _, t in pairs])
    # at most one miss: a twin can differ from its original by a single character (one é read as Ã©)
    assert (q_orig > q_twin).sum() >= len(pairs) - 1, (kind, q_orig, q_twin)
    assert q_orig.mean() > q_twin.mean() + 0.3, (kind, q_orig, q_twin)


def test_rater_scores_do_not_follow_length():
    """The same text cut after 3, 4, ... sentences (each a clean ending): the score must not climb with length."""
    rater = load_artifact(MODELS / "rater", RATER_KIND)
    assert isinstance(rater, QualityRater)
    sentences = [s + "." for s in ORIGINALS[2].split(". ") if s]
    prefixes = [" ".join(sentences[:n]).replace("..", ".") for n in range(3, len(sentences) + 1)]
    q = rater.predict(prefixes)
    assert float(np.ptp(q)) < 1.0, q


def test_fluency_model_prefers_real_text_to_garbled_and_round_trips():
    texts = [t for t in ORIGINALS for _ in range(3)]
    lm = CharLM.train(texts, order=3, bits=12)
    real, _ = lm.score(ORIGINALS)
    garbled, _ = lm.score([degrade(t, "garbled_order", 1) for t in ORIGINALS])
    assert (real > garbled).all()
    again = CharLM.from_arrays(lm.arrays())
    assert np.array_equal(again.score(ORIGINALS)[0], real)
    assert lm.end_logprobs(["结束。", "结束的"])[0] > lm.end_logprobs(["结束。", "结束的"])[1]
