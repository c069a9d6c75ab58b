"""``make models``: train the shipped default models on the labelled real data, and validate them honestly.

    python -m medcorpus.classify.modelbuild build --shared-data ../shared/data --out models
    python -m medcorpus.classify.modelbuild report --out models   # the README figures, from each model.json

**Domain classifier.** Every labelled source of ``../shared/data`` (medical vs general by source, see
:mod:`medcorpus.classify.labelled`), at most ``cap`` documents each. Validation is leave-one-source-out: each source
is scored by a model trained on all the *other* sources. The TCM classics are the only classical medical
text, so they are held out by book instead (five folds of whole books). Platt scaling is fitted on those
out-of-fold logits, so ``p_medical`` is calibrated on text of sources the model never saw; the shipped
model is then refitted on everything with that calibration.

``dpo_zh`` (general-purpose Chinese instructions) is a mixed-topic source: many of its prompts are medical
questions, so its source label is not a content label. It is left out of training and of the targets, and
its predicted-medical share is reported apart.

**Quality rater.** Documents are split by file/group: 70% train the fluency model and the pairwise weights,
30% are held out for the degradation benchmark (original vs each degraded twin), the per-source
correlation with length, and the Chinese/English parity on the COVID dialogues (both left out of the
fluency model's reference text). The CMMLU exam sheets (``DOMAIN_ONLY_SOURCES``) train and test
the domain model only.

Both artifacts are arrays + JSON (no pickle), checksummed; ``model.json`` records the data, its version
(a fingerprint of every training text), the parameters and the validation figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medcorpus.classify import labelled as labelled_mod
from medcorpus.classify import rater as rater_mod
from medcorpus.classify.degrade import DEGRADATIONS, degrade, eligible
from medcorpus.classify.textmodel import (
    GENERAL,
    MEDICAL,
    FeatureSpec,
    Featurizer,
    TrainParams,
    save_artifact,
    script_of,
    train_domain,
)
from medcorpus.core.config import REPO_ROOT, load_config

log = logging.getLogger("medcorpus.classify.modelbuild")

MIXED_SOURCES = ("dpo_zh",)
# Edited prose in both scripts (no consultations or chat: English has no conversational reference source, and a
# Chinese-only one would make Chinese dialogues look more fluent than the same kind of English dialogue).
FLUENCY_REFERENCE = ("huatuo", "tcm_books", "medicalgpt", "news_msra", "laws", "niutrans",
                     "medquad", "pubmedqa", "brown", "nltk_state_union", "nltk_inaugural")
PARITY_SOURCES = ("covid_dialogue_zh", "covid_dialogue_en")
# Exam sheets (a question and four options, five times) are the domain model's hard negatives, not documents whose
# writing quality the rater should learn or be benchmarked on.
DOMAIN_ONLY_SOURCES = ("cmmlu_medical", "cmmlu_general")
# A degradation whose pairs mean something only when the original is complete: an original that is itself cut
# mid-sentence (a book chunk that ends inside a hard-wrapped line, one news sentence, a list item) cannot be told
# from a shorter cut of itself by anything in the text. Its pairs are reported for every original and targeted on
# originals that end at a sentence end (``ends_complete``); every other kind is targeted on all originals.
COMPLETE_ORIGINAL_ONLY = ("truncated",)
TARGETS = {"f1_overall": 0.97, "f1_per_language": 0.95, "general_max_predicted_medical": 0.03,
           "medical_min_recall": 0.95, "degradation_min_win": 0.95, "max_abs_spearman_length": 0.3,
           "max_parity_gap": 0.3}


def stable(*parts: str) -> int:
    return int(hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:12], 16)


def fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8")).digest())
    return h.hexdigest()[:16]


def labelled_rows(shared: Path, cap: int) -> list[labelled_mod.LabelledRow]:
    cfg = load_config()
    params = labelled_mod.BuildParams(train_cap=cap, validation_cap=0, validation_percent=0,
                                      synthetic_percent=0, salt="medcorpus-models")
    rows: list[labelled_mod.LabelledRow] = []
    for spec in labelled_mod.SOURCES:
        t0 = time.time()
        got = labelled_mod.rows_of_source(spec, shared, params, cfg.normalize)
        log.info("labelled %-20s %5d rows (%.1f s)", spec.name, len(got), time.time() - t0)
        rows += got
    return rows


# ---------------------------------------------------------------------------------------------------
# domain classifier
# ---------------------------------------------------------------------------------------------------
def domain_folds(sources: np.ndarray, groups: np.ndarray, book_folds: int = 5) -> list[tuple[str, np.ndarray]]:
    """One fold per source; the TCM classics (the only classical medical text) by book, in ``book_folds``."""
    folds = []
    for s in sorted(set(sources.tolist())):
        if s == "tcm_books":
            books = sorted(set(groups[sources == s].tolist()))
            for k in range(book_folds):
                folds.append((f"tcm_books[books {k + 1}/{book_folds}]",
                              (sources == s) & np.isin(groups, books[k::book_folds])))
        else:
            folds.append((s, sources == s))
    return folds


def platt(logits: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1e4, max_iter=1000).fit(logits.reshape(-1, 1), y, sample_weight=weights)
    return float(clf.coef_[0][0]), float(clf.intercept_[0])


def prf(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "n": int(len(y))}


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    edges = np.linspace(0, 1, bins + 1)
    table = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if m.any():
            table.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": int(m.sum()), "mean_p": round(float(p[m].mean()), 4),
                          "observed_medical": round(float(y[m].mean()), 4)})
    return table


def validate_domain(rows: list[labelled_mod.LabelledRow], spec: FeatureSpec, params: TrainParams,
                    threshold: float) -> tuple[dict[str, Any], tuple[float, float], Any]:
    """Leave-one-source-out logits, Platt calibration, per-source and per-language figures."""
    from sklearn.metrics import roc_auc_score

    texts = [r.text for r in rows]
    X = Featurizer(spec).transform(texts)
    y = np.array([1 if r.label == MEDICAL else 0 for r in rows])
    sources = np.array([r.source for r in rows])
    groups = np.array([r.group for r in rows])
    scripts = np.array([script_of(t) for t in texts])
    mixed = np.isin(sources, MIXED_SOURCES)
    oof = np.zeros(len(rows))
    for name, test in domain_folds(sources, groups):
        t0 = time.time()
        train = ~test & ~mixed
        model = train_domain(X[train], [MEDICAL if v else GENERAL for v in y[train]], [None] * int(train.sum()),
                             spec, params, scripts[train].tolist())
        oof[test] = model.logits(X[test])
        log.info("domain fold %-28s %5d held out (%.1f s)", name, int(test.sum()), time.time() - t0)
    scored = ~mixed
    # unweighted: p_medical should match the observed share of medical text at each score, not a balanced prior
    a, b = platt(oof[scored], y[scored], np.ones(int(scored.sum())))
    p = 1.0 / (1.0 + np.exp(-(a * oof + b)))
    pred = p >= threshold
    per_source = {}
    for s in sorted(set(sources.tolist())):
        m = sources == s
        label = MEDICAL if y[m][0] else GENERAL
        per_source[s] = {"label": "mixed" if s in MIXED_SOURCES else label, "n": int(m.sum()),
                         "script": Counter(scripts[m].tolist()).most_common(1)[0][0],
                         "predicted_medical": round(float(pred[m].mean()), 4)}
    by_lang = {lang: prf(pred[scored & (scripts == sc)], y[scored & (scripts == sc)])
               for lang, sc in (("zh", "han"), ("en", "other"))}
    report = {
        "method": "leave-one-source-out (tcm_books: 5 folds of whole books); Platt scaling on the out-of-fold "
                  "logits; threshold " + str(threshold),
        "overall": prf(pred[scored], y[scored]),
        "by_language": by_lang,
        "roc_auc": round(float(roc_auc_score(y[scored], oof[scored])), 4),
        "per_source": per_source,
        "reliability": reliability(p[scored], y[scored]),
        "calibration": {"a": round(a, 6), "b": round(b, 6)},
        "mixed_sources_excluded": list(MIXED_SOURCES),
    }
    return report, (a, b), X


def domain_targets(report: dict[str, Any]) -> dict[str, Any]:
    gen = {s: v["predicted_medical"] for s, v in report["per_source"].items() if v["label"] == GENERAL}
    med = {s: v["predicted_medical"] for s, v in report["per_source"].items() if v["label"] == MEDICAL}
    return {
        "f1_overall": {"value": report["overall"]["f1"], "target": TARGETS["f1_overall"],
                       "met": report["overall"]["f1"] >= TARGETS["f1_overall"]},
        "f1_per_language": {"value": {k: v["f1"] for k, v in report["by_language"].items()},
                            "target": TARGETS["f1_per_language"],
                            "met": all(v["f1"] >= TARGETS["f1_per_language"] for v in report["by_language"].values())},
        "general_sources_over_3pct": {s: v for s, v in gen.items() if v > TARGETS["general_max_predicted_medical"]},
        "medical_sources_under_95pct_recall": {s: v for s, v in med.items() if v < TARGETS["medical_min_recall"]},
    }


# ---------------------------------------------------------------------------------------------------
# quality rater
# ---------------------------------------------------------------------------------------------------
def rater_split(rows: list[labelled_mod.LabelledRow], bench_percent: int = 30) -> tuple[list[Any], list[Any]]:
    bench = [r for r in rows if stable("rater-bench", r.source, r.group) % 100 < bench_percent]
    train = [r for r in rows if stable("rater-bench", r.source, r.group) % 100 >= bench_percent]
    return train, bench


def train_default_rater(train: list[labelled_mod.LabelledRow], max_ref: int = 8000,
                        max_pairs: int = 6000) -> tuple[rater_mod.QualityRater, dict[str, Any]]:
    """Fluency reference and pair texts from disjoint halves of the files (the pairs must be unseen text)."""
    half = {r.group: stable("rater-half", r.source, r.group) % 2 for r in train}
    reference = [r.text for r in sorted(train, key=lambda r: stable("ref", r.text[:200]))
                 if r.source in FLUENCY_REFERENCE and half[r.group] == 0][:max_ref]
    pair_texts = [r.text for r in sorted(train, key=lambda r: stable("pair", r.text[:200]))
                  if r.source not in MIXED_SOURCES and half[r.group] == 1][:max_pairs]
    return rater_mod.train_rater(reference, pair_texts)


def validate_rater(model: rater_mod.QualityRater, bench: list[labelled_mod.LabelledRow],
                   per_source: int = 120) -> dict[str, Any]:
    from scipy.stats import spearmanr

    by_source: dict[str, list[labelled_mod.LabelledRow]] = {}
    for r in sorted(bench, key=lambda r: stable("b", r.text[:200])):
        by_source.setdefault(r.source, []).append(r)
    docs = [r for rs in by_source.values() for r in [x for x in rs if eligible(x.text)][:per_source]]
    originals = [r.text for r in docs]
    so = model.predict(originals)
    complete = np.array([rater_mod.ends_complete(t) for t in originals])
    pairs: dict[str, Any] = {}
    for kind in DEGRADATIONS:
        twins = [degrade(t, kind, stable(kind, t[:200])) for t in originals]
        differs = np.array([t != o for t, o in zip(twins, originals)])
        st = model.predict(twins)
        wins = (so > st)[differs]
        wins_complete = (so > st)[differs & complete]
        pairs[kind] = {"pairs": int(differs.sum()), "identical_twins_skipped": int((~differs).sum()),
                       "original_wins": round(float(wins.mean()), 4) if len(wins) else None,
                       "pairs_complete_original": int((differs & complete).sum()),
                       "original_wins_complete_original": round(float(wins_complete.mean()), 4)
                       if len(wins_complete) else None,
                       "mean_original": round(float(so[differs].mean()), 3) if len(wins) else None,
                       "mean_twin": round(float(st[differs].mean()), 3) if len(wins) else None}
    sources = {}
    for s, rs in sorted(by_source.items()):
        texts = [r.text for r in rs[:400]]
        q = model.predict(texts)
        rho = spearmanr(q, np.log([max(len(t), 1) for t in texts])).correlation if len(texts) > 5 else float("nan")
        sources[s] = {"n": len(texts), "mean_quality": round(float(q.mean()), 3),
                      "pass_2_5": round(float((q >= 2.5).mean()), 4),
                      "spearman_log_length": None if np.isnan(rho) else round(float(rho), 3)}
    targeted = {k: (v["original_wins_complete_original"] if k in COMPLETE_ORIGINAL_ONLY else v["original_wins"]) or 0.0
                for k, v in pairs.items()}
    zh, en = (sources.get(s, {}).get("mean_quality") for s in PARITY_SOURCES)
    gap = round(float(zh - en), 3) if zh is not None and en is not None else None
    worst_rho = max((abs(v["spearman_log_length"]) for v in sources.values() if v["spearman_log_length"] is not None),
                    default=0.0)
    return {
        "method": "held-out 30% of files/groups of every source; each eligible original (200+ chars, 4+ "
                  "sentences) against its degraded twin of each kind; a tie counts as a loss",
        "degradation_pairs": pairs,
        "per_source": sources,
        "parity_covid_zh_minus_en": gap,
        "targets": {
            "degradation_min_win": {"value": min(targeted.values()), "target": TARGETS["degradation_min_win"],
                                    "measured_on": {k: ("complete originals" if k in COMPLETE_ORIGINAL_ONLY else
                                                        "all originals") for k in pairs},
                                    "below_target": {k: v for k, v in targeted.items()
                                                     if v < TARGETS["degradation_min_win"]}},
            "max_abs_spearman_length": {"value": worst_rho, "target": TARGETS["max_abs_spearman_length"],
                                        "over_target": {s: v["spearman_log_length"] for s, v in sources.items()
                                                        if v["spearman_log_length"] is not None and
                                                        abs(v["spearman_log_length"]) > TARGETS["max_abs_spearman_length"]}},
            "parity_gap": {"value": gap, "target": TARGETS["max_parity_gap"],
                           "met": gap is not None and abs(gap) <= TARGETS["max_parity_gap"]},
        },
    }


# ---------------------------------------------------------------------------------------------------
# build + validate
# ---------------------------------------------------------------------------------------------------
def build(shared: Path, out: Path, cap: int = 2000, only: str | None = None) -> dict[str, Any]:
    """Train the shipped models (both, or ``only`` 'domain' / 'rater'), validate them, write the artifacts;
    returns the validation report (for a model not rebuilt, the report stored in its model.json)."""
    cfg = load_config().classify
    spec = FeatureSpec(hash_bits=cfg.hash_bits, max_chars=cfg.max_chars)
    params = TrainParams(c_domain=cfg.c_domain, c_subdomain=cfg.c_subdomain, ridge_alpha=cfg.ridge_alpha,
                         max_iter=cfg.max_iter)
    rows = labelled_rows(shared, cap)
    data_version = f"shared_data:{labelled_mod.BUILDER_VERSION}:cap{cap}#{fingerprint([r.text for r in rows])}"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    built_by = "make models (python -m medcorpus.classify.modelbuild build)"
    report: dict[str, Any] = {"training_data": data_version}
    if only in (None, "domain"):
        domain_report, calib, X = validate_domain(rows, spec, params, cfg.medical_threshold)
        domain_report["targets"] = domain_targets(domain_report)
        keep = np.array([r.source not in MIXED_SOURCES for r in rows])
        kept = [r for r, k in zip(rows, keep) if k]
        model = train_domain(X[keep], [r.label for r in kept], [r.subdomain for r in kept], spec, params,
                             [script_of(r.text) for r in kept])
        model.calibration = calib
        sources = {s: int(n) for s, n in Counter(r.source for r in rows).items()}
        save_artifact(model, out / "domain", {
            "training_data": {"version": data_version, "rows": int(keep.sum()), "rows_per_source": sources,
                              "excluded_mixed_sources": list(MIXED_SOURCES)},
            "params": {"c_domain": cfg.c_domain, "c_subdomain": cfg.c_subdomain, "max_iter": cfg.max_iter,
                       "medical_threshold": cfg.medical_threshold, "calibration": "platt, out of fold"},
            "validation": domain_report, "trained_at": now, "built_by": built_by})
        report["domain"] = domain_report
    else:
        report["domain"] = _stored_validation(out / "domain")
    if only in (None, "rater"):
        rater_train, rater_bench = rater_split([r for r in rows if r.source not in DOMAIN_ONLY_SOURCES])
        rater, rater_info = train_default_rater(rater_train)
        rater_report = validate_rater(rater, rater_bench)
        save_artifact(rater, out / "rater", {
            "training_data": {"version": data_version, "train_rows": len(rater_train), "bench_rows": len(rater_bench),
                              "fluency_reference_sources": list(FLUENCY_REFERENCE)},
            "params": rater_info, "validation": rater_report, "trained_at": now, "built_by": built_by})
        report["rater"] = rater_report
    else:
        report["rater"] = _stored_validation(out / "rater")
    return report


def _stored_validation(folder: Path) -> dict[str, Any] | None:
    path = folder / "model.json"
    return json.loads(path.read_text(encoding="utf-8")).get("validation") if path.exists() else None


def markdown(models: Path) -> str:
    """The README's "Extraction quality" figures, rendered from the validation stored in each model.json."""
    lines: list[str] = []
    dom, rat = _stored_validation(models / "domain"), _stored_validation(models / "rater")
    for name in ("domain", "rater"):
        meta = json.loads((models / name / "model.json").read_text(encoding="utf-8"))
        lines.append(f"- `{name}`: `{meta['model_version']}`")
    if dom:
        o, by = dom["overall"], dom["by_language"]
        lines += ["", f"Overall P {o['precision']} R {o['recall']} F1 **{o['f1']}** (n={o['n']}); "
                  + "; ".join(f"{k} F1 **{v['f1']}** (P {v['precision']}, R {v['recall']})" for k, v in by.items())
                  + f"; ROC AUC {dom['roc_auc']}; Platt a={dom['calibration']['a']}, b={dom['calibration']['b']}.",
                  "", "| source | label | script | docs | predicted medical |", "|---|---|---|---|---|"]
        for s, v in dom["per_source"].items():
            lines.append(f"| {s} | {v['label']} | {v['script']} | {v['n']} | {100 * v['predicted_medical']:.1f}% |")
        lines += ["", "| p_medical bin | docs | mean p | observed medical |", "|---|---|---|---|"]
        lines += [f"| {r['bin']} | {r['n']} | {r['mean_p']} | {r['observed_medical']} |" for r in dom["reliability"]]
    if rat:
        lines += ["", "| degradation | pairs | original ranked higher | complete originals (pairs) | ranked higher "
                      "| mean original | mean twin |", "|---|---|---|---|---|---|---|"]
        for k, v in rat["degradation_pairs"].items():
            win = "n/a" if v["original_wins"] is None else f"{100 * v['original_wins']:.1f}%"
            full = v.get("original_wins_complete_original")
            win_full = "n/a" if full is None else f"{100 * full:.1f}%"
            mark = " (targeted)" if k in COMPLETE_ORIGINAL_ONLY else ""
            lines.append(f"| {k} | {v['pairs']} | {win} | {v.get('pairs_complete_original', 'n/a')} | {win_full}{mark} | "
                         f"{v['mean_original']} | {v['mean_twin']} |")
        lines += ["", "| source | docs | mean quality | ≥ 2.5 | Spearman(quality, log length) |", "|---|---|---|---|---|"]
        for s, v in rat["per_source"].items():
            lines.append(f"| {s} | {v['n']} | {v['mean_quality']} | {100 * v['pass_2_5']:.0f}% | "
                         f"{v['spearman_log_length']} |")
        t = rat["targets"]
        lines += ["", f"Worst degradation {t['degradation_min_win']['value']} (below 0.95: "
                  f"{t['degradation_min_win']['below_target'] or 'none'}); |Spearman| over 0.3: "
                  f"{t['max_abs_spearman_length']['over_target'] or 'none'}; zh − en COVID gap "
                  f"{rat['parity_covid_zh_minus_en']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m medcorpus.classify.modelbuild", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["build", "report"],
                    help="build: train, validate and write the models; report: print the README figures (markdown) "
                         "from the validation stored in --out/*/model.json")
    ap.add_argument("--shared-data", default=str(REPO_ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO_ROOT / "models"))
    ap.add_argument("--cap", type=int, default=2000, help="most documents per source")
    ap.add_argument("--json", default=None, help="also write the validation report here")
    ap.add_argument("--only", choices=["domain", "rater"], default=None, help="rebuild one model, keep the other")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.command == "report":
        print(markdown(Path(args.out)), end="")
        return 0
    shared = Path(args.shared_data)
    if not shared.is_dir():
        print(f"error: shared data folder not found: {shared}", file=sys.stderr)
        return 2
    report = build(shared, Path(args.out), args.cap, args.only)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: (report[k] or {}).get("targets") for k in ("domain", "rater")}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
