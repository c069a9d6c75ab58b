"""Figures of the dataset stages on the real data in ../shared/data (issue 5's closing note).

    .venv/bin/python bench/measure_datasets.py --warehouse /tmp/measure/wh --work /tmp/measure/in [--skip-docs]

1. Writes a small document corpus under --work from the real files (plain text and JSONL that ingest
   reads; folder names keep the medical_/general_ split that ``pretrain`` falls back on when no
   classifier ran): TCM books and the MedicalGPT textbook chapter (medical zh), MedQuAD answers and
   PubMedQA abstracts (medical en), laws and THUCNews titles (general zh), NLTK Brown/ABC/webtext
   (general en). ``--tcm-books N`` caps the books (default 20) to keep the run short.
   A book is written as one document per section (``<篇名>`` in the TCM books, ``第N节`` in the textbook
   chapter), JSONL in UTF-8: a whole book as one document is the wrong unit for pretraining. The rater
   scores, and the mixtures sample, a 100k-token book as one item, so the ``boost`` mixture's per-language
   top-30% quality cut over ~20 zh books held a few hundred tokens and that mixture could not be built.
   Domain labels and quality scores come from the models in classify.domain_model_dir/rater_model_dir. The
   default there is the seed-trained pair ``make run`` trains (452 rows): on this corpus it labels most law
   documents and about half of the NLTK paragraphs medical. For figures that mean something, pass the pair
   trained on ../shared/data (``medcorpus build-labelled``, ``train-classifier --input labelled_documents``,
   ``train-rater``): ``--set classify.domain_model_dir=DIR/domain --set classify.rater_model_dir=DIR/rater``.
2. sft (configs/real_data.yaml sources) -> preference -> ingest -> normalize -> filter -> classify -> dedup ->
   decontaminate -> pretrain -> release.
3. Prints one JSON object: rows/tokens per table, achieved vs requested mixture shares, SFT removals
   by reason (ConFilter included), CF quantiles, objective/subjective pair counts, the release's pinned
   table versions, and 10 dialogues ConFilter dropped (a seeded sample, up to 5 per bound) to read by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
DATA = REPO.parent / "shared" / "data"

_TEXTBOOK_SECTION = re.compile(r"^第[一二三四五六七八九十百零〇—－-]{1,4}节")


def tcm_sections(book: str) -> list[tuple[str, str]]:
    """A TCM book (decoded) -> (title, text) per ``<篇名>`` section.

    The published files mark each section with a ``<篇名>TITLE`` line, its body's first line starts with
    ``内容：``, and ``<目录>`` lines repeat the chapter path before every section. The markers are dropped
    (kept in, they made whole books fail the repeated-lines filter); the title heads the text. Sections
    with an empty body and the book's header block (书名/作者/朝代) are left out. Lines stay hard-wrapped as
    published.
    """
    sections: list[tuple[str, str]] = []
    title: str | None = None
    body: list[str] = []

    def flush() -> None:
        text = "\n".join(body).strip()
        if title is not None and text and not text.startswith("书名："):  # the book's header block
            sections.append((title, f"{title}\n{text}" if title else text))

    for line in book.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.startswith("<目录>"):
            continue
        if line.startswith("<篇名>"):
            flush()
            title, body = line[len("<篇名>"):].strip(), []
            continue
        if not any(body) and line.startswith("内容："):
            line = line[len("内容："):]
        body.append(line.rstrip())
    flush()
    return sections


def textbook_sections(text: str) -> list[tuple[str, str]]:
    """The textbook chapter (fever.txt) -> (heading, text) per ``第N节`` section (the heading line stays in the
    text: in this file it often runs on into the first sentence); the text before the first heading is one more."""
    sections: list[tuple[str, str]] = []
    heading, body = "", []
    for line in text.replace("\r\n", "\n").split("\n"):
        if _TEXTBOOK_SECTION.match(line.strip()):
            if any(body):
                sections.append((heading, "\n".join(body).strip()))
            heading, body = line.strip()[:40], []
        body.append(line.rstrip())
    if any(body):
        sections.append((heading, "\n".join(body).strip()))
    return sections


def write_sections(path: Path, book: str, sections: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for k, (title, text) in enumerate(sections):
            fh.write(json.dumps({"id": f"{book}#{k}", "title": title or book, "text": text}, ensure_ascii=False) + "\n")


def write_corpus(work: Path, tcm_books: int) -> list[str]:
    """Real documents as ingestible files; returns the folders to ingest."""
    med_zh, med_en, gen_zh, gen_en = (work / d for d in ("medical_zh", "medical_en", "general_zh", "general_en"))
    for d in (med_zh, med_en, gen_zh, gen_en):
        d.mkdir(parents=True, exist_ok=True)
    for book in sorted((DATA / "medical_zh" / "tcm_books").glob("*.txt"))[:tcm_books]:
        write_sections(med_zh / f"{book.stem}.jsonl", book.stem, tcm_sections(book.read_bytes().decode("gb18030")))
    fever = (DATA / "medical_zh" / "medicalgpt" / "fever.txt").read_text(encoding="utf-8")
    write_sections(med_zh / "fever.jsonl", "fever", textbook_sections(fever))
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

    from medcorpus.core import pipeline as runner
    from medcorpus.core.config import load_config
    from medcorpus.core.session import build_spark
    from medcorpus.datasets import pretrain, release
    from medcorpus.stages import run_stage

    cfg = load_config(REPO / "configs" / "real_data.yaml", [f"warehouse={args.warehouse}", *args.set])
    spark = build_spark(cfg)
    ctx = runner.RunContext.create(spark, cfg)
    reports = {r.stage: r for r in (run_stage(ctx, "sft"), run_stage(ctx, "preference"))}
    print(json.dumps({k: r.summary() for k, r in reports.items()}, ensure_ascii=False), flush=True)
    folders = write_corpus(Path(args.work), args.tcm_books) if not args.skip_docs else [
        str(p) for p in sorted(Path(args.work).iterdir()) if p.is_dir()]
    # the document stages as `medcorpus run` runs them (GX gates included): pretrain then reads
    # unique_documents (filtered, classified, deduplicated, decontaminated), not raw documents
    for r in runner.run_pipeline(ctx, folders, until="decontaminate"):
        print(json.dumps({r.stage: r.summary()}, ensure_ascii=False), flush=True)
    sft = ctx.warehouse.read("sft")
    by_source = {f"{r['source']}/{r['type']}": int(r["n"]) for r in
                 sft.groupBy("source", "type").agg(F.count(F.lit(1)).alias("n")).collect()}
    pairs = {r["kind"]: int(r["n"]) for r in
             ctx.warehouse.read("preference").groupBy("kind").agg(F.count(F.lit(1)).alias("n")).collect()}
    out: dict[str, object] = {
        "sft_rows_by_source_type": dict(sorted(by_source.items())),
        "sft_removed_by_reason": reports["sft"].removed_by_reason,
        "sft_note": reports["sft"].note,
        "preference_pairs": pairs,
        "preference_removed": reports["preference"].removed_by_reason,
        "confilter_dropped": confilter_examples(ctx),
    }
    try:
        reports["pretrain"] = run_stage(ctx, "pretrain")
    except pretrain.MixtureError as err:  # still print the SFT/preference figures
        out["pretrain_error"] = str(err)
        print(json.dumps(out, ensure_ascii=False, indent=2))
        raise SystemExit(1) from err
    name = f"measure-{ctx.run_id}"
    run_stage(ctx, "release", name=name)
    rel = release.release_row(ctx, name)
    cells = {(r["mixture"], r["component"], r["lang"]): int(r["t"]) for r in ctx.warehouse.read("pretrain")
             .groupBy("mixture", "component", "lang").agg(F.sum("token_estimate").alias("t")).collect()}
    out.update({
        "release": name,
        "release_table_versions": rel["table_versions"],
        "release_config_hash": rel["config_hash"],
        "release_code_version": rel["code_version"],
        "row_counts": rel["row_counts"],
        "token_counts": rel["token_counts"],
        "pretrain_tokens_by_cell": {"/".join(k): v for k, v in sorted(cells.items())},
        "pretrain_shares": mixture_shares(cfg.datasets.mixtures, cells),
        "pretrain_removed_by_reason": reports["pretrain"].removed_by_reason,
        "pretrain_note": reports["pretrain"].note,
    })
    print(json.dumps(out, ensure_ascii=False, indent=2))


def mixture_shares(mixtures, cells: dict[tuple[str, str, str], int]) -> dict[str, dict[str, list[float]]]:  # type: ignore[no-untyped-def]
    """mixture -> {'component:medical': [requested, achieved], 'language:zh': [...]} from the table's tokens."""
    from medcorpus.datasets.pretrain import normalized

    out: dict[str, dict[str, list[float]]] = {}
    for name, mix in mixtures.items():
        total = sum(t for (m, _, _), t in cells.items() if m == name) or 1
        shares = {}
        for axis, requested in ((1, normalized(mix.components)), (2, normalized(mix.languages))):
            for value, req in requested.items():
                got = sum(t for k, t in cells.items() if k[0] == name and k[axis] == value) / total
                shares[f"{'component' if axis == 1 else 'language'}:{value}"] = [round(req, 4), round(got, 4)]
        out[name] = shares
    return out


def confilter_examples(ctx, n: int = 10) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The dialogues the sft stage dropped for ConFilter (reject_reason confilter_low/high), recomputed as the
    stage computes them (same sources, same hash-sampled LM training rows, same first-failing-rule order), and
    a seeded sample of ``n`` to read by hand: up to n/2 per bound, the rest from the other bound."""
    from pyspark.sql import functions as F

    from medcorpus.datasets import sft as sft_mod
    from medcorpus.readers.formats import import_sources
    from medcorpus.stages.sft import confilter_scored

    cfg = ctx.config.datasets
    cands, _ = import_sources(ctx.spark, cfg.sft_sources)
    scored = sft_mod.with_scores(cands.filter(F.col("error").isNull()), ctx.config.normalize)
    flagged = sft_mod.with_reject_reason(confilter_scored(ctx, scored), cfg)
    dropped = flagged.filter(F.col("reject_reason").isin("confilter_low", "confilter_high")).select(
        "sample_id", "source", "reject_reason", "confilter", "messages",
        F.xxhash64(F.lit(cfg.seed), "sample_id").alias("k")).persist()
    try:
        counts = {f"{r['reject_reason']}/{r['source']}": int(r["n"]) for r in
                  dropped.groupBy("reject_reason", "source").agg(F.count(F.lit(1)).alias("n")).collect()}
        side = {reason: dropped.filter(F.col("reject_reason") == reason).orderBy("k", "sample_id").limit(n).collect()
                for reason in ("confilter_high", "confilter_low")}
    finally:
        dropped.unpersist()
    half = n // 2
    high, low = side["confilter_high"], side["confilter_low"]
    take_high = min(len(high), max(half, n - len(low)))
    picked = high[:take_high] + low[:n - take_high]
    examples = []
    for r in picked:
        turns = [f"{m['role']}: {m['content']}" for m in r["messages"]]
        examples.append({"sample_id": r["sample_id"], "source": r["source"], "reason": r["reject_reason"],
                         "cf": round(float(r["confilter"]), 3), "n_turns": len(turns),
                         "excerpt": " | ".join(turns)[:150],
                         "turns": [t[:300] for t in turns[:6]]})
    return {"bounds": [cfg.confilter_lower, cfg.confilter_upper], "dropped_by_reason_source": dict(sorted(counts.items())),
            "examples": examples}


if __name__ == "__main__":
    main()
