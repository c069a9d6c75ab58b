"""Figures of the dataset stages on the real data in ../shared/data (issue 5's closing note).

    .venv/bin/python bench/measure_datasets.py --warehouse /tmp/measure/wh --work /tmp/measure/in [--skip-docs]

1. Writes a small document corpus under --work from the real files (plain text and JSONL that ingest
   reads; folder names keep the medical_/general_ split that ``pretrain`` falls back on when no
   classifier ran): TCM books and the MedicalGPT textbook chapter (medical zh), MedQuAD answers and
   PubMedQA abstracts (medical en), laws and THUCNews titles (general zh), NLTK Brown/ABC/webtext
   (general en). ``--tcm-books N`` caps the books (default 20) to keep the run short.
2. sft -> preference -> ingest -> normalize -> filter -> classify -> dedup -> decontaminate -> (configs/real_data.yaml sources) -> preference -> pretrain -> release.
3. Prints one JSON object: rows/tokens per table, achieved vs requested mixture shares, SFT removals
   by reason (ConFilter included), CF quantiles, objective/subjective pair counts, and 10 dialogues
   ConFilter dropped (5 highest CF, 5 lowest) for reading by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
DATA = REPO.parent / "shared" / "data"


def write_corpus(work: Path, tcm_books: int) -> list[str]:
    """Real documents as ingestible files; returns the folders to ingest."""
    med_zh, med_en, gen_zh, gen_en = (work / d for d in ("medical_zh", "medical_en", "general_zh", "general_en"))
    for d in (med_zh, med_en, gen_zh, gen_en):
        d.mkdir(parents=True, exist_ok=True)
    for book in sorted((DATA / "medical_zh" / "tcm_books").glob("*.txt"))[:tcm_books]:
        (med_zh / book.name).write_bytes(book.read_bytes())  # GB18030 + CRLF, as published
    (med_zh / "fever.txt").write_bytes((DATA / "medical_zh" / "medicalgpt" / "fever.txt").read_bytes())
    with (med_en / "medquad_answers.jsonl").open("w", encoding="utf-8") as fh:
        for f in sorted((DATA / "medical_en" / "medquad").rglob("*.xml")):
            for a in ET.parse(f).getroot().iter("Answer"):
                if a.text and a.text.strip():
                    fh.write(json.dumps({"text": a.text.strip()}) + "\n")
    pubmed = json.loads((DATA / "medical_en" / "pubmedqa" / "ori_pqal.json").read_text(encoding="utf-8"))
    with (med_en / "pubmedqa_abstracts.jsonl").open("w", encoding="utf-8") as fh:
        for pmid, item in sorted(pubmed.items()):
            fh.write(json.dumps({"id": pmid, "text": "\n".join(item["CONTEXTS"])}) + "\n")
    laws = sorted((DATA / "general_zh" / "laws").rglob("*.md"))
    for i, law in enumerate(laws[:400]):
        (gen_zh / f"law_{i:04d}.md").write_bytes(law.read_bytes())
    titles = (DATA / "general_zh" / "thucnews" / "dev_titles.txt").read_text(encoding="utf-8").splitlines()
    with (gen_zh / "thucnews.jsonl").open("w", encoding="utf-8") as fh:
        for k in range(0, len(titles), 20):  # 20 headlines per document
            fh.write(json.dumps({"text": "\n".join(t.split("\t")[0] for t in titles[k:k + 20])}, ensure_ascii=False) + "\n")
    with (gen_en / "nltk.jsonl").open("w", encoding="utf-8") as fh:
        for name in ("abc", "webtext", "inaugural", "state_union"):
            with zipfile.ZipFile(DATA / "general_en" / "nltk" / f"{name}.zip") as z:
                for info in sorted(z.infolist(), key=lambda i: i.filename):
                    if info.is_dir() or not info.filename.endswith(".txt"):
                        continue
                    text = z.read(info).decode("utf-8", errors="replace")
                    for k, para in enumerate(text.split("\n\n")):
                        if len(para.split()) >= 30:
                            fh.write(json.dumps({"id": f"{info.filename}#{k}", "text": para.strip()}) + "\n")
    return [str(d) for d in (med_zh, med_en, gen_zh, gen_en)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--tcm-books", type=int, default=20)
    parser.add_argument("--skip-docs", action="store_true", help="documents already ingested in --warehouse")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)

    from pyspark.sql import functions as F

    from medcorpus import datasets, release, runner
    from medcorpus.config import load_config
    from medcorpus.session import build_spark

    cfg = load_config(REPO / "configs" / "real_data.yaml", [f"warehouse={args.warehouse}", *args.set])
    spark = build_spark(cfg)
    ctx = runner.RunContext.create(spark, cfg)
    reports = {r.stage: r for r in (datasets.run_sft(ctx), datasets.run_preference(ctx))}
    print(json.dumps({k: r.summary() for k, r in reports.items()}, ensure_ascii=False), flush=True)
    folders = write_corpus(Path(args.work), args.tcm_books) if not args.skip_docs else [
        str(p) for p in sorted(Path(args.work).iterdir()) if p.is_dir()]
    # the document stages as `medcorpus run` runs them (GX gates included): pretrain then reads
    # unique_documents (filtered, classified, deduplicated, decontaminated), not raw documents
    for r in runner.run_pipeline(ctx, folders, until="decontaminate"):
        print(json.dumps({r.stage: r.summary()}, ensure_ascii=False), flush=True)
    reports["pretrain"] = datasets.run_pretrain(ctx)
    name = f"measure-{ctx.run_id}"
    release.run_release(ctx, name)
    rel = release.release_row(ctx, name)

    sft = ctx.warehouse.read("sft")
    by_source = {f"{r['source']}/{r['type']}": int(r["n"]) for r in
                 sft.groupBy("source", "type").agg(F.count(F.lit(1)).alias("n")).collect()}
    pairs = {r["kind"]: int(r["n"]) for r in
             ctx.warehouse.read("preference").groupBy("kind").agg(F.count(F.lit(1)).alias("n")).collect()}
    pretrain = {f"{r['mixture']}/{r['component']}/{r['lang']}": int(r["t"]) for r in ctx.warehouse.read("pretrain")
                .groupBy("mixture", "component", "lang").agg(F.sum("token_estimate").alias("t")).collect()}
    out = {
        "release": name,
        "row_counts": rel["row_counts"],
        "token_counts": rel["token_counts"],
        "sft_rows_by_source_type": dict(sorted(by_source.items())),
        "sft_removed_by_reason": reports["sft"].removed_by_reason,
        "sft_note": reports["sft"].note,
        "preference_pairs": pairs,
        "preference_removed": reports["preference"].removed_by_reason,
        "pretrain_tokens_by_cell": dict(sorted(pretrain.items())),
        "pretrain_note": reports["pretrain"].note,
        "confilter_dropped_examples": confilter_examples(ctx),
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))


def confilter_examples(ctx) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """Re-score the candidates as the stage does; show 5 dialogues dropped as too high and 5 as too low."""
    from pyspark.sql import functions as F

    from medcorpus import datasets, sft as sft_mod
    from medcorpus.sft_import import import_sources

    cfg = ctx.config.datasets
    # all sources, as in the stage: the LM trains on the same hash sample, so the CFs are the stage's
    cands, _ = import_sources(ctx.spark, cfg.sft_sources)
    scored = sft_mod.with_scores(cands.filter(F.col("error").isNull()), ctx.config.normalize)
    cf = datasets._confilter_scored(ctx, scored).filter(F.col("confilter").isNotNull())
    pick = lambda df: [  # noqa: E731
        {"source": r["source"], "cf": round(r["confilter"], 3),
         "turns": [f"{m['role']}: {m['content'][:120]}" for m in r["messages"][:4]]} for r in df.collect()]
    high = cf.filter(F.col("confilter") > cfg.confilter_upper).orderBy(F.col("confilter").desc()).limit(5)
    low = cf.filter(F.col("confilter") < cfg.confilter_lower).orderBy("confilter").limit(5)
    return pick(high) + pick(low)


if __name__ == "__main__":
    main()
