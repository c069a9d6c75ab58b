"""Training jobs for the default models and the labelled-data builder (driver side).

``train-classifier`` / ``train-rater`` read a labelled Delta table (a name in the warehouse or a Delta
path) or a JSONL file with ``text`` and ``label`` / ``score`` — or two annotation rounds
(``label_round1``/``label_round2``, ``score_round1``/``score_round2``) which go through CareBot's agreement
filter first — split train/validation deterministically (an existing ``split`` column wins; otherwise a
stable hash of ``group``, else of the text), bring at most ``max_train_rows`` rows to the driver (the
labelled set is bounded; the corpus never is), fit, measure on validation and write a versioned artifact.

Labels for the classifier: ``medical`` / ``general``, or a sub-domain name (``clinical``, ``tcm``,
``pharmacy``, ``consumer_health``) which means medical with that sub-domain; an optional ``subdomain``
column gives the sub-domain of ``medical`` rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.classify import labelled as labelled_mod
from medcorpus.classify import rater as rater_mod
from medcorpus.classify.scoring import (
    DOMAIN_ROUNDS,
    SCORE_ROUNDS,
    agreement_filter_labels,
    agreement_filter_scores,
    feature_spec,
    resolve,
    stable_order,
    text_fingerprint,
    with_split,
)
from medcorpus.classify.textmodel import (
    GENERAL,
    MEDICAL,
    RATER_KIND,
    SUBDOMAINS,
    Featurizer,
    ModelError,
    TrainParams,
    classification_metrics,
    load_artifact,
    regression_metrics,
    save_artifact,
    script_of,
    train_domain,
)
from medcorpus.core.config import ClassifyConfig
from medcorpus.core.errors import InputError
from medcorpus.core.runlog import StageReport, write_report

log = logging.getLogger(__name__)

LABELLED_TABLE = "labelled_documents"


def train_params(cfg: ClassifyConfig) -> TrainParams:
    return TrainParams(c_domain=cfg.c_domain, c_subdomain=cfg.c_subdomain, ridge_alpha=cfg.ridge_alpha,
                       max_iter=cfg.max_iter)


# ---------------------------------------------------------------------------------------------------
# pure pandas: label handling, fitting, metrics
# ---------------------------------------------------------------------------------------------------
def normalise_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """``label`` -> medical|general and ``subdomain`` (a sub-domain label implies medical)."""
    out = frame.copy()
    label = out["label"].astype(str).str.strip().str.lower()
    sub = out["subdomain"].astype(object) if "subdomain" in out.columns else pd.Series([None] * len(out), index=out.index)
    is_sub = label.isin(SUBDOMAINS)
    sub = sub.where(~is_sub, label)
    label = label.where(~is_sub, MEDICAL)
    bad = sorted(set(label) - {MEDICAL, GENERAL})
    if bad:
        raise InputError(f"unknown labels {bad[:5]}; use medical, general or one of {', '.join(SUBDOMAINS)}")
    out["label"] = label
    out["subdomain"] = sub.where(label == MEDICAL, None)
    out["subdomain"] = out["subdomain"].where(out["subdomain"].notna() & (out["subdomain"] != ""), None)
    return out


def _real(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[~frame["synthetic"].fillna(False).astype(bool)] if "synthetic" in frame.columns else frame


def fit_domain(train: pd.DataFrame, validation: pd.DataFrame, cfg: ClassifyConfig) -> tuple[Any, dict[str, Any]]:
    spec = feature_spec(cfg)
    fz = Featurizer(spec)
    train, validation = normalise_labels(train), normalise_labels(validation)
    texts = train["text"].tolist()
    model = train_domain(fz.transform(texts), train["label"].tolist(), train["subdomain"].tolist(),
                         spec, train_params(cfg), [script_of(t) for t in texts])
    return model, domain_metrics(model, fz, validation, cfg)


def domain_metrics(model: Any, fz: Featurizer, validation: pd.DataFrame, cfg: ClassifyConfig) -> dict[str, Any]:
    """Medical-vs-general and sub-domain metrics on the real (non-synthetic) validation rows."""
    val = _real(validation)
    if val.empty:
        return {"validation_rows": 0}
    p_med, sub = model.predict(fz.transform(val["text"].tolist()))
    pred = np.where(p_med >= cfg.medical_threshold, MEDICAL, GENERAL)
    metrics: dict[str, Any] = {"validation_rows": int(len(val)),
                               "domain": classification_metrics(val["label"].tolist(), pred.tolist(), [MEDICAL, GENERAL])}
    has_sub = (val["label"] == MEDICAL).to_numpy() & val["subdomain"].notna().to_numpy()
    if has_sub.any() and len(model.sub_classes):
        top = np.array(model.sub_classes)[np.argmax(sub[has_sub], axis=1)]
        metrics["subdomain"] = classification_metrics(val["subdomain"][has_sub].tolist(), top.tolist(),
                                                      sorted(set(model.sub_classes) | set(val["subdomain"][has_sub])))
    if "source" in val.columns:
        correct = pred == val["label"].to_numpy()
        metrics["domain_accuracy_by_source"] = {
            str(s): round(float(correct[(val["source"] == s).to_numpy()].mean()), 4) for s in sorted(val["source"].unique())
        }
    return metrics


def base_rater(cfg: ClassifyConfig, texts: list[str]) -> rater_mod.QualityRater:
    """The configured rater (its fluency model and script statistics are kept), else one built on ``texts``."""
    try:
        model = load_artifact(resolve(cfg.rater_model_dir), RATER_KIND)
        assert isinstance(model, rater_mod.QualityRater)
        return model
    except ModelError:
        return rater_mod.train_rater(*rater_mod.split_texts(texts))[0]


def fit_rater(train: pd.DataFrame, validation: pd.DataFrame, cfg: ClassifyConfig) -> tuple[Any, dict[str, Any]]:
    """Annotated 0-5 scores (LLM or human) -> the rater's feature weights, refitted by ridge regression.

    The features stay the topic-free quality signals of :mod:`medcorpus.classify.rater`; only their weights follow
    the annotations, so a rater trained on annotations still cannot learn the source from its words."""
    if train.empty:
        raise ModelError("no training rows with a score")
    base = base_rater(cfg, train["text"].tolist())
    coef, intercept = rater_mod.fit_scores(base.features(train["text"].tolist()),
                                           train["score"].astype(float).to_numpy(), cfg.ridge_alpha)
    model = rater_mod.QualityRater(base.lm, base.stats, coef, intercept)
    metrics: dict[str, Any] = {"validation_rows": int(len(validation))}
    if len(validation):
        pred = model.predict(validation["text"].tolist())
        metrics["all"] = regression_metrics(validation["score"].astype(float).tolist(), pred.tolist())
        if "synthetic" in validation.columns:
            real = ~validation["synthetic"].fillna(False).astype(bool).to_numpy()
            metrics["real_rows"] = regression_metrics(validation["score"][real].astype(float).tolist(), pred[real].tolist())
        metrics["mse"] = metrics["all"]["mse"]
    return model, metrics


# ---------------------------------------------------------------------------------------------------
# reading labelled input
# ---------------------------------------------------------------------------------------------------
def read_labelled(ctx: Any, source: str) -> tuple[DataFrame, str]:
    """(DataFrame, data version) from a warehouse table name, a Delta path or a JSONL file/folder."""
    from delta.tables import DeltaTable

    if "/" not in source and "." not in source:
        df = ctx.warehouse.read(source)
        return df, f"{ctx.warehouse.path(source)}@v{ctx.warehouse.version(source)}"
    if DeltaTable.isDeltaTable(ctx.spark, source if "://" in source else str(Path(source).resolve())):
        path = source if "://" in source else str(Path(source).resolve())
        last = DeltaTable.forPath(ctx.spark, path).history(1).select("version").first()
        assert last is not None  # a Delta table has at least version 0
        version = last[0]
        return ctx.spark.read.format("delta").load(path), f"{path}@v{version}"
    local = Path(source)
    if "://" not in source and not local.exists():
        raise InputError(f"labelled input not found: {source} (a warehouse table name, a Delta path or JSONL)")
    digest = "remote"
    if local.is_file():
        digest = hashlib.sha256(local.read_bytes()).hexdigest()[:16]
    return ctx.spark.read.json(source), f"{source}#sha256:{digest}"


def _bounded_frame(df: DataFrame, columns: list[str], cfg: ClassifyConfig) -> pd.DataFrame:
    """At most max_train_rows rows, chosen by a stable hash of the text, as pandas (deterministic order)."""
    wanted = [c for c in columns if c in df.columns]
    return (df.select(*wanted).withColumn("_order", stable_order(F.col("text"), cfg.split_salt))
            .orderBy("_order").limit(cfg.max_train_rows).drop("_order").toPandas())


def _prepare_input(df: DataFrame, kind: str, cfg: ClassifyConfig) -> tuple[DataFrame, dict[str, int]]:
    """Agreement filter (two rounds) or plain labels; drop rows without text/label; add ``split``."""
    dropped: dict[str, int] = {}
    if kind == "classifier" and all(c in df.columns for c in DOMAIN_ROUNDS):
        df = agreement_filter_labels(df)
    elif kind == "rater" and all(c in df.columns for c in SCORE_ROUNDS):
        df = agreement_filter_scores(df, cfg.max_score_gap)
    else:
        target = "label" if kind == "classifier" else "score"
        if target not in df.columns:
            raise InputError(f"labelled input needs a '{target}' column (or two rounds "
                             f"{DOMAIN_ROUNDS if kind == 'classifier' else SCORE_ROUNDS}); has {df.columns}")
        df = df.withColumn("agreement_drop", F.lit(False))
    target = "label" if kind == "classifier" else "score"
    reason = (F.when(F.col("agreement_drop"), "annotation_disagreement")
              .when(F.col("text").isNull() | (F.length(F.trim(F.col("text"))) == 0), "empty_text")
              .when(F.col(target).isNull(), f"missing_{target}"))
    df = df.withColumn("_drop", reason)
    counts = {r["_drop"]: int(r["n"]) for r in df.groupBy("_drop").agg(F.count(F.lit(1)).alias("n")).collect()}
    dropped = {k: v for k, v in counts.items() if k is not None}
    kept = df.filter(F.col("_drop").isNull()).drop("_drop", "agreement_drop")
    return with_split(kept, cfg.validation_percent, cfg.split_salt), dropped | {"_kept": counts.get(None, 0)}


def run_train(ctx: Any, kind: str, source: str, out_dir: str | None = None) -> dict[str, Any]:
    """Train the classifier or the rater from labelled input; write the artifact; log a run_log row."""
    cfg = ctx.config.classify
    report = StageReport(f"train-{kind}")
    df, data_version = read_labelled(ctx, source)
    prepared, dropped = _prepare_input(df, kind, cfg)
    kept = dropped.pop("_kept")
    cols = ["text", "label", "subdomain", "score", "split", "source", "synthetic", "group"]
    frame = _bounded_frame(prepared, cols, cfg)
    train, validation = frame[frame["split"] == "train"], frame[frame["split"] == "validation"]
    log.info("train-%s: %s rows in, %s kept (%s), %s train / %s validation", kind, kept + sum(dropped.values()),
             kept, dropped, len(train), len(validation))
    model, metrics = (fit_domain if kind == "classifier" else fit_rater)(train, validation, cfg)
    target = out_dir or (cfg.domain_model_dir if kind == "classifier" else cfg.rater_model_dir)
    meta = save_artifact(model, resolve(target), _training_meta(data_version, train, validation, metrics, cfg))
    report.rows_in = kept + sum(dropped.values())
    report.rows_out = len(train) + len(validation)
    report.rows_removed = report.rows_in - report.rows_out
    reasons = dict(dropped)
    if kept - report.rows_out:
        reasons["over_max_train_rows"] = kept - report.rows_out
    report.removed_by_reason = reasons
    report.note = f"{meta['model_version']} -> {resolve(target)}"
    write_report(ctx.spark, ctx.warehouse, report.finish())
    return meta


def _training_meta(data_version: str, train: pd.DataFrame, validation: pd.DataFrame, metrics: dict[str, Any],
                   cfg: ClassifyConfig) -> dict[str, Any]:
    return {
        "training_data": {"version": data_version, "train_rows": int(len(train)),
                          "validation_rows": int(len(validation)),
                          "train_fingerprint": text_fingerprint(train["text"].tolist())},
        "metrics": metrics,
        "params": {k: getattr(cfg, k) for k in ("c_domain", "c_subdomain", "ridge_alpha", "max_iter",
                                                "medical_threshold", "validation_percent", "split_salt")},
        "trained_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# ---------------------------------------------------------------------------------------------------
# labelled builder and the default models
# ---------------------------------------------------------------------------------------------------
def build_params(cfg: ClassifyConfig) -> labelled_mod.BuildParams:
    return labelled_mod.BuildParams(train_cap=cfg.labelled_train_cap, validation_cap=cfg.labelled_validation_cap,
                                    validation_percent=cfg.validation_percent, holdout_sources=cfg.holdout_sources,
                                    synthetic_percent=cfg.synthetic_percent, salt=cfg.split_salt)


def labelled_rows(ctx: Any, what: str, shared_data: str | None = None,
                  sources: list[str] | None = None) -> list[labelled_mod.LabelledRow]:
    cfg = ctx.config.classify
    if what == "seed":
        return labelled_mod.build_seed(ctx.config.normalize)
    if what != "shared_data":
        raise InputError(f"unknown training data {what!r}; use 'seed' or 'shared_data'")
    root = resolve(shared_data or cfg.shared_data_dir)
    if not root.exists():
        raise InputError(f"shared data folder not found: {root}")
    return labelled_mod.build_from_shared_data(root, build_params(cfg), ctx.config.normalize, sources)


def rows_frame(rows: list[labelled_mod.LabelledRow]) -> pd.DataFrame:
    return pd.DataFrame([r.__dict__ for r in rows], columns=["text", "label", "subdomain", "score", "source",
                                                             "group", "split", "synthetic"])


def run_build_labelled(ctx: Any, what: str = "shared_data", shared_data: str | None = None,
                       jsonl_out: str | None = None) -> StageReport:
    """Write ``labelled_documents`` (overwritten: it is a derived, versioned snapshot) and optionally JSONL."""
    report = StageReport("build-labelled")
    frame = rows_frame(labelled_rows(ctx, what, shared_data))
    frame["builder_version"] = labelled_mod.BUILDER_VERSION
    from medcorpus.core.warehouse import table_spec

    sdf = ctx.spark.createDataFrame(frame, table_spec(LABELLED_TABLE).schema)
    ctx.warehouse.overwrite_rows(LABELLED_TABLE, sdf, stage="build-labelled")
    if jsonl_out:
        Path(jsonl_out).parent.mkdir(parents=True, exist_ok=True)
        frame.to_json(jsonl_out, orient="records", lines=True, force_ascii=False)
    report.rows_in = report.rows_out = len(frame)
    report.table_version = ctx.warehouse.version(LABELLED_TABLE)
    counts = frame.groupby(["split", "label"]).size().to_dict()
    report.note = ", ".join(f"{s}/{lab}={n}" for (s, lab), n in sorted(counts.items()))
    write_report(ctx.spark, ctx.warehouse, report.finish())
    return report


def ensure_default_models(ctx: Any) -> None:
    """Train the default models when their folders are empty and ``train_if_missing`` allows it."""
    cfg = ctx.config.classify
    missing = [d for d in (cfg.domain_model_dir, cfg.rater_model_dir) if not (resolve(d) / "model.json").exists()]
    if not missing or cfg.backend != "hashed_linear":
        return
    if not cfg.train_if_missing:
        raise ModelError(f"no model at {', '.join(missing)} and classify.train_if_missing is false; the shipped models "
                         "live in models/ (rebuild them with `make models`), or train your own with `medcorpus "
                         "train-classifier` / `train-rater` and point classify.domain_model_dir / rater_model_dir at them")
    log.info("training the default models on '%s' data (missing: %s)", cfg.default_training_data, missing)
    frame = rows_frame(labelled_rows(ctx, cfg.default_training_data))
    train, validation = frame[frame["split"] == "train"], frame[frame["split"] == "validation"]
    version = f"builtin:{cfg.default_training_data}:{labelled_mod.BUILDER_VERSION}#{text_fingerprint(frame['text'].tolist())}"
    domain, dm = fit_domain(train, validation, cfg)
    save_artifact(domain, resolve(cfg.domain_model_dir), _training_meta(version, train, validation, dm, cfg))
    texts = train["text"].tolist()
    rater, info = rater_mod.train_rater(*rater_mod.split_texts(texts))
    save_artifact(rater, resolve(cfg.rater_model_dir), _training_meta(version, train, validation, {"pairwise": info}, cfg))
