"""The default text models: hashed n-gram features into linear models (fastText-style), numpy + scikit-learn.

Features (``FEATURE_VERSION``): Han character 1-2-grams for Chinese, lower-cased word 1-2-grams for
English and other Latin-script text without English stop words, hashed (MurmurHash3, scikit-learn's
``HashingVectorizer``) into one sparse space of ``2**hash_bits`` buckets, log-scaled and L2-normalised (the English
n-grams then weighted by ``en_weight``, so the medical-vocabulary densities carry more of an English decision),
plus three dense columns: the medical-vocabulary densities of :func:`domain_signals`. The same function runs
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

from medcorpus.classify.rater import RATER_FEATURES, QualityRater
from medcorpus.core.errors import MedcorpusError
from medcorpus.text.script import HAN_RUN as _HAN_RUN

FEATURE_VERSION = "hngram-v3"
RATER_VERSION = "qrater-v3"
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
_LATIN_TOKEN = r"(?u)\b[^\W\d_][^\W_]+\b"
_SYMBOL = re.compile(r"[^\w\s\u3000-\u303f\uff00-\uffef，。、；：？！“”‘’（）《》【】…—,.;:?!'\"()\-]")
_SPAM_CUES = re.compile(
    r"加微信|加v|点击|优惠券|限时|抢购|包邮|代理|免费领取|扫码|转发|click here|buy now|free shipping|subscribe|"
    r"limited offer|best price|discount|cookie|all rights reserved|privacy policy|\${2,}|!{3,}|！{2,}",
    re.IGNORECASE,
)
# English function words carry register (past-tense narration, "the"), not topic: with them the held-out
# PubMedQA abstracts scored as general because news and fiction share their style. scikit-learn's fixed list.
EN_STOP_WORDS = "english"
DENSE_FEATURES = ("med_terms_en", "med_morph_en", "med_terms_zh")
DENSE_SCALE = 10.0  # dense columns are scaled up so the L2 penalty lets them carry across sources
_WORD = re.compile(r"[A-Za-z][A-Za-z\-']+")
_MED_MORPH = re.compile(
    r"\b[a-z]+(?:itis|ectomy|ectomies|otomy|ostomy|oma|omas|emia|aemia|osis|pathy|algia|plasty|scopy|ologist|iatric)\b"
    r"|\b(?:cardi|hepat|neur|gastr|nephr|derm|oste|pulmon|hemat|haemat|onco|immun|endocrin|ophthalm|urolog|gyn)[a-z]*\b")


def _vocabulary(name: str) -> list[str]:
    """A word list shipped inside the package (read through importlib.resources, so it also works from the
    zip that spark-submit ships with --py-files)."""
    from importlib.resources import files

    text = files("medcorpus").joinpath("resources", name).read_text(encoding="utf-8")
    return [w for line in text.splitlines() if not line.startswith("#") for w in line.split()]


_MED_EN = frozenset(w.lower() for w in _vocabulary("medical_terms.en.txt"))
_MED_ZH = re.compile("|".join(re.escape(w) for w in sorted(set(_vocabulary("medical_terms.zh.txt")), key=len,
                                                             reverse=True)))


def domain_signals(text: str) -> list[float]:
    """Medical vocabulary density (hand-written lists in ``resources/``, not learnt from any source):
    English medical words and medical word forms (-itis, -ectomy, cardi-...) per word, Chinese medical
    terms' characters per Han character. Log-scaled; the same on every source, so they carry to corpora
    whose phrasing the n-grams never saw."""
    words = [w.lower() for w in _WORD.findall(text)]
    n_words = max(len(words), 1)
    han = max(sum(len(r) for r in _HAN_RUN.findall(text)), 1)
    en = sum(w in _MED_EN for w in words) / n_words
    morph = len(_MED_MORPH.findall(text.lower())) / n_words
    zh = sum(len(m) for m in _MED_ZH.findall(text)) / han
    return [float(np.log1p(20 * en)), float(np.log1p(20 * morph)), float(np.log1p(20 * zh))]


def dense_signals(text: str) -> list[float]:
    """Rule signals on one text (each roughly in 0..1), used by the labelled builder's proxy quality."""
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


@dataclass(frozen=True)
class FeatureSpec:
    """Parameters of the feature function; part of every artifact (a mismatch refuses the model)."""

    hash_bits: int = 18
    max_chars: int = 3000
    zh_ngrams: tuple[int, int] = (1, 2)
    en_ngrams: tuple[int, int] = (1, 2)
    en_weight: float = 0.5
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
                "en_stop_words": EN_STOP_WORDS, "en_weight": self.en_weight, "dense": list(DENSE_FEATURES)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        stop = data.get("en_stop_words", EN_STOP_WORDS)
        if stop != EN_STOP_WORDS:  # the stop list is fixed by the code, not a parameter: refuse another one
            raise ValueError(f"feature spec names English stop words {stop!r}; this code drops {EN_STOP_WORDS!r}")
        return cls(hash_bits=int(data["hash_bits"]), max_chars=int(data["max_chars"]),
                   zh_ngrams=tuple(data["zh_ngrams"]), en_ngrams=tuple(data["en_ngrams"]),  # type: ignore[arg-type]
                   en_weight=float(data.get("en_weight", 1.0)), version=str(data["version"]))


def row_norms(X: Any) -> np.ndarray:
    """L2 norm of each row of a sparse matrix (1 for an empty row, so dividing by it is safe)."""
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    return np.where(norms > 0, norms, 1.0)


def row_scale(X: Any, factors: np.ndarray) -> Any:
    import scipy.sparse as sp

    return sp.diags(factors.astype(np.float32)) @ X


class Featurizer:
    """Texts -> sparse feature matrix. Stateless apart from its two scikit-learn hashers (built once)."""

    def __init__(self, spec: FeatureSpec):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.spec = spec
        common = {"n_features": spec.n_hashed, "alternate_sign": False, "norm": None, "dtype": np.float32}
        self._zh = HashingVectorizer(analyzer="char", ngram_range=spec.zh_ngrams, lowercase=False, **common)
        self._en = HashingVectorizer(analyzer="word", ngram_range=spec.en_ngrams, lowercase=True,
                                     token_pattern=_LATIN_TOKEN, stop_words=EN_STOP_WORDS, **common)

    def transform(self, texts: Sequence[str | None]) -> Any:
        import scipy.sparse as sp

        heads = [(t or "")[: self.spec.max_chars] for t in texts]
        han = [" ".join(_HAN_RUN.findall(t)) for t in heads]
        latin = [_HAN_RUN.sub(" ", t) for t in heads]
        zh = self._zh.transform(han)
        en = self._en.transform(latin)
        zh.data = np.log1p(zh.data)
        en.data = np.log1p(en.data)
        hashed = row_scale(zh + en * self.spec.en_weight, 1.0 / row_norms(zh + en))
        dense = np.array([domain_signals(t) for t in heads], dtype=np.float32).reshape(len(heads), len(DENSE_FEATURES))
        dense *= DENSE_SCALE
        return sp.hstack([hashed, sp.csr_matrix(dense)], format="csr", dtype=np.float32)



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
    calibration: tuple[float, float] = (1.0, 0.0)  # Platt: p = sigmoid(a * logit + b), fitted out of fold

    def logits(self, X: Any) -> np.ndarray:
        return np.asarray(X @ self.domain_coef).ravel() + self.domain_intercept

    def predict(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated p_medical (n,), sub-domain probabilities (n, K))."""
        a, b = self.calibration
        p_med = _sigmoid(a * self.logits(X) + b)
        if len(self.sub_classes) == 0:
            return p_med, np.zeros((X.shape[0], 0))
        if len(self.sub_classes) == 1:
            return p_med, np.ones((X.shape[0], 1))
        return p_med, _softmax(np.asarray(X @ self.sub_coef.T) + self.sub_intercept)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"domain_coef": self.domain_coef.astype(np.float32),
                "domain_intercept": np.array([self.domain_intercept], dtype=np.float64),
                "sub_classes": np.array(self.sub_classes, dtype="U32"),
                "sub_coef": self.sub_coef.astype(np.float16), "sub_intercept": self.sub_intercept.astype(np.float64),
                "calibration": np.array(self.calibration, dtype=np.float64)}

    @classmethod
    def from_arrays(cls, spec: FeatureSpec, a: dict[str, np.ndarray], meta: dict[str, Any]) -> DomainModel:
        calib = tuple(float(v) for v in a["calibration"]) if "calibration" in a else (1.0, 0.0)
        return cls(spec, a["domain_coef"], float(a["domain_intercept"][0]), tuple(str(s) for s in a["sub_classes"]),
                   a["sub_coef"].astype(np.float32), a["sub_intercept"], meta, calib)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------
# training (driver side, on a bounded labelled sample)
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainParams:
    c_domain: float = 1.0
    c_subdomain: float = 4.0
    ridge_alpha: float = 1.0
    max_iter: int = 300


def balanced_weights(y: np.ndarray, scripts: Sequence[str]) -> np.ndarray:
    """Sample weights giving every (script, label) cell the same total weight."""
    keys = np.array([f"{sc}|{lab}" for sc, lab in zip(scripts, y)])
    cells, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return (len(y) / (len(cells) * counts))[inverse]


def script_of(text: str) -> str:
    """'han' when Han characters are over 30% of the first 400 characters, else 'other'."""
    head = text[:400]
    return "han" if sum(len(r) for r in _HAN_RUN.findall(head)) > 0.3 * len(head) else "other"


def train_domain(X: Any, labels: Sequence[str], subdomains: Sequence[str | None], spec: FeatureSpec,
                 params: TrainParams, scripts: Sequence[str] | None = None) -> DomainModel:
    """Fit the binary head on every row and the sub-domain head on medical rows that carry a sub-domain."""
    from sklearn.linear_model import LogisticRegression

    # The domain head sees the n-grams and the medical-vocabulary densities (not length or other quality
    # signals). Rows are weighted so that each script (Han / other) and each label carry equal weight: the
    # Chinese medical sources outnumber the English ones, and unweighted the English n-grams learn
    # "English means general".
    y = np.array([1 if lab == MEDICAL else 0 for lab in labels])
    if len(set(y.tolist())) < 2:
        raise ModelError("training data needs both 'medical' and 'general' rows")
    clf = LogisticRegression(C=params.c_domain, max_iter=params.max_iter, solver="lbfgs")
    clf.fit(X, y, sample_weight=balanced_weights(y, scripts if scripts is not None else ['all'] * len(y)))
    Xh = X[:, : spec.n_hashed]
    sub_mask = np.array([lab == MEDICAL and bool(s) for lab, s in zip(labels, subdomains)])
    sub_y = np.array([s for s, m in zip(subdomains, sub_mask) if m])
    classes = tuple(sorted(set(sub_y.tolist())))
    if len(classes) >= 2:
        sub = LogisticRegression(C=params.c_subdomain, max_iter=params.max_iter, class_weight="balanced",
                                 solver="lbfgs")
        sub.fit(Xh[np.flatnonzero(sub_mask)], sub_y)
        sub_coef = sub.coef_ if len(classes) > 2 else np.vstack([-sub.coef_[0] / 2, sub.coef_[0] / 2])
        sub_int = sub.intercept_ if len(classes) > 2 else np.array([-sub.intercept_[0] / 2, sub.intercept_[0] / 2])
        classes = tuple(str(c) for c in sub.classes_)
    else:
        sub_coef, sub_int = np.zeros((len(classes), Xh.shape[1])), np.zeros(len(classes))
    pad = X.shape[1] - Xh.shape[1]
    domain_coef = clf.coef_[0]
    sub_coef = np.hstack([np.asarray(sub_coef), np.zeros((len(classes), pad))])
    return DomainModel(spec, domain_coef, float(clf.intercept_[0]), classes, sub_coef, np.asarray(sub_int))


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


def save_artifact(model: DomainModel | QualityRater, out_dir: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write model.npz + model.json under ``out_dir``; returns the metadata (with checksum and version)."""
    kind = DOMAIN_KIND if isinstance(model, DomainModel) else RATER_KIND
    arrays = model.arrays()
    checksum = arrays_checksum(arrays)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
    (out / "model.npz").write_bytes(buf.getvalue())
    if isinstance(model, DomainModel):
        version, features = model.spec.version, model.spec.as_dict()
    else:
        version, features = RATER_VERSION, {"version": RATER_VERSION, "rater_features": list(RATER_FEATURES),
                                            "lm_order": model.lm.order, "lm_bits": model.lm.bits}
    full = {"kind": kind, "model_version": f"{kind}-{version}-{checksum[:12]}", "checksum": checksum,
            "feature_version": version, "features": features, **meta}
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
                  feature_spec: FeatureSpec | None = None) -> DomainModel | QualityRater:
    """Load and verify: kind, feature version and parameters, array checksum (and a pinned checksum)."""
    meta = read_metadata(model_dir)
    if meta.get("kind") != expected_kind:
        raise ModelError(f"{model_dir} holds a {meta.get('kind')!r}, expected {expected_kind!r}")
    wanted_version = FEATURE_VERSION if expected_kind == DOMAIN_KIND else RATER_VERSION
    if meta.get("feature_version") != wanted_version:
        raise ModelError(f"{model_dir}: feature version {meta.get('feature_version')!r} does not match this code's "
                         f"{wanted_version!r}; retrain the model (make models)")
    try:
        spec = FeatureSpec.from_dict(meta["features"]) if expected_kind == DOMAIN_KIND else None
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{model_dir}: unusable feature parameters in model.json: {err}") from err
    if feature_spec is not None and spec is not None and spec != feature_spec:
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
    if spec is not None:
        return DomainModel.from_arrays(spec, arrays, meta)
    return QualityRater.from_arrays(arrays, meta)
