"""The shipped models (models/domain, models/rater; built by `make models`): they load by default with no
training step, refuse a changed file, score medical vs general text and rank originals above degraded
twins. No Spark, no ../shared/data: these run on a fresh clone."""

from __future__ import annotations

import json
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from medcorpus.classify.degrade import DEGRADATIONS, degrade
from medcorpus.classify.fluency import CharLM
from medcorpus.classify.rater import (
    RATER_FEATURES,
    QualityRater,
    anaphoric_start,
    bracket_breaks,
    coherence,
    cohesion,
    dangling_labels,
    ends_complete,
    lead,
    line_end_typicality,
    question_position,
    repetition,
    restated_once,
    sentence_units,
    soft_clip,
)
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


# ---------------------------------------------------------------------------------------------------
# qrater-v2 signals (still in v3)
# ---------------------------------------------------------------------------------------------------
QUESTION = "I have had a dry cough and a mild fever for three days, and my chest feels tight. Could this be covid?"
ANSWER = ("In brief: probably a common cold. Rest, drink plenty of fluids and check your temperature twice a day. "
          "If you become short of breath or the fever lasts beyond five days, call your doctor or get tested.")


def test_a_question_restated_before_its_answer_is_not_repetition_but_a_pasted_block_is():
    restated = f"Description\n{QUESTION}\nDialogue\nPatient:\n{QUESTION}\nDoctor:\n{ANSWER}"
    assert restated_once(restated) == f"Description\n{QUESTION}\nDialogue\nPatient:\nDoctor:\n{ANSWER}"
    tokens = lambda t: [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'\-]*", t)]  # noqa: E731
    assert repetition(restated, False, tokens(restated)) == (0.0, 0.0)
    # the same passage pasted again at the end (no new text after it), or pasted three times, still counts
    pasted = f"{QUESTION}\n{ANSWER}\n{QUESTION}"
    assert restated_once(pasted) == pasted and repetition(pasted, False, tokens(pasted))[0] > 0.3
    thrice = f"{QUESTION}\n{QUESTION}\n{ANSWER}\n{QUESTION}"
    assert restated_once(thrice) == thrice and repetition(thrice, False, tokens(thrice))[1] > 0.3


def test_bracket_breaks_see_quotes_split_by_reordering_and_a_cut_inside_brackets():
    assert bracket_breaks("他说：“你好。”然后（笑着）走了。") == 0.0
    assert bracket_breaks("”然后（笑着）走了。他说：“你好。") > 0.5  # the two halves of a quote swapped
    assert bracket_breaks("Take the tablets (two a day, with") > 0.5  # cut inside the brackets
    assert bracket_breaks("No brackets at all.") == 0.0


def test_order_signals_are_undefined_for_short_texts_and_the_rater_imputes_them():
    short = "Wash your hands often. Stay home if you feel ill."
    units = sentence_units(short, False)
    assert np.isnan(cohesion(units)) and np.isnan(coherence(units)) and np.isnan(lead(units))
    rater = load_artifact(MODELS / "rater", RATER_KIND)
    assert isinstance(rater, QualityRater)
    feats = rater.features([short])[0]
    assert not np.isnan(feats).any()
    col = RATER_FEATURES.index("coherence")
    assert feats[col] == pytest.approx(rater.stats.impute[1, col])


def test_coherence_is_higher_when_sentences_on_one_subject_stand_together():
    text = ("Aspirin thins the blood. Aspirin also eases pain and fever. Taken daily, aspirin can upset the stomach. "
            "Tomatoes grow best in full summer sun. Tomatoes need water every summer evening. Green tomatoes ripen "
            "slowly in shade.")
    units = sentence_units(text, False)
    assert len(units) == 6
    interleaved = [units[i] for i in (0, 3, 1, 4, 2, 5)]
    assert coherence(units) > 0.1 and coherence(interleaved) < 0


def test_word_end_probability_sees_a_word_cut_in_half():
    lm = CharLM.train([t for t in ORIGINALS for _ in range(3)], order=3, bits=12)
    whole, cut = lm.word_end_logprobs(["check your pressure at home.", "check your pressure at ho"])
    assert whole > cut


def test_shipped_rater_does_not_mark_down_a_restated_question():
    restated = f"Description\n{QUESTION}\nDialogue\nPatient:\n{QUESTION}\nDoctor:\n{ANSWER}"
    once = f"Description\n{QUESTION}\nDialogue\nDoctor:\n{ANSWER}"
    rater = load_artifact(MODELS / "rater", RATER_KIND)
    q = rater.predict([restated, once])
    assert abs(q[0] - q[1]) < 0.3, q


def test_the_readme_quotes_the_shipped_models_and_their_figures_render_from_model_json():
    from medcorpus.classify.modelbuild import markdown

    text = markdown(MODELS)
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for kind in ("domain", "rater"):
        version = json.loads((MODELS / kind / "model.json").read_text(encoding="utf-8"))["model_version"]
        assert version in text and version in readme, version
    for kind in DEGRADATIONS:
        assert f"| {kind} |" in text


def test_scores_stay_in_0_5_and_keep_their_order_near_the_bounds():
    z = np.linspace(-6.0, 11.0, 400)
    q = soft_clip(z)
    assert q.min() >= 0.0 and q.max() <= 5.0
    assert (np.diff(q) > 0).all()  # no two texts tie at a bound
    mid = (z >= 0.5) & (z <= 4.5)
    assert np.allclose(q[mid], z[mid])  # the scale is unchanged in the middle (the 2.5 floor means the same)


def test_question_position_sees_a_question_moved_after_its_answer():
    qa = "Can I take ibuprofen with a cold? Yes, for a few days. Take it with food. Stop if your stomach hurts."
    moved = "Yes, for a few days. Take it with food. Can I take ibuprofen with a cold? Stop if your stomach hurts."
    assert question_position(qa) == 0.0 < question_position(moved)
    assert np.isnan(question_position("No question here. None at all. Really none here. Nope, none."))


def test_a_signal_only_latin_text_has_adds_nothing_between_scripts():
    rater = load_artifact(MODELS / "rater", RATER_KIND)
    assert isinstance(rater, QualityRater)
    col = RATER_FEATURES.index("word_complete")
    f = rater.features([ORIGINALS[0], ORIGINALS[2], ORIGINALS[2][:-3]])  # Chinese; English; English cut mid-word
    assert f[0, col] == 0.0
    assert f[1, col] > 0.0 > f[2, col]


# ---------------------------------------------------------------------------------------------------
# qrater-v3 signals
# ---------------------------------------------------------------------------------------------------
def test_label_lines_left_without_a_turn_and_a_back_referring_opening_mark_lost_order():
    dialogue = "Patient:\nI have had a cough for a week.\nDoctor:\nRest and drink plenty of fluids."
    assert dangling_labels(dialogue) == 0.0
    assert dangling_labels("Patient:\nDoctor:\nI have had a cough for a week.\nRest and drink fluids.") == 0.5
    assert dangling_labels("病人:\n咳嗽一周了。\n医生:") == 0.5  # the doctor's label ends the text
    assert np.isnan(dangling_labels("No label lines here.\nNone at all."))
    assert anaphoric_start("They said it would rain.") == 1.0
    assert anaphoric_start("Aspirin thins the blood. It also eases pain.") == 0.0
    assert anaphoric_start("这种药饭后服用。") == 1.0 and anaphoric_start("阿司匹林饭后服用。") == 0.0


def test_a_last_line_cut_mid_sentence_ends_unlike_the_other_lines():
    lines = ["What is high blood pressure ?", "How is high blood pressure diagnosed ?",
             "What are the treatments for high blood pressure ?", "Who is at risk for high blood pressure ?"]
    lm = CharLM.train(["\n".join(lines)] * 5 + ORIGINALS * 3, order=3, bits=14)
    whole = "\n".join(lines + ["What to do for high blood pressure ?"])
    cut = "\n".join(lines + ["What to do for high blo"])
    typical, atypical, short = line_end_typicality([whole, cut, "One line only."], lm)
    assert typical > atypical and np.isnan(short)
    assert ends_complete(whole) and not ends_complete(cut)


def test_english_function_words_carry_no_domain_feature_and_english_ngrams_are_weighted():
    """hngram-v3: "the"/"was" carried register (past-tense narration) rather than topic, so they are dropped;
    the English n-gram block is scaled by ``en_weight`` after the L2 norm, the Chinese block is not."""
    from medcorpus.classify.textmodel import FeatureSpec, Featurizer

    spec = FeatureSpec()
    fz = Featurizer(spec)
    X = fz.transform(["The patient was treated with the drug.", "patient treated drug",
                      "患者服药后症状缓解", "The weather was fine."]).toarray()
    hashed = X[:, : spec.n_hashed]
    assert np.array_equal(hashed[0] > 0, hashed[1] > 0)
    assert np.linalg.norm(hashed[1]) == pytest.approx(spec.en_weight, rel=1e-5)
    assert np.linalg.norm(hashed[2]) == pytest.approx(1.0, rel=1e-5)
    assert spec.en_weight < 1.0
    # the hand-written vocabulary: clinical-research and anatomy words count, everyday words do not
    from medcorpus.classify.textmodel import domain_signals

    assert domain_signals("Appendectomy and infertility in a retrospective cohort of patients")[0] > 0
    assert domain_signals("The weather was fine and the odds were good")[0] == 0


def test_a_feature_spec_from_an_older_artifact_differs_from_the_current_one():
    from medcorpus.classify.textmodel import FeatureSpec

    old = {"version": "hngram-v2", "hash_bits": 18, "max_chars": 3000, "zh_ngrams": [1, 2], "en_ngrams": [1, 2]}
    assert FeatureSpec.from_dict(old) != FeatureSpec()
    current = FeatureSpec().as_dict()
    assert FeatureSpec.from_dict(current) == FeatureSpec()
    with pytest.raises(ValueError, match="stop words"):
        FeatureSpec.from_dict({**current, "en_stop_words": ["the", "of"]})


def test_the_english_vocabulary_lists_each_word_once():
    from medcorpus.classify.textmodel import _vocabulary

    words = _vocabulary("medical_terms.en.txt")
    assert len(words) == len(set(words)) and len(words) > 900


# Boundary cases of docs/classify.md, written for this test (no source in ../shared/data holds them): health law,
# biology and chemistry abstracts and Song ci are general; a clinical abstract and a consumer question are medical.
BOUNDARY = {
 "law_drug": "第一条 为了加强药品管理，保证药品质量，保障公众用药安全和合法权益，保护和促进公众健康，制定本法。第二条 在中华人民共和国境内从事药品研制、生产、经营、使用和监督管理活动，适用本法。本法所称药品，是指用于预防、治疗、诊断人的疾病，有目的地调节人的生理机能并规定有适应症或者功能主治、用法和用量的物质。",  # noqa: E501
 "law_health": "第三十四条 国家建立健全由基层医疗卫生机构、医院、专业公共卫生机构等组成的城乡全覆盖、功能互补、连续协同的医疗卫生服务体系。国家加强县级医院、乡镇卫生院、村卫生室、社区卫生服务中心（站）和专业公共卫生机构等的建设，建立健全农村医疗卫生服务网络和城市社区卫生服务网络。",  # noqa: E501
 "law_infect": "第三十条 疾病预防控制机构、医疗机构和采供血机构及其执行职务的人员发现本法规定的传染病疫情或者发现其他传染病暴发、流行以及突发原因不明的传染病时，应当遵循疫情报告属地管理原则，按照国务院规定的或者国务院卫生行政部门规定的内容、程序、方式和时限报告。",  # noqa: E501
 "title3": "央行宣布下调存款准备金率0.5个百分点",
 "songci": "明月几时有？把酒问青天。不知天上宫阙，今夕是何年。我欲乘风归去，又恐琼楼玉宇，高处不胜寒。起舞弄清影，何似在人间。",
 "movie": "A slow, beautiful film about grief. The performances are restrained and the cinematography is gorgeous, though the third act drags and the ending feels unearned.",  # noqa: E501
 "movie2": "I went in expecting a dumb action flick and got exactly that. Explosions, car chases, one-liners. Fun for a Friday night with popcorn, forgettable by Monday.",  # noqa: E501
 "abs_bio": "本研究利用转录组测序技术分析了干旱胁迫下玉米根系基因表达的变化，共鉴定出差异表达基因2315个，其中上调基因1287个。功能富集分析表明，这些基因主要参与植物激素信号转导和次生代谢途径。",  # noqa: E501
 "abs_chem": "以硝酸铈和尿素为原料，采用水热法合成了二氧化铈纳米棒，结果表明所得纳米棒在一氧化碳催化氧化反应中表现出良好的低温活性。",  # noqa: E501
 "abs_med": "目的 探讨早期康复训练对脑卒中患者运动功能恢复的影响。方法 选取我院收治的脑卒中患者120例，随机分为观察组和对照组。结果 观察组治疗后评分显著高于对照组（P<0.05）。",  # noqa: E501
 "consumer": "孩子发烧38.5度，咳嗽有痰，精神还可以，需要去医院吗？吃点什么药比较好？",
}
BOUNDARY_MEDICAL = {"abs_med", "consumer"}


def test_shipped_domain_model_on_the_boundary_cases():
    from medcorpus.classify.scoring import backend_class as _backend_class

    cfg = load_config().classify
    model = _backend_class(cfg.backend).load(prepare_backend(cfg))
    p = dict(zip(BOUNDARY, model.score(list(BOUNDARY.values())).p_medical))
    assert {k for k, v in p.items() if v >= cfg.medical_threshold} == BOUNDARY_MEDICAL, p
