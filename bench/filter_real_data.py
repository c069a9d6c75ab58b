"""Measure the filter stage on samples of the real corpora in ../shared/data (medical and general, zh and en).

    .venv/bin/python bench/filter_real_data.py [--per-source 120] [--seed 0] [--out build/filter_real_data]

Documents are cut the way ingest cuts them (a text file is one document, a JSON/CSV record is one
document), normalized with the normalize stage's transform, then filtered with the default config.
Prints the share removed per source and per rule, and writes ``removed_sample.jsonl`` (20 removals drawn
at random, spread across sources, for reading by hand) and ``summary.json`` under ``--out``. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
DATA = REPO.parent / "shared" / "data"

MEDICAL = {"huatuo", "toyhom_csv", "cmtmedqa", "covid_zh", "tcm_books", "fever_txt", "medquad", "pubmedqa", "covid_en"}


def _blocks(path: Path, encoding: str = "utf-8") -> list[str]:
    """COVID-Dialogue files: records start with 'id=N'."""
    text = path.read_text(encoding=encoding, errors="replace")
    return [b.strip() for b in re.split(r"(?m)^id=\d+\s*$", text) if b.strip()]


def load_sources(n: int, rng: random.Random) -> dict[str, list[str]]:
    """{source: texts} with at most ``n`` documents per source."""
    out: dict[str, list[str]] = {}

    def take(name: str, items: list[str]) -> None:
        items = [t for t in items if t and t.strip()]
        out[name] = rng.sample(items, min(n, len(items)))

    huatuo = (DATA / "medical_zh/huatuo/llama_data.json").read_text(encoding="utf-8")
    rows = [json.loads(x) for x in huatuo.splitlines() if x.strip()]
    take("huatuo", [r["instruction"] + "\n" + r.get("input", "") + "\n" + r["output"] for r in rows])
    with (DATA / "medical_zh/toyhom_dialogue/im_sample_5000-6000.gb18030.csv").open(encoding="gb18030", errors="replace") as f:
        take("toyhom_csv", [f"{r['title']}\n{r['ask']}\n{r['answer']}" for r in csv.DictReader(f)])
    dialogues = json.loads((DATA / "medical_zh/cmtmedqa/CMtMedQA_test.json").read_text(encoding="utf-8"))
    take("cmtmedqa", ["\n".join(q + "\n" + a for q, a in d.get("history", [])) + "\n"
                      + d.get("instruction", d.get("instruct", "")) + "\n" + d["output"] for d in dialogues])
    take("covid_zh", _blocks(DATA / "medical_zh/covid_dialogue/COVID-Dialogue-Dataset-Chinese.txt"))
    books = sorted((DATA / "medical_zh/tcm_books").glob("*.txt"))
    take("tcm_books", [p.read_bytes().decode("gb18030", errors="replace") for p in rng.sample(books, min(n, 60))])
    fever = (DATA / "medical_zh/medicalgpt/fever.txt").read_text(encoding="utf-8", errors="replace")
    take("fever_txt", [p for p in re.split(r"\n\s*\n", fever) if len(p) > 0])

    qa = []
    for p in rng.sample(sorted((DATA / "medical_en/medquad").glob("*/*.xml")), min(4 * n, 6000)):
        try:
            for pair in ET.parse(p).getroot().iter("QAPair"):
                q, a = pair.findtext("Question") or "", pair.findtext("Answer") or ""
                qa.append(q.strip() + "\n" + a.strip())
        except ET.ParseError:
            continue
    take("medquad", qa)
    pq = json.loads((DATA / "medical_en/pubmedqa/ori_pqal.json").read_text(encoding="utf-8"))
    take("pubmedqa", [v["QUESTION"] + "\n" + "\n".join(v["CONTEXTS"]) + "\n" + v.get("LONG_ANSWER", "") for v in pq.values()])
    take("covid_en", _blocks(DATA / "medical_en/covid_dialogue/COVID-Dialogue-Dataset-English.txt"))

    with (DATA / "general_zh/reviews/hotel_reviews.csv").open(encoding="utf-8") as f:
        take("hotel_reviews", [r["review"] for r in csv.DictReader(f)])
    with zipfile.ZipFile(DATA / "general_zh/reviews/online_shopping_10_cats.zip") as z:
        with z.open("online_shopping_10_cats.csv") as f:
            take("shopping_reviews", [r["review"] for r in csv.DictReader(io.TextIOWrapper(f, encoding="utf-8"))])
    laws = sorted((DATA / "general_zh/laws").glob("*/*.md"))
    take("laws", [p.read_text(encoding="utf-8") for p in rng.sample(laws, min(n, len(laws)))])
    targets = sorted((DATA / "general_zh/niutrans").rglob("target.txt"))
    take("niutrans_modern", [p.read_text(encoding="utf-8") for p in rng.sample(targets, min(n, len(targets)))])
    originals = sorted((DATA / "general_zh/niutrans").rglob("text.txt"))
    take("niutrans_classical", [p.read_text(encoding="utf-8") for p in rng.sample(originals, min(n, len(originals)))])
    kd = []
    for p in sorted((DATA / "general_zh/kdconv").glob("*/*.json")):
        for d in json.loads(p.read_text(encoding="utf-8")):
            kd.append("\n".join(m["message"] for m in d.get("messages", [])))
    take("kdconv", kd)
    take("thucnews_titles", [line.split("\t")[0] for line in
                             (DATA / "general_zh/thucnews/dev_titles.txt").read_text(encoding="utf-8").splitlines()])
    for name in ("webtext", "inaugural", "state_union", "abc"):
        with zipfile.ZipFile(DATA / f"general_en/nltk/{name}.zip") as z:
            files = [i for i in z.namelist() if not i.endswith("/") and "README" not in i]
            docs = [z.read(i).decode("utf-8", errors="replace") for i in files]
        if name == "abc":  # two big files of news items separated by blank lines
            docs = [p for d in docs for p in re.split(r"\n\s*\n", d) if p.strip()]
        take(f"nltk_{name}", docs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-source", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, default=20, help="removals drawn for reading by hand")
    parser.add_argument("--out", default="build/filter_real_data")
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. filter.zh_min_chars=10")
    args = parser.parse_args(argv)
    if not DATA.exists():
        print(f"real data not available at {DATA}", file=sys.stderr)
        return 2

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from medcorpus.core.config import load_config
    from medcorpus.core.session import build_spark
    from medcorpus.filters import rules as filters
    from medcorpus.text import normalize

    config = load_config(overrides=["spark.shuffle_partitions=4", *args.set])
    rng = random.Random(args.seed)
    sources = load_sources(args.per_source, rng)
    rows = [(f"{src}-{i}", src, src, "text", None, None, None, t) for src, texts in sources.items() for i, t in enumerate(texts)]
    spark = build_spark(config)
    raw = spark.createDataFrame(
        rows, "doc_id string, source string, source_file string, source_format string, url string, title string, "
        "meta string, text string"
    ).repartition(8)
    docs = normalize.normalize_documents(raw, config.normalize, "measure").filter(~normalize.is_empty_text()).cache()
    redacted = filters.redact_pii(docs, config.filter).cache()
    decided = filters.decide(filters.score_documents(redacted, config.filter), config.filter).cache()

    per = decided.groupBy("source", F.coalesce("filter_rule", F.lit("kept")).alias("rule")).count().collect()
    counts: dict[str, dict[str, int]] = {}
    for r in per:
        counts.setdefault(r["source"], {})[r["rule"]] = int(r["count"])
    pii_rows = decided.select(F.explode("pii_counts")).groupBy("key").agg(F.sum("value").alias("n")).collect()
    pii = {r["key"]: int(r["n"]) for r in pii_rows}

    def share(group: list[str]) -> dict[str, float]:
        total = sum(sum(counts[s].values()) for s in group)
        by_rule: dict[str, int] = {}
        for s in group:
            for rule, k in counts[s].items():
                if rule != "kept":
                    by_rule[rule] = by_rule.get(rule, 0) + k
        return {"docs": total, "removed": round(sum(by_rule.values()) / max(total, 1), 4),
                **{k: round(v / max(total, 1), 4) for k, v in sorted(by_rule.items(), key=lambda x: -x[1])}}

    medical = [s for s in counts if s in MEDICAL]
    general = [s for s in counts if s not in MEDICAL]
    summary = {
        "per_source": {s: share([s]) for s in sorted(counts)},
        "medical": share(medical),
        "general": share(general),
        "all": share(list(counts)),
        "pii_redactions": pii,
        "config_hash": config.hash(),
    }
    print(f"{'source':<20} {'docs':>5} {'removed':>8}  top rules")
    for s, v in summary["per_source"].items():
        rules = ", ".join(f"{k}={v2:.1%}" for k, v2 in list(v.items())[2:6])
        print(f"{s:<20} {v['docs']:>5} {v['removed']:>8.1%}  {rules}")
    for g in ("medical", "general", "all"):
        v = summary[g]
        shares = ", ".join(f"{k}={v2:.2%}" for k, v2 in list(v.items())[2:])
        print(f"{g.upper():<20} {v['docs']:>5} {v['removed']:>8.1%}  " + shares)
    print("PII redactions:", pii)

    removed = decided.filter(F.col("filter_rule").isNotNull())
    # spread across sources: the k-th removal (in seeded hash order) of every source before any (k+1)-th
    in_source = Window.partitionBy("source").orderBy("_r", "doc_id")
    sample = (
        removed.withColumn("_r", F.xxhash64("doc_id", F.lit(args.seed)))
        .withColumn("_k", F.row_number().over(in_source))
        .orderBy("_k", "_r", "doc_id").limit(args.sample)
        .select("doc_id", "source", "lang", "filter_rule", "filter_value", "filter_threshold",
                F.substring("text", 1, 400).alias("text"))
        .collect()
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    with (out / "removed_sample.jsonl").open("w", encoding="utf-8") as f:
        for r in sample:
            f.write(json.dumps(r.asDict(), ensure_ascii=False) + "\n")
    print(f"wrote {out}/summary.json and {out}/removed_sample.jsonl ({len(sample)} removals)")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
