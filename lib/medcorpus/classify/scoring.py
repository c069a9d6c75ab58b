"""Stage ``classify``: domain (medical/general + sub-domain) and quality 0-5 for every document.

How the model reaches the data
------------------------------
The driver asks the configured **backend** to ``prepare`` itself (load and verify the artifacts: checksum,
feature version), broadcasts the small payload once, and scores with ``mapInArrow``: each Python worker
turns the broadcast into a model **once** (:func:`_backend_in_process` caches it per process, keyed by the
model versions) and then scores every Arrow batch it is given in chunks of ``batch_rows``. The per-process
counters ``PROCESS_STATS`` (loads, batches) are reported back through Spark accumulators and logged, and
``score_documents(..., diagnostics=True)`` adds them as columns so a test can check loads == 1 per worker
while batches > 1.

Score first, decide after: the Python pass only computes probabilities and the quality score; the
decisions (``domain`` from ``medical_threshold``, ``subdomain`` from ``subdomain_min_prob``) are Spark
expressions on those columns.

Plugging in another model
-------------------------
Implement :class:`ScoringBackend` (``prepare`` on the driver -> picklable :class:`PreparedModel`;
``load`` on the executor -> instance; ``score(texts) -> BatchScores``), then either register it with
``@register_backend("name")`` in an imported module or set ``classify.backend`` to ``"package.module:Class"``.
The stage does not change. See docs/classify.md for an ONNX example.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medcorpus.classify.rater import QualityRater
from medcorpus.classify.textmodel import (
    DOMAIN_KIND,
    GENERAL,
    MEDICAL,
    RATER_KIND,
    DomainModel,
    FeatureSpec,
    Featurizer,
    load_artifact,
)
from medcorpus.core.config import REPO_ROOT, ClassifyConfig
from medcorpus.core.errors import ConfigError

log = logging.getLogger(__name__)

def resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def feature_spec(cfg: ClassifyConfig) -> FeatureSpec:
    return FeatureSpec(hash_bits=cfg.hash_bits, max_chars=cfg.max_chars)


# ---------------------------------------------------------------------------------------------------
# backend interface and registry
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedModel:
    """What the driver broadcasts: a picklable payload plus the versions written to every scored row."""

    backend: str
    payload: Any
    classifier_version: str
    rater_version: str

    @property
    def key(self) -> str:
        return f"{self.backend}|{self.classifier_version}|{self.rater_version}"


@dataclass
class BatchScores:
    """Scores of one chunk of texts; arrays have one row per text."""

    p_medical: np.ndarray  # (n,)
    subdomains: tuple[str, ...]
    subdomain_probs: np.ndarray  # (n, len(subdomains))
    quality: np.ndarray  # (n,) in 0..5


class ScoringBackend(ABC):
    """A domain classifier + quality rater the ``classify`` stage can run.

    ``prepare`` runs once on the driver (read, verify, make a payload small enough to broadcast — or a path
    on shared storage for large transformer weights); ``load`` runs once per Python worker process on the
    executors; ``score`` runs per chunk of texts and must be deterministic.
    """

    name: ClassVar[str] = ""

    @classmethod
    @abstractmethod
    def prepare(cls, cfg: ClassifyConfig) -> PreparedModel: ...

    @classmethod
    @abstractmethod
    def load(cls, prepared: PreparedModel) -> ScoringBackend: ...

    @abstractmethod
    def score(self, texts: list[str]) -> BatchScores: ...


BACKENDS: dict[str, type[ScoringBackend]] = {}


def register_backend(name: str) -> Any:
    def deco(cls: type[ScoringBackend]) -> type[ScoringBackend]:
        cls.name = name
        BACKENDS[name] = cls
        return cls

    return deco


def backend_class(name: str) -> type[ScoringBackend]:
    """A registered name, or ``package.module:Class``; unknown names fail listing the valid ones."""
    if name in BACKENDS:
        return BACKENDS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"classify.backend {name!r} cannot be imported: {err}") from err
        if not (isinstance(cls, type) and issubclass(cls, ScoringBackend)):
            raise ConfigError(f"classify.backend {name!r} is not a ScoringBackend subclass")
        return cls
    raise ConfigError(f"unknown classify.backend {name!r}; registered: {', '.join(sorted(BACKENDS))} "
                      "(or give 'package.module:Class')")


@register_backend("hashed_linear")
class HashedLinearBackend(ScoringBackend):
    """The default: hashed n-grams + medical vocabulary into a calibrated linear domain model
    (:mod:`medcorpus.classify.textmodel`), and the quality rater on topic-free quality signals
    (:mod:`medcorpus.classify.rater`)."""

    def __init__(self, domain: DomainModel, rater: QualityRater):
        self.domain = domain
        self.rater = rater
        self.featurizer = Featurizer(domain.spec)

    @classmethod
    def prepare(cls, cfg: ClassifyConfig) -> PreparedModel:
        spec = feature_spec(cfg)
        domain = load_artifact(resolve(cfg.domain_model_dir), DOMAIN_KIND, cfg.domain_model_checksum, spec)
        rater = load_artifact(resolve(cfg.rater_model_dir), RATER_KIND, cfg.rater_model_checksum)
        payload = {"spec": spec.as_dict(), "domain": domain.arrays(), "rater": rater.arrays(),
                   "domain_meta": {"model_version": domain.meta["model_version"]},
                   "rater_meta": {"model_version": rater.meta["model_version"]}}
        return PreparedModel(cls.name, payload, domain.meta["model_version"], rater.meta["model_version"])

    @classmethod
    def load(cls, prepared: PreparedModel) -> HashedLinearBackend:
        p = prepared.payload
        spec = FeatureSpec.from_dict(p["spec"])
        return cls(DomainModel.from_arrays(spec, p["domain"], p["domain_meta"]),
                   QualityRater.from_arrays(p["rater"], p["rater_meta"]))

    def score(self, texts: list[str]) -> BatchScores:
        X = self.featurizer.transform(texts)
        p_med, sub = self.domain.predict(X)
        return BatchScores(p_med, self.domain.sub_classes, sub, self.rater.predict(texts))


# ---------------------------------------------------------------------------------------------------
# executor side: one model per Python worker process
# ---------------------------------------------------------------------------------------------------
PROCESS_STATS: dict[str, int] = {"loads": 0, "batches": 0}
_LOADED: dict[str, ScoringBackend] = {}


def _start_batch(prepared_bc: Any) -> tuple[ScoringBackend, int, int, int]:
    """(model, loads caused by this batch, loads so far, batches so far) for this process.

    Module-level on purpose: the ``mapInArrow`` closure is pickled by value, so counters it referenced
    directly would be per-task copies; functions of this module are pickled by reference and see the
    worker process's real state.
    """
    before = PROCESS_STATS["loads"]
    model = _backend_in_process(prepared_bc)
    PROCESS_STATS["batches"] += 1
    return model, PROCESS_STATS["loads"] - before, PROCESS_STATS["loads"], PROCESS_STATS["batches"]


def _backend_in_process(prepared_bc: Any) -> ScoringBackend:
    """The model for this process: built from the broadcast the first time, reused for every later batch."""
    prepared: PreparedModel = prepared_bc.value
    model = _LOADED.get(prepared.key)
    if model is None:
        model = backend_class(prepared.backend).load(prepared)
        _LOADED.clear()  # keep one model per process
        _LOADED[prepared.key] = model
        PROCESS_STATS["loads"] += 1
        log.info("pid %s loaded %s", os.getpid(), prepared.key)
    return model


SCORE_FIELDS = [
    T.StructField("p_medical", T.DoubleType(), False),
    T.StructField("subdomain_probs", T.MapType(T.StringType(), T.DoubleType(), False), False),
    T.StructField("top_subdomain", T.StringType(), True),
    T.StructField("top_subdomain_prob", T.DoubleType(), False),
    T.StructField("quality_score", T.DoubleType(), False),
]
DIAGNOSTIC_FIELDS = [
    T.StructField("_worker_pid", T.LongType(), False),
    T.StructField("_worker_loads", T.LongType(), False),
    T.StructField("_worker_batch", T.LongType(), False),
]


def _score_arrays(model: ScoringBackend, texts: list[str], batch_rows: int) -> dict[str, pa.Array]:
    p_med: list[np.ndarray] = []
    quality: list[np.ndarray] = []
    probs: list[list[tuple[str, float]]] = []
    top: list[str | None] = []
    top_p: list[float] = []
    for start in range(0, len(texts), max(1, batch_rows)):
        s = model.score(texts[start: start + batch_rows])
        p_med.append(np.asarray(s.p_medical, dtype=np.float64))
        quality.append(np.asarray(s.quality, dtype=np.float64))
        sp = np.asarray(s.subdomain_probs, dtype=np.float64)
        for row in sp:
            probs.append([(name, round(float(v), 6)) for name, v in zip(s.subdomains, row)])
            if len(row):
                i = int(np.argmax(row))
                top.append(s.subdomains[i])
                top_p.append(float(row[i]))
            else:
                top.append(None)
                top_p.append(0.0)

    def cat(xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(xs) if xs else np.zeros(0)

    return {
        "p_medical": pa.array(np.round(cat(p_med), 6), pa.float64()),
        "subdomain_probs": pa.array(probs, pa.map_(pa.string(), pa.float64())),
        "top_subdomain": pa.array(top, pa.string()),
        "top_subdomain_prob": pa.array(np.round(top_p, 6) if top_p else [], pa.float64()),
        "quality_score": pa.array(np.round(cat(quality), 4), pa.float64()),
    }


def score_documents(df: DataFrame, prepared: PreparedModel, cfg: ClassifyConfig, *, diagnostics: bool = False,
                    accumulators: tuple[Any, Any] | None = None) -> DataFrame:
    """``df`` (with ``text``) + the score columns, via ``mapInArrow`` with a broadcast model.

    ``accumulators`` (loads, batches) receive the per-process counters' increments, so the driver can log
    how many times the model was built for how many Arrow batches.
    """
    spark = df.sparkSession
    prepared_bc = spark.sparkContext.broadcast(prepared)
    out_schema = T.StructType(df.schema.fields + SCORE_FIELDS + (DIAGNOSTIC_FIELDS if diagnostics else []))
    batch_rows = cfg.batch_rows
    loads_acc, batches_acc = accumulators if accumulators else (None, None)

    def _score(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            model, new_loads, loads, batch_no = _start_batch(prepared_bc)
            if loads_acc is not None and batches_acc is not None:
                loads_acc.add(new_loads)
                batches_acc.add(1)
            texts = [t or "" for t in batch.column("text").to_pylist()]
            scores = _score_arrays(model, texts, batch_rows)
            arrays = list(batch.columns) + [scores[f.name] for f in SCORE_FIELDS]
            names = list(batch.schema.names) + [f.name for f in SCORE_FIELDS]
            if diagnostics:
                n = batch.num_rows
                arrays += [pa.array([os.getpid()] * n, pa.int64()), pa.array([loads] * n, pa.int64()),
                           pa.array([batch_no] * n, pa.int64())]
                names += [f.name for f in DIAGNOSTIC_FIELDS]
            yield pa.RecordBatch.from_arrays(arrays, names=names)

    return df.mapInArrow(_score, out_schema)


def decide_domain(p_medical: Column, cfg: ClassifyConfig) -> Column:
    return F.when(p_medical >= F.lit(cfg.medical_threshold), F.lit(MEDICAL)).otherwise(F.lit(GENERAL))


def decide_subdomain(domain: Column, top: Column, top_prob: Column, cfg: ClassifyConfig) -> Column:
    return (
        F.when(domain != F.lit(MEDICAL), F.lit(None).cast("string"))
        .when(top.isNull() | (top_prob < F.lit(cfg.subdomain_min_prob)), F.lit(None).cast("string"))
        .otherwise(top)
    )


def classify_documents(df: DataFrame, prepared: PreparedModel, cfg: ClassifyConfig, run_id: str,
                       accumulators: tuple[Any, Any] | None = None) -> DataFrame:
    """documents-shaped rows -> scored_documents rows (scores, decisions, model versions)."""
    scored = score_documents(df, prepared, cfg, accumulators=accumulators)
    domain = decide_domain(F.col("p_medical"), cfg)
    return (
        scored.withColumn("domain", domain)
        .withColumn("subdomain", decide_subdomain(F.col("domain"), F.col("top_subdomain"),
                                                  F.col("top_subdomain_prob"), cfg))
        .withColumn("classifier_version", F.lit(prepared.classifier_version))
        .withColumn("rater_version", F.lit(prepared.rater_version))
        .withColumn("classify_backend", F.lit(prepared.backend))
        .withColumn("classify_run_id", F.lit(run_id))
        .drop("top_subdomain", "top_subdomain_prob")
    )


# ---------------------------------------------------------------------------------------------------
# labelled data: CareBot's two-round agreement filter and the deterministic split
# ---------------------------------------------------------------------------------------------------
DOMAIN_ROUNDS = ("label_round1", "label_round2")
SCORE_ROUNDS = ("score_round1", "score_round2")


def agreement_filter_labels(df: DataFrame) -> DataFrame:
    """Two domain annotation rounds: keep rows whose labels agree (``label`` = the agreed label), drop the rest.

    Adds ``agreement_drop`` (true for a dropped row) instead of filtering, so the caller can count both.
    """
    a, b = (F.lower(F.trim(F.col(c))) for c in DOMAIN_ROUNDS)
    agree = a.isNotNull() & b.isNotNull() & (a == b)
    return df.withColumn("label", F.when(agree, a)).withColumn("agreement_drop", ~F.coalesce(agree, F.lit(False)))


def agreement_filter_scores(df: DataFrame, max_gap: float) -> DataFrame:
    """Two quality rounds (0-5): drop rows whose scores differ by ``max_gap`` or more; ``score`` = their mean."""
    a, b = (F.col(c).cast("double") for c in SCORE_ROUNDS)
    keep = a.isNotNull() & b.isNotNull() & (F.abs(a - b) < F.lit(max_gap))
    return (df.withColumn("score", F.when(keep, (a + b) / 2))
            .withColumn("agreement_drop", ~F.coalesce(keep, F.lit(False))))


def with_split(df: DataFrame, validation_percent: int, salt: str) -> DataFrame:
    """``split`` = train | validation by a stable hash of ``group`` (else the text): same input, same split."""
    if "split" in df.columns:
        return df.withColumn("split", F.when(F.col("split") == "validation", "validation").otherwise("train"))
    unit = F.coalesce(F.col("group"), F.col("text")) if "group" in df.columns else F.col("text")
    bucket = F.pmod(F.conv(F.substring(F.sha2(F.concat_ws("\u001f", F.lit(salt), unit), 256), 1, 8), 16, 10)
                    .cast("long"), F.lit(100))
    return df.withColumn("split", F.when(bucket < validation_percent, "validation").otherwise("train"))


def stable_order(text: Column, salt: str) -> Column:
    return F.sha2(F.concat_ws("\u001f", F.lit(salt), text), 256)


def text_fingerprint(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8")).digest())
    return h.hexdigest()[:16]


@dataclass
class TrainResult:
    kind: str
    model_dir: str
    metadata: dict[str, Any]
    rows_in: int = 0
    rows_dropped: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# the backend
# ---------------------------------------------------------------------------------------------------
def prepare_backend(cfg: ClassifyConfig) -> PreparedModel:
    return backend_class(cfg.backend).prepare(cfg)
