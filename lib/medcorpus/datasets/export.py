"""What an export folder holds besides the shards: the dataset card, the trainer-ready preference forms,
token counts, and the check of a folder against its manifest.

One export is ``OUT/NAME/<format>/`` (jsonl and parquet exports of a release sit side by side)::

    README.md                     dataset card; its YAML ``configs:`` lets ``datasets.load_dataset(folder, subset)``
                                  find every subset (sft, preference, preference_conversational,
                                  preference_sharegpt, pretrain_<mixture>)
    manifest.json                 release row + every file's rows, bytes, sha256 (+ tokenizer counts, pair lengths)
    dataset_info.json             LLaMA-Factory's dataset registry
    sft/ preference/ ...          train-0000i-of-0000N.<format>

Preference pairs come in three forms:

- ``preference``: ``prompt``/``chosen``/``rejected`` as strings (TRL "standard" form, no chat template applied);
- ``preference_conversational``: the same pairs with ``prompt`` the message list up to the answer and
  ``chosen``/``rejected`` one assistant message each (TRL's conversational preference form: ``DPOTrainer``
  applies the model's chat template);
- ``preference_sharegpt``: LLaMA-Factory's sharegpt ranking form (``conversations`` with from/value,
  ``chosen``/``rejected`` one ``gpt`` turn each).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medcorpus.core.errors import MedcorpusError

#: Subsets (README configs) in the order the card lists them.
PREFERENCE_FORMS = ("preference", "preference_conversational", "preference_sharegpt")


class VerifyError(MedcorpusError):
    """An export folder cannot be checked (no manifest, another release)."""


# ---------------------------------------------------------------------------------------------------
# preference forms (Spark, at the release's versions)
# ---------------------------------------------------------------------------------------------------
def conversational_preference(pref: Any, sft: Any) -> Any:
    """TRL conversational preference rows: the history as messages (from ``sft`` by ``sample_id``; a pair
    without an sft row, e.g. an LLM-judged one, gets its prompt text as one user message)."""
    from pyspark.sql import functions as F

    msg = lambda role, content: F.struct(F.lit(role).alias("role"), content.alias("content"))  # noqa: E731
    history = F.slice(F.col("s.messages"), 1, F.size("s.messages") - 1)
    history = F.transform(history, lambda m: F.struct(m["role"].alias("role"), m["content"].alias("content")))
    prompt = F.when(F.col("s.messages").isNotNull() & (F.size("s.messages") >= 2), history) \
        .otherwise(F.array(msg("user", F.col("p.prompt"))))
    joined = pref.alias("p").join(sft.select("sample_id", "messages").alias("s"),
                                  F.col("p.sample_id") == F.col("s.sample_id"), "left")
    return joined.orderBy(F.col("p.pair_id")).select(
        F.col("p.pair_id").alias("id"), prompt.alias("prompt"),
        F.array(msg("assistant", F.col("p.chosen"))).alias("chosen"),
        F.array(msg("assistant", F.col("p.rejected"))).alias("rejected"),
        F.col("p.kind").alias("kind"), F.col("p.source").alias("source"), F.col("p.language").alias("language"),
    )


def sharegpt_preference(conversational: Any) -> Any:
    """LLaMA-Factory sharegpt ranking rows from the conversational ones (user->human, assistant->gpt)."""
    from pyspark.sql import functions as F

    def turn(m: Any) -> Any:
        role = F.when(m["role"] == "user", F.lit("human")).when(m["role"] == "assistant", F.lit("gpt")) \
            .otherwise(m["role"])
        return F.struct(role.alias("from"), m["content"].alias("value"))

    first = F.element_at(F.col("prompt"), 1)
    has_system = first["role"] == "system"
    return conversational.select(
        "id",
        F.transform(F.filter("prompt", lambda m: m["role"] != "system"), turn).alias("conversations"),
        F.when(has_system, first["content"]).otherwise(F.lit("")).alias("system"),
        turn(F.element_at("chosen", 1)).alias("chosen"),
        turn(F.element_at("rejected", 1)).alias("rejected"),
        "kind", "source", "language",
    )


def length_report(pref: Any) -> dict[str, Any]:
    """Chosen vs rejected length (characters) over the pairs: DPO learns "longer is better" when chosen is
    nearly always the longer answer."""
    from pyspark.sql import functions as F

    c, r = F.length("chosen"), F.length("rejected")
    row = pref.agg(
        F.count(F.lit(1)).alias("pairs"),
        F.sum(F.when(c > r, 1).otherwise(0)).alias("chosen_longer"),
        F.sum(F.when(c < r, 1).otherwise(0)).alias("chosen_shorter"),
        F.avg(c).alias("mean_chosen_chars"), F.avg(r).alias("mean_rejected_chars"),
        F.percentile_approx(c / F.greatest(r, F.lit(1)), 0.5).alias("median_ratio"),
    ).first()
    pairs = int(row["pairs"])
    out: dict[str, Any] = {"pairs": pairs, "chosen_longer": int(row["chosen_longer"] or 0),
           "chosen_shorter": int(row["chosen_shorter"] or 0)}
    if pairs:
        out["mean_chosen_chars"] = round(float(row["mean_chosen_chars"]), 1)
        out["mean_rejected_chars"] = round(float(row["mean_rejected_chars"]), 1)
        out["mean_length_ratio"] = round(out["mean_chosen_chars"] / max(out["mean_rejected_chars"], 1.0), 3)
        out["median_length_ratio"] = round(float(row["median_ratio"]), 3)
    return out


def length_balanced(pref: Any, seed: int) -> Any:
    """An equal number of pairs where chosen is longer and where it is shorter (pairs of equal length all
    kept); the larger group is cut to the smaller one's size in a seeded order."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    c, r = F.length("chosen"), F.length("rejected")
    side = F.when(c > r, F.lit(1)).when(c < r, F.lit(-1)).otherwise(F.lit(0))
    tagged = pref.withColumn("_side", side).withColumn("_rank", F.row_number().over(
        Window.partitionBy("_side").orderBy(F.xxhash64(F.lit(seed), F.col("pair_id")), F.col("pair_id"))))
    counts = {r["_side"]: r["n"] for r in tagged.groupBy("_side").agg(F.count(F.lit(1)).alias("n")).collect()}
    keep = min(counts.get(1, 0), counts.get(-1, 0))
    return tagged.filter((F.col("_side") == 0) | (F.col("_rank") <= keep)).drop("_side", "_rank")


# ---------------------------------------------------------------------------------------------------
# token counts with a real tokenizer
# ---------------------------------------------------------------------------------------------------
class TokenCounter:
    """Counts tokens of exported rows with a ``tokenizers`` tokenizer file (``tokenizer.json``)."""

    def __init__(self, path: str | Path):
        try:
            from tokenizers import Tokenizer
        except ImportError as err:
            raise MedcorpusError("--tokenizer needs the 'tokenizers' package (pip install tokenizers)") from err
        path = Path(path)
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises its own Exception type for a bad file
            raise MedcorpusError(f"cannot load tokenizer file {path}: {err}") from None
        self.name = path.name
        self.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        self.counts: dict[str, int] = {}

    def add(self, subset: str, rows: list[dict[str, Any]]) -> None:
        texts = [row_text(r) for r in rows]
        n = sum(len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)) if texts else 0
        self.counts[subset] = self.counts.get(subset, 0) + n

    def manifest(self) -> dict[str, Any]:
        return {"file": self.name, "sha256": self.sha256, "counts": dict(sorted(self.counts.items()))}


def row_text(row: dict[str, Any]) -> str:
    """The text a trainer sees of an exported row (messages joined, prompt + answers, or the text)."""
    if "messages" in row:
        return "\n".join(m["content"] or "" for m in row["messages"])
    if "text" in row:
        return row["text"] or ""
    parts = []
    for key in ("conversations", "prompt", "chosen", "rejected"):
        value = row.get(key)
        if isinstance(value, list):
            parts += [m.get("content") or m.get("value") or "" for m in value]
        elif isinstance(value, dict):
            parts.append(value.get("content") or value.get("value") or "")
        elif value:
            parts.append(value)
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------
# the dataset card
# ---------------------------------------------------------------------------------------------------
def subset_folders(files: list[dict[str, Any]]) -> dict[str, str]:
    """``{subset: folder}`` from the manifest's file paths (``pretrain/stable/x`` -> ``pretrain_stable``)."""
    out: dict[str, str] = {}
    for f in files:
        folder = f["path"].rsplit("/", 1)[0]
        out.setdefault(folder.replace("/", "_"), folder)
    return out


def dataset_card(manifest: dict[str, Any]) -> str:
    """README.md: YAML ``configs:`` (one per subset, split ``train``) + a short card."""
    import yaml

    fmt = manifest.get("format", "jsonl")
    files = manifest.get("files", [])
    subsets = subset_folders(files)
    order = [s for s in ("sft", *PREFERENCE_FORMS, "preference_balanced") if s in subsets]
    order += sorted(s for s in subsets if s not in order)
    configs: list[dict[str, Any]] = [
        {"config_name": s, "data_files": [{"split": "train", "path": f"{subsets[s]}/train-*.{fmt}"}]} for s in order]
    if configs:
        configs[0]["default"] = True
    rows: dict[str, int] = {}
    size: dict[str, int] = {}
    for f in files:
        key = f["path"].rsplit("/", 1)[0].replace("/", "_")
        rows[key] = rows.get(key, 0) + int(f.get("rows", 0))
        size[key] = size.get(key, 0) + int(f.get("bytes", 0))
    # rows and bytes per subset: `datasets` checks the row counts, and they key its cache (which otherwise
    # reuses a folder of the same name, e.g. another release's "jsonl", without looking at the files)
    infos = [{"config_name": s, "download_size": size.get(s, 0),
              "splits": [{"name": "train", "num_examples": rows.get(s, 0), "num_bytes": size.get(s, 0)}]}
             for s in order]
    header = {"configs": configs, "dataset_info": infos, "language": ["zh", "en"], "tags": ["medical", "medcorpus"],
              "pretty_name": f"medcorpus release {manifest.get('release', '?')}"}
    est = manifest.get("token_counts", {})
    real = (manifest.get("tokenizer") or {}).get("counts", {})
    lines = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# medcorpus release `{manifest.get('release', '?')}`", "",
             "Medical LLM training data from the medcorpus pipeline (Spark + Delta Lake). Each subset is a "
             "config: `datasets.load_dataset(\"<this folder>\", \"<subset>\")`; LLaMA-Factory reads "
             "`dataset_info.json`.", "",
             f"- release: `{manifest.get('release', '?')}`, recorded {manifest.get('created_at', '?')}",
             f"- Delta versions: {json.dumps(manifest.get('table_versions', {}), sort_keys=True)}",
             f"- config hash `{manifest.get('config_hash', '?')}`, code `{manifest.get('code_version', '?')}`",
             f"- format: {fmt}; every file's rows, bytes and sha256 are in `manifest.json` "
             "(check with `medcorpus verify <release> <folder>`)", "",
             "| subset | rows | tokens | form |", "|---|---:|---:|---|"]
    forms = {"sft": "`messages` (role/content): TRL SFTTrainer, LLaMA-Factory sharegpt",
             "preference": "`prompt`/`chosen`/`rejected` strings (TRL standard form, no chat template)",
             "preference_conversational": "`prompt`/`chosen`/`rejected` message lists (TRL conversational)",
             "preference_sharegpt": "`conversations` + `chosen`/`rejected` turns (LLaMA-Factory ranking)",
             "preference_balanced": "conversational, equal chosen-longer and chosen-shorter pairs"}
    for s in order:
        base = s.replace("pretrain_", "pretrain/") if s.startswith("pretrain_") else s
        if s in real:
            tokens = f"{real[s]:,}"
        elif base in est:
            tokens = f"~{int(est[base]):,} (estimate)"
        else:
            tokens = ""
        lines.append(f"| {s} | {rows.get(s, 0):,} | {tokens} | {forms.get(s, '`text` (pretraining)')} |")
    if manifest.get("tokenizer"):
        lines += ["", f"Token counts without `~` use the tokenizer `{manifest['tokenizer']['file']}` "
                  f"(sha256 `{manifest['tokenizer']['sha256'][:16]}…`)."]
    lengths = manifest.get("preference_lengths")
    if lengths and lengths.get("pairs"):
        lines += ["", "## Preference pairs: length", "",
                  f"In {lengths['chosen_longer']} of {lengths['pairs']} pairs the chosen answer is longer than the "
                  f"rejected one (shorter in {lengths['chosen_shorter']}); mean length {lengths['mean_chosen_chars']} "
                  f"vs {lengths['mean_rejected_chars']} characters (ratio {lengths['mean_length_ratio']}, median "
                  f"{lengths['median_length_ratio']}). DPO can learn to prefer length itself; "
                  + ("`preference_balanced` (export `--length-balanced`) holds as many chosen-shorter as "
                     "chosen-longer pairs." if lengths["chosen_longer"] and lengths["chosen_shorter"] else
                     "no length-balanced selection is possible here (every pair leans the same way): prefer "
                     "rejected answers of comparable length, or length-normalised DPO.")]
    lines += ["", "## Sources, licences, filters", ""]
    lines += _provenance(manifest)
    return "\n".join(lines) + "\n"


def _provenance(manifest: dict[str, Any]) -> list[str]:
    """Sources with their rows (from the release's own table versions, so every export of a release, whatever
    the current config, writes the same card)."""
    sources = manifest.get("sources") or {}
    if not sources:
        return ["(not recorded)"]
    out = ["Rows per source (licences are those of the upstream datasets; check each before redistribution):", ""]
    for table in sorted(sources):
        parts = ", ".join(f"`{k}` {v:,}" for k, v in sorted(sources[table].items()))
        out.append(f"- {table}: {parts}")
    out += ["", "Filters: rule filters and PII redaction (`filter`), domain/quality classifiers (`classify`), exact and "
            "MinHash dedup, benchmark decontamination; SFT selection by Deita score and ConFilter; the pretraining "
            "mixtures; every threshold is in the config identified by the config hash above."]
    return out


def source_counts(df: Any) -> dict[str, int]:
    """Rows per ``source`` of a (release-version) table: one small aggregation."""
    from pyspark.sql import functions as F

    rows = df.groupBy("source").agg(F.count(F.lit(1)).alias("n")).collect()
    return dict(sorted((str(r["source"]), int(r["n"])) for r in rows))


# ---------------------------------------------------------------------------------------------------
# medcorpus verify
# ---------------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_folders(name: str, folder: Path) -> list[Path]:
    """The export folders (those with a manifest.json) at ``folder``: itself, its format subfolders, or
    ``folder/name``'s."""
    for base in (folder, folder / name):
        if (base / "manifest.json").is_file():
            return [base]
        subs = sorted(p.parent for p in base.glob("*/manifest.json"))
        if subs:
            return subs
    raise VerifyError(f"no manifest.json at {folder} (nor in its format subfolders, nor under {folder / name})")


def verify_release_folder(name: str, folder: Path) -> list[str]:
    """Problems of the export(s) of release ``name`` at ``folder`` (empty: every file matches its manifest)."""
    problems = []
    for base in export_folders(name, Path(folder)):
        try:
            manifest = json.loads((base / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            problems.append(f"{base}/manifest.json: unreadable ({err})")
            continue
        if manifest.get("release") != name:
            problems.append(f"{base}: an export of release {manifest.get('release')!r}, not {name!r}")
            continue
        listed = set()
        for e in manifest.get("files", []):
            p = base / e["path"]
            listed.add(e["path"])
            if not p.is_file():
                problems.append(f"{base}/{e['path']}: missing")
            elif p.stat().st_size != e["bytes"]:
                problems.append(f"{base}/{e['path']}: {p.stat().st_size} bytes, manifest says {e['bytes']}")
            elif sha256_file(p) != e["sha256"]:
                problems.append(f"{base}/{e['path']}: sha256 differs from the manifest")
        fmt = manifest.get("format")
        for p in sorted(base.rglob(f"*.{fmt}")) if fmt else []:
            rel = p.relative_to(base).as_posix()
            if rel not in listed:
                problems.append(f"{base}/{rel}: not in the manifest")
    return problems
