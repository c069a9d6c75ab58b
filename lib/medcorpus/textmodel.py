"""The default text models: hashed n-gram features into linear models (fastText-style), numpy + scikit-learn.

Features (``FEATURE_VERSION``): Han character 1-2-grams for Chinese, lower-cased word 1-2-grams for
English and other Latin-script text, hashed (MurmurHash3, scikit-learn's ``HashingVectorizer``) into one
sparse space of ``2**hash_bits`` buckets, log-scaled and L2-normalised, plus a few dense "rule signal"
columns (length, repetition, symbol share, spam cues) that the quality rater needs. The same function runs
at training time on the driver and at inference time on the executors, so a model only ever sees the
features it was trained on; the artifact records the feature version and parameters and
:func:`load_artifact` refuses one that does not match the code, or whose arrays do not match its checksum.

Artifacts are two files in one folder: ``model.npz`` (the arrays) and ``model.json`` (metadata: kind,
version, feature version and parameters, checksum of the arrays, training data version, metrics). No
pickles: an artifact cannot run code when loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcorpus.errors import MedcorpusError

FEATURE_VERSION = "hngram-v1"
DOMAIN_KIND = "domain_classifier"
RATER_KIND = "quality_rater"
MEDICAL = "medical"
GENERAL = "general"
SUBDOMAINS = ("clinical", "tcm", "pharmacy", "consumer_health")


class ModelError(MedcorpusError):
    """A model artifact is missing, corrupt, or built for other features."""


# ---------------------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------------------
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_LATIN_TOKEN = r"(?u)\b[^\W\d_][^\W_]+\b"
_SYMBOL = re.compile(r"[^\w\s\u3000-\u303f\uff00-\uffef，。、；：？！“”‘’（）《》【】…—,.;:?!'\"()\-]")
_SPAM_CUES = re.compile(
    r"加微信|加v|点击|优惠券|限时|抢购|包邮|代理|免费领取|扫码|转发|click here|buy now|free shipping|subscribe|"
    r"limited offer|best price|discount|cookie|all rights reserved|privacy policy|\${2,}|!{3,}|！{2,}",
    re.IGNORECASE,
)
DENSE_FEATURES = ("log_chars", "han_share", "unique_char_ratio", "dup_line_ratio", "compress_ratio",
                  "symbol_ratio", "digit_ratio", "spam_cues", "short")


@dataclass(frozen=True)
class FeatureSpec:
    """Parameters of the feature function; part of every artifact (a mismatch refuses the model)."""

    hash_bits: int = 18
    max_chars: int = 3000
    zh_ngrams: tuple[int, int] = (1, 2)
    en_ngrams: tuple[int, int] = (1, 2)
    version: str = FEATURE_VERSION

    @property
    def n_hashed(self) -> int:
        return 1 << self.hash_bits

    @property
    def n_features(self) -> int:
        return self.n_hashed + len(DENSE_FEATURES)

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "hash_bits": self.hash_bits, "max_chars": self.max_chars,
                "zh_ngrams": list(self.zh_ngrams), "en_ngrams": list(self.en_ngrams),
                "dense": list(DENSE_FEATURES)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(hash_bits=int(data["hash_bits"]), max_chars=int(data["max_chars"]),
                   zh_ngrams=tuple(data["zh_ngrams"]), en_ngrams=tuple(data["en_ngrams"]),  # type: ignore[arg-type]
                   version=str(data["version"]))


class Featurizer:
    """Texts -> sparse feature matrix. Stateless apart from its two scikit-learn hashers (built once)."""

    def __init__(self, spec: FeatureSpec):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.spec = spec
        common = {"n_features": spec.n_hashed, "alternate_sign": False, "norm": None, "dtype": np.float32}
        self._zh = HashingVectorizer(analyzer="char", ngram_range=spec.zh_ngrams, lowercase=False, **common)
        self._en = HashingVectorizer(analyzer="word", ngram_range=spec.en_ngrams, lowercase=True,
                                     token_pattern=_LATIN_TOKEN, **common)

    def transform(self, texts: Sequence[str | None]) -> Any:
        import scipy.sparse as sp
        from sklearn.preprocessing import normalize

        heads = [(t or "")[: self.spec.max_chars] for t in texts]
        han = [" ".join(_HAN_RUN.findall(t)) for t in heads]
        latin = [_HAN_RUN.sub(" ", t) for t in heads]
        hashed = self._zh.transform(han) + self._en.transform(latin)
        hashed.data = np.log1p(hashed.data)
        hashed = normalize(hashed, norm="l2", copy=False)
        dense = np.array([dense_signals(t) for t in heads], dtype=np.float32).reshape(len(heads), len(DENSE_FEATURES))
        return sp.hstack([hashed, sp.csr_matrix(dense)], format="csr", dtype=np.float32)


def dense_signals(text: str) -> list[float]:
    """Rule signals on one text (each roughly in 0..1): what a quality rater needs beyond the words."""
    n = len(text)
    if n == 0:
        return [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    han = sum(len(r) for r in _HAN_RUN.findall(text))
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    dup_lines = 1.0 - len(set(lines)) / len(lines) if lines else 0.0
    raw = text.encode("utf-8")
    compress = len(zlib.compress(raw, 6)) / max(1, len(raw))
    symbols = len(_SYMBOL.findall(text)) / n
    digits = sum(ch.isdigit() for ch in text) / n
    spam = min(1.0, len(_SPAM_CUES.findall(text)) / 3.0)
    return [
        min(1.0, np.log1p(n) / np.log1p(5000)),
        han / n,
        min(1.0, len(set(text)) / n),
        dup_lines,
        min(1.0, compress),
        min(1.0, symbols * 4),
        min(1.0, digits * 4),
        spam,
        1.0 if n < 60 else 0.0,
    ]


# ---------------------------------------------------------------------------------------------------
# linear heads
# ---------------------------------------------------------------------------------------------------
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


@dataclass
class DomainModel:
    """Binary medical-vs-general head plus a sub-domain head applied to every text."""

    spec: FeatureSpec
    domain_coef: np.ndarray  # (F,)
    domain_intercept: float
    sub_classes: tuple[str, ...]
    sub_coef: np.ndarray  # (K, F)
    sub_intercept: np.ndarray  # (K,)
    meta: dict[str, Any] = field(default_factory=dict)

    def predict(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(p_medical (n,), sub-domain probabilities (n, K))."""
        p_med = _sigmoid(np.asarray(X @ self.domain_coef).ravel() + self.domain_intercept)
        if len(self.sub_classes) == 0:
            return p_med, np.zeros((X.shape[0], 0))
        if len(self.sub_classes) == 1:
            return p_med, np.ones((X.shape[0], 1))
        return p_med, _softmax(np.asarray(X @ self.sub_coef.T) + self.sub_intercept)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"domain_coef": self.domain_coef.astype(np.float32),
                "domain_intercept": np.array([self.domain_intercept], dtype=np.float64),
                "sub_classes": np.array(self.sub_classes, dtype="U32"),
                "sub_coef": self.sub_coef.astype(np.float32), "sub_intercept": self.sub_intercept.astype(np.float64)}

    @classmethod
    def from_arrays(cls, spec: FeatureSpec, a: dict[str, np.ndarray], meta: dict[str, Any]) -> DomainModel:
        return cls(spec, a["domain_coef"], float(a["domain_intercept"][0]), tuple(str(s) for s in a["sub_classes"]),
                   a["sub_coef"], a["sub_intercept"], meta)


@dataclass
class RaterModel:
    """Linear regression 0..5 (clipped)."""

    spec: FeatureSpec
    coef: np.ndarray
    intercept: float
    meta: dict[str, Any] = field(default_factory=dict)

    def predict(self, X: Any) -> np.ndarray:
        return np.clip(np.asarray(X @ self.coef).ravel() + self.intercept, 0.0, 5.0)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef.astype(np.float32), "intercept": np.array([self.intercept], dtype=np.float64)}

    @classmethod
    def from_arrays(cls, spec: FeatureSpec, a: dict[str, np.ndarray], meta: dict[str, Any]) -> RaterModel:
        return cls(spec, a["coef"], float(a["intercept"][0]), meta)


# ---------------------------------------------------------------------------------------------------
# training (driver side, on a bounded labelled sample)
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainParams:
    c_domain: float = 4.0
    c_subdomain: float = 4.0
    ridge_alpha: float = 1.0
    max_iter: int = 300


def train_domain(X: Any, labels: Sequence[str], subdomains: Sequence[str | None], spec: FeatureSpec,
                 params: TrainParams) -> DomainModel:
    """Fit the binary head on every row and the sub-domain head on medical rows that carry a sub-domain."""
    from sklearn.linear_model import LogisticRegression

    # The domain heads see only the n-grams: the dense rule signals (length, symbols...) describe quality, and
    # letting them vote on the domain makes it learn "long English text is medical" from a skewed sample.
    n_feat = X.shape[1]
    X = X[:, : spec.n_hashed]
    y = np.array([1 if lab == MEDICAL else 0 for lab in labels])
    if len(set(y.tolist())) < 2:
        raise ModelError("training data needs both 'medical' and 'general' rows")
    clf = LogisticRegression(C=params.c_domain, max_iter=params.max_iter, class_weight="balanced", solver="lbfgs")
    clf.fit(X, y)
    sub_mask = np.array([lab == MEDICAL and bool(s) for lab, s in zip(labels, subdomains)])
    sub_y = np.array([s for s, m in zip(subdomains, sub_mask) if m])
    classes = tuple(sorted(set(sub_y.tolist())))
    if len(classes) >= 2:
        sub = LogisticRegression(C=params.c_subdomain, max_iter=params.max_iter, class_weight="balanced",
                                 solver="lbfgs")
        sub.fit(X[np.flatnonzero(sub_mask)], sub_y)
        sub_coef = sub.coef_ if len(classes) > 2 else np.vstack([-sub.coef_[0] / 2, sub.coef_[0] / 2])
        sub_int = sub.intercept_ if len(classes) > 2 else np.array([-sub.intercept_[0] / 2, sub.intercept_[0] / 2])
        classes = tuple(str(c) for c in sub.classes_)
    else:
        sub_coef, sub_int = np.zeros((len(classes), X.shape[1])), np.zeros(len(classes))
    pad = n_feat - X.shape[1]
    domain_coef = np.concatenate([clf.coef_[0], np.zeros(pad)])
    sub_coef = np.hstack([np.asarray(sub_coef), np.zeros((len(classes), pad))])
    return DomainModel(spec, domain_coef, float(clf.intercept_[0]), classes, sub_coef, np.asarray(sub_int))


def train_rater(X: Any, scores: Sequence[float], spec: FeatureSpec, params: TrainParams) -> RaterModel:
    from sklearn.linear_model import Ridge

    reg = Ridge(alpha=params.ridge_alpha, solver="sparse_cg", max_iter=params.max_iter * 10, tol=1e-6)
    reg.fit(X, np.asarray(scores, dtype=np.float64))
    return RaterModel(spec, reg.coef_, float(reg.intercept_))


# ---------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------
def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str] | None = None) -> dict[str, Any]:
    """accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix (rows = truth)."""
    labels = list(classes) if classes is not None else sorted(set(y_true) | set(y_pred))
    index = {c: i for i, c in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            cm[index[t], index[p]] += 1
    per_class: dict[str, dict[str, float]] = {}
    for c, i in index.items():
        tp = cm[i, i]
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[c] = {"precision": round(float(prec), 4), "recall": round(float(rec), 4),
                        "f1": round(float(f1), 4), "support": int(cm[i, :].sum())}
    total = int(cm.sum())
    present = [c for c in labels if per_class[c]["support"] > 0]
    return {
        "n": total,
        "accuracy": round(float(np.trace(cm) / total), 4) if total else 0.0,
        "macro_f1": round(float(np.mean([per_class[c]["f1"] for c in present])), 4) if present else 0.0,
        "per_class": per_class,
        "labels": labels,
        "confusion_matrix": cm.tolist(),
    }


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if len(t) == 0:
        return {"n": 0, "mse": 0.0, "mae": 0.0, "baseline_mse": 0.0}
    return {"n": int(len(t)), "mse": round(float(np.mean((t - p) ** 2)), 4),
            "mae": round(float(np.mean(np.abs(t - p))), 4),
            "baseline_mse": round(float(np.mean((t - t.mean()) ** 2)), 4)}


# ---------------------------------------------------------------------------------------------------
# artifacts
# ---------------------------------------------------------------------------------------------------
def arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the arrays, in name order (zip timestamps excluded)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_artifact(model: DomainModel | RaterModel, out_dir: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write model.npz + model.json under ``out_dir``; returns the metadata (with checksum and version)."""
    kind = DOMAIN_KIND if isinstance(model, DomainModel) else RATER_KIND
    arrays = model.arrays()
    checksum = arrays_checksum(arrays)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    (out / "model.npz").write_bytes(buf.getvalue())
    full = {"kind": kind, "model_version": f"{kind}-{FEATURE_VERSION}-{checksum[:12]}", "checksum": checksum,
            "feature_version": model.spec.version, "features": model.spec.as_dict(), **meta}
    if isinstance(model, DomainModel):
        full["subdomains"] = list(model.sub_classes)
    (out / "model.json").write_text(json.dumps(full, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    model.meta = full
    return full


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / "model.json"
    if not path.exists():
        raise ModelError(f"no model at {model_dir} (model.json missing); train one with `medcorpus train-classifier`"
                         " / `train-rater`")
    return json.loads(path.read_text(encoding="utf-8"))


def load_artifact(model_dir: str | Path, expected_kind: str, expected_checksum: str | None = None,
                  feature_spec: FeatureSpec | None = None) -> DomainModel | RaterModel:
    """Load and verify: kind, feature version and parameters, array checksum (and a pinned checksum)."""
    meta = read_metadata(model_dir)
    if meta.get("kind") != expected_kind:
        raise ModelError(f"{model_dir} holds a {meta.get('kind')!r}, expected {expected_kind!r}")
    if meta.get("feature_version") != FEATURE_VERSION:
        raise ModelError(f"{model_dir}: feature version {meta.get('feature_version')!r} does not match this code's "
                         f"{FEATURE_VERSION!r}; retrain the model")
    spec = FeatureSpec.from_dict(meta["features"])
    if feature_spec is not None and spec != feature_spec:
        raise ModelError(f"{model_dir}: feature parameters {spec.as_dict()} differ from the configured "
                         f"{feature_spec.as_dict()}; retrain the model")
    try:
        with np.load(Path(model_dir) / "model.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zlib.error) as err:
        raise ModelError(f"{model_dir}/model.npz is unreadable: {err}") from err
    actual = arrays_checksum(arrays)
    if actual != meta.get("checksum"):
        raise ModelError(f"{model_dir}: checksum mismatch (metadata {str(meta.get('checksum'))[:12]}…, "
                         f"arrays {actual[:12]}…); the model file was changed or corrupted")
    if expected_checksum and actual != expected_checksum:
        raise ModelError(f"{model_dir}: checksum {actual[:12]}… is not the pinned {expected_checksum[:12]}…")
    if expected_kind == DOMAIN_KIND:
        return DomainModel.from_arrays(spec, arrays, meta)
    return RaterModel.from_arrays(spec, arrays, meta)
