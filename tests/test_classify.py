"""Classifier / rater: features, agreement filter, split, artifacts and their refusals, training jobs,
the classify stage, the once-per-worker model load and a plugged-in backend. Models are trained on the
shipped seed with a small hash space, so the whole file runs in well under a minute."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F

from medcorpus.classify.labelled import build_seed, proxy_quality
from medcorpus.classify.scoring import (
    BACKENDS,
    BatchScores,
    PreparedModel,
    ScoringBackend,
    agreement_filter_labels,
    agreement_filter_scores,
    backend_class,
    prepare_backend,
    score_documents,
    with_split,
)
from medcorpus.classify.textmodel import (
    DOMAIN_KIND,
    RATER_KIND,
    FeatureSpec,
    Featurizer,
    ModelError,
    TrainParams,
    arrays_checksum,
    classification_metrics,
    load_artifact,
    save_artifact,
    train_domain,
)
from medcorpus.core.config import NormalizeConfig
from medcorpus.core.errors import ConfigError
from medcorpus.core.pipeline import RunContext
from medcorpus.stages import run_stage
from tests.conftest import as_table

SMALL = ("classify.hash_bits=14", "classify.max_iter=100")

MED_ZH = "患者反复头痛三年，血压160/100mmHg，诊断为原发性高血压，给予氨氯地平治疗，建议低盐饮食并定期复诊。"
GEN_ZH = "周末我们全家去郊外爬山，山上空气清新，风景优美，中午在山顶吃了带来的午餐，下午才下山回家。"
MED_EN = ("Patients with type 2 diabetes present with thirst and frequent urination; the diagnosis is confirmed by "
          "HbA1c and first-line treatment is metformin, with dose review at each clinic visit.")
GEN_EN = ("The stock market closed higher on Friday after a volatile week, and the council voted to build a new "
          "library in the town centre.")


def _model_cfg(make_config, models: Path, *extra: str):
    return make_config(*SMALL, f"classify.domain_model_dir={models / 'domain'}",
                       f"classify.rater_model_dir={models / 'rater'}", *extra)


@pytest.fixture(scope="module")
def seed_models(tmp_path_factory) -> Path:
    """The default models trained once on the shipped seed (what `make run` does), shared by the stage tests."""
    from types import SimpleNamespace

    from medcorpus.classify.training import ensure_default_models
    from medcorpus.core.config import load_config

    models = tmp_path_factory.mktemp("seed_models")
    cfg = load_config(overrides=[*SMALL, f"classify.domain_model_dir={models / 'domain'}",
                                 f"classify.rater_model_dir={models / 'rater'}", "classify.train_if_missing=true"])
    ensure_default_models(SimpleNamespace(config=cfg))
    return models


def _documents(spark, texts: list[str]):
    from medcorpus.core.warehouse import table_spec

    rows = []
    for i, t in enumerate(texts):
        lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in t) else "en"
        rows.append((f"d{i:03d}", "test", "test.jsonl", "jsonl", None, None, None, t, lang, 0.9, False, len(t),
                     len(t), f"h{i}", "norm-run"))
    return spark.createDataFrame(rows, table_spec("documents").schema)


# ---------------------------------------------------------------------------------------------------
# features, metrics, proxies
# ---------------------------------------------------------------------------------------------------
def test_features_are_deterministic_and_cover_both_scripts():
    fz = Featurizer(FeatureSpec(hash_bits=12))
    a = fz.transform([MED_ZH, MED_EN, "", None])
    b = fz.transform([MED_ZH, MED_EN, "", None])
    assert (a != b).nnz == 0
    assert a.shape == (4, (1 << 12) + 3)
    # Han bigrams; English word n-grams (stop words are left out, so fewer)
    assert a[0, : 1 << 12].nnz > 40 and a[1, : 1 << 12].nnz > 25
    assert a[2].nnz == 0 and a[3].nnz == 0
    # the medical-vocabulary densities: Chinese terms in the Chinese note, English words in the English one
    dense = a[:, 1 << 12:].toarray()
    assert dense[0, 2] > 0 and dense[0, 0] == 0
    assert dense[1, 0] > 0 and dense[1, 2] == 0


def test_classification_metrics_confusion_matrix_and_f1():
    m = classification_metrics(["medical", "medical", "general", "general"], ["medical", "general", "general", "general"],
                               ["medical", "general"])
    assert m["confusion_matrix"] == [[1, 1], [0, 2]]
    assert m["accuracy"] == 0.75
    assert m["per_class"]["medical"]["f1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5, abs=1e-4)
    assert m["macro_f1"] == pytest.approx((0.6667 + 0.8) / 2, abs=1e-3)


def test_proxy_quality_penalises_spam_repetition_and_short_text():
    good = proxy_quality(MED_ZH * 3, 4.0)
    assert good >= 3.5
    assert proxy_quality("加微信领取优惠券！！！点击抢购，限时包邮！！！", 4.0) < 2.0
    assert proxy_quality("\n".join(["best price best price"] * 12), 4.0) < good - 1.0
    assert proxy_quality("短", 4.0) <= 2.5


# ---------------------------------------------------------------------------------------------------
# CareBot's agreement filter and the split
# ---------------------------------------------------------------------------------------------------
def test_agreement_filter_drops_disagreeing_domain_labels(spark):
    df = spark.createDataFrame(
        [("a", "medical", "Medical "), ("b", "medical", "general"), ("c", None, "general"), ("d", "tcm", "tcm")],
        "text string, label_round1 string, label_round2 string",
    )
    out = {r["text"]: (r["label"], r["agreement_drop"]) for r in agreement_filter_labels(df).collect()}
    assert out == {"a": ("medical", False), "b": (None, True), "c": (None, True), "d": ("tcm", False)}


def test_agreement_filter_drops_scores_two_or_more_apart(spark):
    df = spark.createDataFrame([("a", 4.0, 3.0), ("b", 1.0, 3.0), ("c", 5.0, 2.0), ("d", 2.0, None), ("e", 0.0, 1.9)],
                               "text string, score_round1 double, score_round2 double")
    out = {r["text"]: (r["score"], r["agreement_drop"]) for r in agreement_filter_scores(df, 2.0).collect()}
    assert out == {"a": (3.5, False), "b": (None, True), "c": (None, True), "d": (None, True), "e": (0.95, False)}


def test_split_is_deterministic_and_keeps_groups_together(spark):
    rows = [(f"text {i}", f"file{i % 25}") for i in range(400)]
    df = spark.createDataFrame(rows, "text string, group string")
    first = {r["text"]: r["split"] for r in with_split(df, 20, "s").collect()}
    second = {r["text"]: r["split"] for r in with_split(df, 20, "s").collect()}
    assert first == second
    by_group: dict[str, set[str]] = {}
    for text, group in rows:
        by_group.setdefault(group, set()).add(first[text])
    assert all(len(s) == 1 for s in by_group.values())
    assert 0 < sum(1 for s in by_group.values() if s == {"validation"}) < 25


# ---------------------------------------------------------------------------------------------------
# artifacts: versioned, verified, refused when they do not match
# ---------------------------------------------------------------------------------------------------
def _tiny_model(spec: FeatureSpec):
    texts = [MED_ZH, GEN_ZH, MED_EN, GEN_EN] * 3
    labels = ["medical", "general"] * 6
    subs = ["clinical", None] * 6
    return train_domain(Featurizer(spec).transform(texts), labels, subs, spec, TrainParams(max_iter=50))


def test_artifact_round_trip_and_refusals(tmp_path):
    spec = FeatureSpec(hash_bits=10)
    meta = save_artifact(_tiny_model(spec), tmp_path / "m", {"training_data": {"version": "x@v1"}})
    assert meta["model_version"].startswith(f"{DOMAIN_KIND}-hngram-v3-")
    loaded = load_artifact(tmp_path / "m", DOMAIN_KIND, feature_spec=spec)
    assert arrays_checksum(loaded.arrays()) == meta["checksum"]

    with pytest.raises(ModelError, match="holds a 'domain_classifier'"):
        load_artifact(tmp_path / "m", RATER_KIND)
    with pytest.raises(ModelError, match="feature parameters"):
        load_artifact(tmp_path / "m", DOMAIN_KIND, feature_spec=FeatureSpec(hash_bits=12))
    with pytest.raises(ModelError, match="pinned"):
        load_artifact(tmp_path / "m", DOMAIN_KIND, expected_checksum="0" * 64)

    arrays = dict(np.load(tmp_path / "m" / "model.npz"))
    arrays["domain_coef"] = arrays["domain_coef"] * 1.01  # a changed model file
    np.savez_compressed(tmp_path / "m" / "model.npz", **arrays)
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_artifact(tmp_path / "m", DOMAIN_KIND)

    save_artifact(_tiny_model(spec), tmp_path / "v", {})
    doc = json.loads((tmp_path / "v" / "model.json").read_text())
    doc["feature_version"] = "hngram-v0"
    (tmp_path / "v" / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="feature version 'hngram-v0'"):
        load_artifact(tmp_path / "v", DOMAIN_KIND)
    with pytest.raises(ModelError, match="model.json missing"):
        load_artifact(tmp_path / "absent", DOMAIN_KIND)


# ---------------------------------------------------------------------------------------------------
# training jobs
# ---------------------------------------------------------------------------------------------------
def _seed_jsonl(path: Path, rounds: bool = False) -> Path:
    rows = []
    for i, r in enumerate(build_seed(NormalizeConfig())):
        row = {"text": r.text, "label": r.subdomain or r.label, "score": r.score, "group": r.group}
        if rounds:
            gap = 2.5 if i % 10 == 0 else 0.5  # every tenth item: the two annotators disagree by >= 2
            row.update(score_round1=r.score, score_round2=min(5.0, r.score + gap) if r.score < 2.5 else r.score - gap)
        rows.append(row)
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows), encoding="utf-8")
    return path


def test_train_jobs_write_versioned_artifacts_with_metrics(spark, make_config, tmp_path):
    from medcorpus.classify.training import run_train

    ctx = RunContext.create(spark, _model_cfg(make_config, tmp_path / "models", "run_id=train-1",
                                              "classify.validation_percent=30"))
    data = _seed_jsonl(tmp_path / "seed.jsonl")
    meta = run_train(ctx, "classifier", str(data))
    assert meta["training_data"]["version"].startswith(f"{data}#sha256:")
    dom = meta["metrics"]["domain"]
    assert set(dom) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
    assert dom["per_class"]["medical"]["f1"] >= 0.9
    assert "subdomain" in meta["metrics"]
    assert (tmp_path / "models" / "domain" / "model.npz").exists()

    rounds = _seed_jsonl(tmp_path / "rounds.jsonl", rounds=True)
    rmeta = run_train(ctx, "rater", str(rounds))
    assert rmeta["metrics"]["mse"] >= 0 and rmeta["kind"] == RATER_KIND
    log = ctx.warehouse.read("run_log").filter(F.col("stage") == "train-rater").first()
    assert log["removed_by_reason"]["annotation_disagreement"] > 0
    assert log["rows_in"] == log["rows_out"] + log["rows_removed"]


# ---------------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------------
def test_classify_stage_scores_every_document_once(spark, make_config, seed_models):
    cfg = _model_cfg(make_config, seed_models, "run_id=cls-1")
    ctx = RunContext.create(spark, cfg)
    texts = [MED_ZH, GEN_ZH, MED_EN, GEN_EN, "黄芪，甘，微温。归脾、肺经。补气升阳，固表止汗，利水消肿。"]
    ctx.warehouse.merge_new_rows("clean_documents", as_table(_documents(spark, texts), "clean_documents"), stage="filter")

    report = run_stage(ctx, "classify")
    assert (report.rows_in, report.rows_out) == (5, 5)
    rows = {r["doc_id"]: r for r in ctx.warehouse.read("scored_documents").collect()}
    assert [rows[f"d{i:03d}"]["domain"] for i in range(5)] == ["medical", "general", "medical", "general", "medical"]
    assert rows["d004"]["subdomain"] == "tcm" and rows["d001"]["subdomain"] is None
    assert all(0.0 <= r["quality_score"] <= 5.0 for r in rows.values())
    assert abs(sum(rows["d000"]["subdomain_probs"].values()) - 1.0) < 1e-3
    assert rows["d000"]["classifier_version"].startswith("domain_classifier-hngram-v3-")
    assert "model loads=" in report.note

    again = run_stage(RunContext.create(spark, cfg.model_copy(update={"run_id": "cls-2"})), "classify")
    assert (again.rows_in, again.rows_out) == (0, 0)
    assert ctx.warehouse.read("scored_documents").count() == 5


def test_threshold_in_config_decides_what_is_medical(spark, make_config, seed_models):
    cfg = _model_cfg(make_config, seed_models, "run_id=cls-3", "classify.medical_threshold=1.01")
    ctx = RunContext.create(spark, cfg)
    docs = as_table(_documents(spark, [MED_ZH, GEN_EN]), "clean_documents")
    ctx.warehouse.merge_new_rows("clean_documents", docs, stage="filter")
    run_stage(ctx, "classify")
    assert {r["domain"] for r in ctx.warehouse.read("scored_documents").collect()} == {"general"}


def test_model_is_loaded_once_per_worker_not_per_batch(spark, make_config, seed_models):
    cfg = _model_cfg(make_config, seed_models, "run_id=cls-4")
    prepared = prepare_backend(cfg.classify)
    docs = _documents(spark, [MED_ZH, GEN_ZH, MED_EN, GEN_EN] * 30).repartition(2)
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    old = spark.conf.get(key)
    spark.conf.set(key, "7")  # many small Arrow batches per task
    try:
        diag = score_documents(docs, prepared, cfg.classify, diagnostics=True).groupBy("_worker_pid").agg(
            F.countDistinct("_worker_batch").alias("batches"), F.countDistinct("_worker_loads").alias("load_counts"),
            F.count(F.lit(1)).alias("rows")).collect()
    finally:
        spark.conf.set(key, old)
    assert sum(r["rows"] for r in diag) == 120
    assert sum(r["batches"] for r in diag) >= 120 // 7
    # the load counter of a worker never changes across its batches: built once, reused for every batch
    assert all(r["load_counts"] == 1 for r in diag)


class KeywordBackend(ScoringBackend):
    """A stand-in for an ONNX/torch model: proves a backend plugs in by config alone."""

    @classmethod
    def prepare(cls, cfg):
        return PreparedModel("tests.test_classify:KeywordBackend", {"words": ["患者", "patients"]}, "kw-1", "len-1")

    @classmethod
    def load(cls, prepared):
        obj = cls()
        obj.words = prepared.payload["words"]
        return obj

    def score(self, texts):
        p = np.array([1.0 if any(w in t.lower() for w in self.words) else 0.0 for t in texts])
        return BatchScores(p, ("clinical",), np.ones((len(texts), 1)), np.full(len(texts), 2.5))


def test_a_custom_backend_plugs_in_without_touching_the_stage(spark, make_config, tmp_path):
    cfg = _model_cfg(make_config, tmp_path / "models", "run_id=cls-5",
                     "classify.backend=tests.test_classify:KeywordBackend")
    ctx = RunContext.create(spark, cfg)
    docs = as_table(_documents(spark, [MED_ZH, GEN_EN, MED_EN]), "clean_documents")
    ctx.warehouse.merge_new_rows("clean_documents", docs, stage="filter")
    run_stage(ctx, "classify")
    rows = {r["doc_id"]: r for r in ctx.warehouse.read("scored_documents").collect()}
    assert [rows[d]["domain"] for d in ("d000", "d001", "d002")] == ["medical", "general", "medical"]
    assert {r["classifier_version"] for r in rows.values()} == {"kw-1"}
    assert not (tmp_path / "models" / "domain").exists()  # the default model was never needed

    assert "hashed_linear" in BACKENDS
    with pytest.raises(ConfigError, match="registered: hashed_linear"):
        backend_class("nope")


def test_missing_model_without_train_if_missing_fails_with_advice(spark, make_config, tmp_path):
    from medcorpus.classify.training import ensure_default_models

    ctx = RunContext.create(spark, _model_cfg(make_config, tmp_path / "none", "classify.train_if_missing=false"))
    with pytest.raises(ModelError, match="make models"):
        ensure_default_models(ctx)
