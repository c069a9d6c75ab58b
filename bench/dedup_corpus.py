"""A real-corpus sample for dedup quality and speed: Toyhom CSV + TXT (natural cross-format near dups),
Huatuo instructions, MedQuAD answers (template families), plus planted edited copies; and the brute-force
ground truth (exact Jaccard of the same shingles for every pair with any shared shingle, via a sparse
matrix product). Shared by bench/bench_dedup.py and tests/test_dedup_shared_data.py.
"""

from __future__ import annotations

import csv
import glob
import json
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from medcorpus.core.config import DedupConfig
from medcorpus.dedup.minhash import shingles
from medcorpus.text.script import HAN as _HAN

SOURCES = ("toyhom_csv", "toyhom_txt", "huatuo", "medquad")


def _toyhom_csv(root: Path) -> list[tuple[str, str]]:
    path = root / "medical_zh/toyhom_dialogue/im_sample_5000-6000.gb18030.csv"
    with path.open(encoding="gb18030", errors="replace", newline="") as fh:
        return [("toyhom_csv", f"{r['title']},{r['ask']}\n{r['answer']}") for r in csv.DictReader(fh)]


def _toyhom_txt(root: Path) -> list[tuple[str, str]]:
    text = (root / "medical_zh/toyhom_dialogue/im_dialogue.gb18030.txt").read_bytes().decode("gb18030", "replace")
    blocks = [b.strip() for b in re.split(r"\r?\n\s*\r?\n", text) if b.strip()]
    return [("toyhom_txt", b) for b in blocks]


def _huatuo(root: Path) -> list[tuple[str, str]]:
    out = []
    with (root / "medical_zh/huatuo/llama_data.json").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                out.append(("huatuo", f"{r.get('instruction', '')}\n{r.get('output', '')}"))
    return out


def _medquad(root: Path, max_files: int) -> list[tuple[str, str]]:
    out = []
    for path in sorted(glob.glob(str(root / "medical_en/medquad/*/*.xml")))[:max_files]:
        try:
            doc = ET.parse(path).getroot()
        except ET.ParseError:
            continue
        for pair in doc.iter("QAPair"):
            answer = (pair.findtext("Answer") or "").strip()
            if len(answer) > 80:
                out.append(("medquad", answer))
    return out


def _edit(text: str, rate: float, rng: random.Random) -> str:
    """Substitute a share ``rate`` of the units (characters for Chinese, words otherwise)."""
    if len(_HAN.findall(text[:500])) > 50:
        chars = list(text)
        for i in rng.sample(range(len(chars)), int(len(chars) * rate)):
            chars[i] = chr(0x4E00 + rng.randrange(20000))
        return "".join(chars)
    words = text.split()
    for i in rng.sample(range(len(words)), int(len(words) * rate)):
        words[i] = f"z{rng.randrange(10**6)}"
    return " ".join(words)


def build_corpus(root: Path, n_docs: int, plant_share: float = 0.1, seed: int = 7) -> list[tuple[str, str, str]]:
    """(doc_id, source, text): ``n_docs`` real documents (sources interleaved; natural dups kept) plus
    ``plant_share`` x n edited copies with substitution rates uniform in [0, 0.1] (Jaccard of 5-grams ~1 down to
    ~0.45). Exact duplicates (same text after whitespace removal) are dropped so every tool sees only near duplicates."""
    rng = random.Random(seed)
    pools = [_toyhom_csv(root), _toyhom_txt(root), _huatuo(root), _medquad(root, max_files=2000)]
    for pool in pools[2:]:
        rng.shuffle(pool)
    # Toyhom CSV and TXT stay in file order so their overlapping parts come together
    docs: list[tuple[str, str]] = []
    quotas = [0.3, 0.2, 0.3, 0.2]
    for pool, q in zip(pools, quotas):
        docs.extend(pool[: int(n_docs * q)])
    return _numbered_unique(docs + _planted_copies(docs, plant_share, rng), "doc", set())


def _planted_copies(docs: list[tuple[str, str]], share: float, rng: random.Random) -> list[tuple[str, str]]:
    """Edited copies of a random ``share`` of ``docs``, substitution rates uniform in [0, 0.1]."""
    picked = (docs[i] for i in rng.sample(range(len(docs)), int(len(docs) * share)))
    return [(f"{source}_planted", _edit(text, rng.uniform(0.0, 0.1), rng)) for source, text in picked]


def _numbered_unique(docs: list[tuple[str, str]], prefix: str, seen: set[str]) -> list[tuple[str, str, str]]:
    """(id, source, text) of the documents whose whitespace-free text is neither empty nor in ``seen``
    (which grows); ids are ``prefix`` + the position in ``docs``."""
    out = []
    for i, (source, text) in enumerate(docs):
        key = re.sub(r"\s+", "", text)
        if key in seen or not key:
            continue
        seen.add(key)
        out.append((f"{prefix}{i:07d}", source, text))
    return out


# sources of the core sample above; the mixed corpus adds every other source medcorpus.classify.labelled reads
_CORE_SOURCES = {"toyhom_dialogue", "huatuo", "medquad"}


def build_mixed_corpus(root: Path, extra_chars: int, core_docs: int = 20000, plant_share: float = 0.1,
                       seed: int = 7) -> list[tuple[str, str, str]]:
    """The core sample (``build_corpus(root, core_docs)``) plus about ``extra_chars`` characters of documents from
    every other real source in ``root`` (TCM books, classical and modern Chinese prose, reviews, news, laws,
    poems, dialogues, PubMedQA, the NLTK English corpora: medcorpus.classify.labelled's readers, books cut into
    ~1,200-character chunks), a deterministic sample in proportion to each source's size, with ``plant_share``
    edited copies of the added documents. A corpus where per-document cost, not start-up, decides the speed."""
    from medcorpus.classify.labelled import SOURCES

    rng = random.Random(seed)
    core = build_corpus(root, core_docs, plant_share=plant_share, seed=seed)
    extra = [(s.name, t) for s in SOURCES if s.name not in _CORE_SOURCES for _, t in s.reader(root) if t.strip()]
    total = sum(len(t) for _, t in extra)
    keep = min(1.0, extra_chars / max(total, 1))
    extra = [d for d in extra if rng.random() < keep]
    seen = {re.sub(r"\s+", "", t) for _, _, t in core}
    return core + _numbered_unique(extra + _planted_copies(extra, plant_share, rng), "mix", seen)


def lang_of(text: str) -> str:
    return "zh" if len(_HAN.findall(text[:500])) > 0.3 * len(re.sub(r"\s+", "", text[:500]) or "x") else "en"


def true_pairs(corpus: list[tuple[str, str, str]], cfg: DedupConfig, block: int = 4000) -> set[tuple[str, str]]:
    """Every pair with exact Jaccard of the dedup shingles >= threshold (all pairs sharing a shingle are
    scored exactly; pairs sharing none have Jaccard 0)."""
    from scipy import sparse

    sets = [np.unique(shingles(text, lang_of(text), cfg)) for _, _, text in corpus]
    vocab, inverse = np.unique(np.concatenate(sets), return_inverse=True)
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    x = sparse.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, inverse)), shape=(len(sets), len(vocab)))
    xt = x.T.tocsr()
    sizes = np.array([len(s) for s in sets])
    ids = [d for d, _, _ in corpus]
    out = set()
    for start in range(0, len(sets), block):  # row blocks bound the memory of the pair counts
        inter = (x[start : start + block] @ xt).tocoo()
        r, c, v = inter.row + start, inter.col, inter.data
        mask = r < c
        r, c, v = r[mask], c[mask], v[mask]
        keep = v / (sizes[r] + sizes[c] - v) >= cfg.threshold
        out.update((min(ids[a], ids[b]), max(ids[a], ids[b])) for a, b in zip(r[keep], c[keep]))
    return out


def pair_scores(predicted: set[tuple[str, str]], truth: set[tuple[str, str]]) -> dict[str, float]:
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "true_pairs": len(truth), "predicted_pairs": len(predicted)}
