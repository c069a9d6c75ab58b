"""Typed configuration: one frozen object, loaded from YAML, overridable from the command line.

Every threshold of every stage lives here. ``configs/default.yaml`` mirrors these defaults so a user
can read and copy them; ``--config FILE`` layers a partial YAML on top and ``--set a.b=value`` layers
single keys on top of that. Unknown keys fail with the list of valid ones.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medcorpus.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG_PATH = REPO_ROOT / "configs" / "default.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SparkConfig(_Section):
    master: str = Field("local[2]", description="Used only when spark-submit did not set a master.")
    app_name: str = "medcorpus"
    shuffle_partitions: int = Field(8, ge=1, description="Local default; AQE coalesces further.")
    driver_memory: str = "4g"
    delta_package: str = Field(
        "io.delta:delta-spark_4.1_2.13:4.4.0",
        description="Delta jar coordinates (Maven Central serves 4.4.0 for Spark 4.1; the pip wrapper is 4.4.1).",
    )
    extra_packages: tuple[str, ...] = Field((), description="More Maven coordinates, e.g. hadoop-aws.")
    ivy_dir: str = Field(".ivy", description="Project-local Ivy cache, relative to the repo root.")
    parquet_codec: Literal["zstd", "snappy", "gzip", "lz4", "uncompressed"] = Field(
        "zstd", description="Parquet compression of every table written (spark.sql.parquet.compression.codec). zstd "
                            "stores the text tables in about 0.69 of snappy's bytes (Spark's default) and writes "
                            "them about 10% slower; a spark-submit --conf of that key wins.")
    conf: dict[str, str] = Field(default_factory=dict, description="Any extra spark.* settings.")
    class_data_sharing: bool = Field(
        True, description="Start a local driver JVM with the class-data-sharing archive `make setup` dumps "
                          "(python -m medcorpus.core.jvmcache build): Spark's classes mapped, not loaded, so a session "
                          "starts in ~10 s instead of ~16 s. Changes no result; ignored under spark-submit and when "
                          "no archive was built. Not part of the config hash.")
    progress_seconds: float = Field(
        10.0, ge=0, description="Log the tasks done of the running Spark jobs this often within a stage (0: off). "
                                "Not part of the config hash: it changes no result.")


class S3Config(_Section):
    enabled: bool = Field(
        False, description="Add the S3A jars even when the warehouse is local (set by the CLI for s3a:// sources)."
    )
    endpoint: str | None = Field(None, description="S3-protocol endpoint URL (None = AWS).")
    region: str = "us-east-1"
    path_style_access: bool = True
    access_key_env: str = "AWS_ACCESS_KEY_ID"
    secret_key_env: str = "AWS_SECRET_ACCESS_KEY"
    sdk_version: str | None = Field(
        None, description="AWS SDK v2 version for S3A (None = the one the bundled Hadoop was built with)."
    )
    sdk_bundle: bool = Field(
        False, description="Use the full shaded AWS SDK bundle (612 MiB) instead of the ~12 MB S3 modules."
    )


class IngestConfig(_Section):
    max_record_bytes: int = Field(8_000_000, ge=1, description="Records larger than this go to quarantine.")
    max_line_bytes: int = Field(16_000_000, ge=1, description="A JSONL line longer than this is quarantined unread.")
    quarantine_payload_chars: int = Field(2000, ge=0, description="Raw payload kept in quarantine rows.")
    max_replacement_ratio: float = Field(
        0.02, ge=0, le=1, description="Share of U+FFFD after best-effort decoding above which a record is undecodable."
    )
    files_per_partition: int = Field(4, ge=1, description="Source files read by one task.")
    text_extensions: tuple[str, ...] = (".txt", ".md", ".text")
    jsonl_extensions: tuple[str, ...] = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")
    parquet_extensions: tuple[str, ...] = (".parquet",)
    warc_extensions: tuple[str, ...] = (".warc", ".warc.gz", ".wet", ".wet.gz", ".warc.wet.gz")
    text_field: str = "text"


class NormalizeConfig(_Section):
    t2s_config: str = Field("t2s", description="OpenCC conversion used for Traditional -> Simplified.")
    t2s_min_changed_ratio: float = Field(
        0.02, ge=0, le=1, description="Share of Han characters OpenCC changes above which a doc counts as Traditional."
    )
    lang_min_confidence: float = Field(0.5, ge=0, le=1, description="Below this the language is 'other'.")
    zh_tokens_per_han_char: float = Field(0.7, ge=0)
    tokens_per_other_char: float = Field(0.25, ge=0)


# Sections of the later stages. Each stage's owner fills its own class; keep one class per stage.
class FilterConfig(_Section):
    """Rule filters and PII redaction (stage ``filter``).

    Lengths and line measures count characters for Chinese (and ``other``) and words for English.
    A ``max_*`` threshold removes a document whose value is above it, a ``min_*`` one below it.
    """

    zh_min_chars: int = Field(20, ge=0, description="Fewer non-space characters than this removes a zh/other doc.")
    zh_max_chars: int = Field(3_000_000, ge=1, description="More non-space characters than this removes a zh/other doc.")
    en_min_words: int = Field(12, ge=0, description="Fewer words than this removes an en doc.")
    en_max_words: int = Field(1_000_000, ge=1, description="More words than this removes an en doc.")
    max_mojibake_ratio: float = Field(
        0.01, ge=0, le=1, description="Share of characters that are U+FFFD, private-use or typical mojibake "
            "(锟斤拷, Ã©, â€) above which a doc goes."
    )
    max_special_char_ratio: float = Field(
        0.10, ge=0, le=1,
        description="Share of non-space characters that are symbols outside letters, digits and ordinary "
        "(also medical: % ± × ° ℃ μ / < > =) punctuation — e.g. # @ * | ★ emoji box-drawing.",
    )
    max_digit_ratio: float = Field(0.30, ge=0, le=1, description="Share of non-space characters that are digits.")
    min_lines_for_line_rules: int = Field(
        5, ge=0, description="Line rules (mean line length, end punctuation) apply only to docs with at least this many lines."
    )
    zh_min_mean_line_chars: float = Field(4.0, ge=0, description="Mean characters per non-empty line below which a zh doc goes.")
    en_min_mean_line_words: float = Field(3.0, ge=0, description="Mean words per non-empty line below which an en doc goes.")
    min_end_punct_frac: float = Field(
        0.10, ge=0, le=1, description="Share of non-empty lines ending in terminal punctuation (。！？.!?;… "
            "quotes/brackets) below which a doc goes."
    )
    zh_max_mean_line_chars_for_end_punct: float = Field(
        20.0,
        description="The end-punctuation rule applies only to zh/other docs whose mean line is shorter than this "
        "(menus, keyword and title lists); longer lines are hard-wrapped prose (classical books), tables or form fields.",
    )
    en_max_mean_line_words_for_end_punct: float = Field(
        10.0, description="... and only to en docs whose mean line has fewer words than this."
    )
    max_dup_line_frac: float = Field(0.30, ge=0, le=1, description="Gopher: share of non-empty lines that "
        "repeat an earlier line.")
    max_dup_line_char_frac: float = Field(
        0.30, ge=0, le=1, description="Share of line characters in repeated lines (Gopher 0.20; COVID dialogues "
            "repeat the question once)."
    )
    max_dup_para_frac: float = Field(0.30, ge=0, le=1, description="Gopher: share of paragraphs (blank-line "
        "separated) that repeat an earlier one.")
    min_lines_for_dup_rules: int = Field(3, ge=0, description="Line/paragraph repetition applies to docs with "
        "at least this many lines/paragraphs.")
    min_dup_unit_chars: int = Field(
        20, description="Lines/paragraphs shorter than this (speaker labels, section markers) are left out of repetition."
    )
    max_quote_frac: float = Field(
        0.40, ge=0, le=1,
        description="Repetition rules forgive one quote: the longest repeated passage, if it occurs exactly twice, "
        "spans at most max_quote_lines lines and holds at most this share of the characters (a dialogue repeating "
        "the question, a summary repeating the answer). 0 turns this off.",
    )
    max_quote_lines: int = Field(3, ge=0, description="Lines a forgiven quote may span (a document pasted twice spans many).")
    zh_chars_per_ngram_unit: int = Field(
        2, description="Chinese n-grams are over characters; one English word counts as this many characters (n=2 -> 4 chars)."
    )
    en_min_words_for_ngram_rules: int = Field(100, description="Top/duplicated n-gram rules apply to en docs of "
        "at least this many words.")
    zh_min_chars_for_ngram_rules: int = Field(200, description="... and to zh/other docs of at least this many characters.")
    max_repetition_tokens: int = Field(
        20_000, ge=1, description="N-gram repetition is measured on the first this-many tokens (words/characters) of a doc."
    )
    top_ngram_sizes: tuple[int, ...] = Field((2, 3, 4), description="Gopher top n-gram sizes (in words).")
    en_max_top_ngram_frac: tuple[float, ...] = Field(
        (0.22, 0.21, 0.20),
        description="Per size: share of characters covered by the most frequent n-gram (Gopher 0.20, 0.18, 0.16; a "
        "short medical text repeats its long disease or drug name).",
    )
    zh_max_top_ngram_frac: tuple[float, ...] = Field(
        (0.25, 0.22, 0.20), description="Per size: share of characters covered by the most frequent character n-gram."
    )
    dup_ngram_sizes: tuple[int, ...] = Field((5, 6, 7, 8, 9, 10), description="Gopher duplicated n-gram sizes (in words).")
    en_max_dup_ngram_frac: tuple[float, ...] = Field(
        (0.28, 0.24, 0.21, 0.19, 0.18, 0.17),
        description="Per size: share of characters in n-grams repeating an earlier one (Gopher 0.15..0.10). Looser: "
        "abstracts repeat multi-word terms (PubMedQA up to 0.27 at n=5, 0.16 at n=9), a pasted passage repeats at "
        "every size (>= 0.35).",
    )
    zh_max_dup_ngram_frac: tuple[float, ...] = Field(
        (0.44, 0.41, 0.37, 0.35, 0.33, 0.30),
        description="Per size, over character n-grams: formal Chinese repeats 10-15 character titles and names "
        "(laws up to 0.41 at 10 characters, 0.26 at 20).",
    )
    lexicon_dirs: tuple[str, ...] = Field(
        ("lexicons",),
        description="Folders (relative to the repo root or absolute) holding <category>.<lang>.txt term lists; "
        "terms of all folders are merged, so users extend by adding a folder or lines.",
    )
    lexicon_categories: tuple[str, ...] = Field(
        ("ads", "toxic", "porn", "violence", "gambling"), description="Lexicon categories, each a rule of that name."
    )
    lexicon_min_hits: tuple[int, ...] = Field(
        (3, 2, 2, 2, 2), description="Per category: a doc goes only with at least this many term hits ..."
    )
    lexicon_min_per_1k: tuple[float, ...] = Field(
        (1.0, 0.5, 0.5, 0.5, 0.5), description="... and at least this many hits per 1,000 characters."
    )
    pii_types: tuple[str, ...] = Field(
        ("URL_CREDENTIALS", "EMAIL", "ID_CARD", "BANK_CARD", "IP", "PHONE", "LANDLINE", "PHONE_EN"),
        description="PII redacted, in this order, each replaced by <TYPE> (PHONE_EN by <PHONE>).",
    )
    bank_card_prefixes: str = Field("3456", description="First digits a bank card candidate may start with (then Luhn).")

    @model_validator(mode="after")
    def _per_size_lengths(self) -> FilterConfig:
        pairs = [
            ("top_ngram_sizes", "en_max_top_ngram_frac"),
            ("top_ngram_sizes", "zh_max_top_ngram_frac"),
            ("dup_ngram_sizes", "en_max_dup_ngram_frac"),
            ("dup_ngram_sizes", "zh_max_dup_ngram_frac"),
            ("lexicon_categories", "lexicon_min_hits"),
            ("lexicon_categories", "lexicon_min_per_1k"),
        ]
        for a, b in pairs:
            if len(getattr(self, a)) != len(getattr(self, b)):
                raise ValueError(f"filter.{b} needs one value per entry of filter.{a}")
        return self


class ClassifyConfig(_Section):
    """Domain classifier and quality rater (stage ``classify``), their training and labelled data.

    Relative paths are resolved against the repo root.
    """

    backend: str = Field(
        "hashed_linear",
        description="Scoring backend: a registered name (hashed_linear) or 'package.module:Class' implementing "
        "medcorpus.classify.scoring.ScoringBackend (e.g. an ONNX/torch model).",
    )
    domain_model_dir: str = Field(
        "models/domain", description="Folder of the domain classifier artifact (the shipped one is built by `make models`)."
    )
    rater_model_dir: str = Field(
        "models/rater", description="Folder of the quality rater artifact (the shipped one is built by `make models`)."
    )
    domain_model_checksum: str | None = Field(None, description="Pin: refuse a domain model with another checksum.")
    rater_model_checksum: str | None = Field(None, description="Pin: refuse a rater with another checksum.")
    train_if_missing: bool = Field(
        False, description="When a model folder is empty, train a model before scoring instead of failing. Off: the "
        "shipped models in models/ are used; on only for tests and experiments (trains on default_training_data)."
    )
    default_training_data: str = Field(
        "seed", description="What train_if_missing trains on: 'seed' (a tiny test fixture) or 'shared_data'."
    )
    medical_threshold: float = Field(0.5, description="p_medical at or above this makes a document 'medical'.")
    subdomain_min_prob: float = Field(
        0.0, description="A medical document whose best sub-domain probability is below this gets subdomain null."
    )
    batch_rows: int = Field(1000, description="Rows scored per model call inside one Arrow batch.")
    hash_bits: int = Field(18, description="Hashed n-gram space of 2**hash_bits buckets (feature parameter).")
    max_chars: int = Field(3000, description="Characters of each text's head that are featurised (feature parameter).")
    c_domain: float = Field(1.0, description="Inverse L2 strength of the medical-vs-general logistic regression.")
    c_subdomain: float = Field(4.0, description="Inverse L2 strength of the sub-domain logistic regression.")
    ridge_alpha: float = Field(1.0, description="L2 strength of the quality rater's ridge regression.")
    max_iter: int = Field(300, description="Solver iterations.")
    validation_percent: int = Field(
        20, description="Share (0-100) of groups (files) sent to validation when the input has no 'split' column."
    )
    split_salt: str = Field("medcorpus", description="Salt of the stable hash that splits train/validation.")
    max_train_rows: int = Field(200_000, description="Most labelled rows a training job brings to the driver.")
    max_score_gap: float = Field(
        2.0, description="CareBot's two-round agreement filter: quality scores of two annotation rounds differing "
        "by this much or more are dropped (the annotate stage's LLM rounds and train's two-round input).",
    )
    shared_data_dir: str = Field("../shared/data", description="Real sources read by build-labelled.")
    labelled_train_cap: int = Field(1200, description="Labelled builder: most training rows per source.")
    labelled_validation_cap: int = Field(400, description="Labelled builder: most validation rows per source.")
    holdout_sources: tuple[str, ...] = Field(
        ("covid_dialogue_zh", "medicalgpt", "kdconv", "thucnews", "nltk_webtext"),
        description="Labelled builder: sources used only for validation (never seen in training).",
    )
    synthetic_percent: int = Field(10, description="Labelled builder: share of rows given a low-quality twin.")


class DedupConfig(_Section):
    """Exact and MinHash LSH near-duplicate removal (stage ``dedup``).

    Banding is chosen for recall at ``threshold``: the LSH S-curve midpoint (1/bands)^(1/rows) sits
    below the threshold, and every candidate pair is verified by its signature-estimated Jaccard before
    it links two documents, which restores precision.
    """

    threshold: float = Field(0.7, gt=0, le=1, description="Jaccard of shingle sets at or above which two "
        "documents are near duplicates.")
    num_perm: int = Field(256, ge=16, description="MinHash permutations (signature length); verification uses all of them.")
    bands: int = Field(32, ge=1, description="LSH bands; bands x rows <= num_perm.")
    rows: int = Field(5, ge=1, description="Rows (signature positions) per band.")
    seed: int = Field(1729, description="Seed of the MinHash permutations (same seed = same signatures on every run).")
    zh_shingle_chars: int = Field(5, ge=1, description="Character n-gram size for Chinese text (whitespace removed).")
    en_shingle_words: int = Field(5, ge=1, description="Word n-gram size for English and other space-separated text.")
    zh_min_han_ratio: float = Field(
        0.3, description="For lang=other: share of Han among non-space characters above which character shingles are used."
    )
    verify: str = Field(
        "exact", pattern="^(exact|signature)$",
        description="How candidate pairs are verified before linking: 'signature' = estimated Jaccard from the "
        "signatures; 'exact' = that estimate as a prefilter (>= threshold - verify_margin), then the exact Jaccard "
        "of the shingle sets (template families pile up at the threshold, where the estimate's noise costs ~10% P/R).",
    )
    verify_margin: float = Field(
        0.1, ge=0, lt=1,
        description="For verify=exact: pairs whose signature estimate is below threshold - margin are dropped, at or above "
        "threshold + margin accepted on the estimate (with 256 permutations that is > 3 standard errors), and only the "
        "pairs in between get the exact Jaccard of their shingle sets.",
    )
    clustering: str = Field(
        "greedy", pattern="^(greedy|components)$",
        description="How verified pairs become clusters. 'greedy': in keeper order (released, quality, length, doc_id) a "
        "document is removed when a verified pair links it to a better document that is kept; its cluster is named after "
        "the best such keeper (distributed rounds, usually 2-4). 'components': large-star/small-star connected components, "
        "the best document of each component keeps, members far from it are re-clustered (max_split_rounds).",
    )
    greedy_max_rounds: int = Field(
        200, ge=1, description="Safety cap on greedy rounds (one per link of the longest chain of better-worse pairs); "
        "documents still undecided after it are kept, never removed, and reported.",
    )
    max_bucket_size: int = Field(
        100, ge=2, description="LSH buckets larger than this (boilerplate skew) are compared by sorted "
        "neighbourhood: members sorted by signature positions outside the band, each paired with the next "
        "max_bucket_size - 1 (linear, not quadratic); reported."
    )
    max_split_rounds: int = Field(
        3, ge=1, description="Rounds that re-cluster members whose estimated Jaccard to their cluster keeper is below threshold "
        "(template families chained through intermediate documents)."
    )
    cc_max_iterations: int = Field(60, ge=1, description="Safety cap on large-star/small-star iterations.")
    stats_top_clusters: int = Field(10, ge=0, description="Largest clusters reported with text samples.")
    stats_sample_chars: int = Field(160, ge=0, description="Characters of each sample text in the stats.")


class DecontaminateConfig(_Section):
    """Benchmark decontamination (stage ``decontaminate``)."""

    benchmarks_dir: str = Field(
        "../shared/data/benchmarks", description="Folder of benchmark question files; relative paths are from the repo root."
    )
    benchmark_globs: tuple[str, ...] = Field(
        ("cmmlu/test/*.csv", "cmexam_val/*.xlsx", "**/*test*.jsonl"),
        description="Files under benchmarks_dir holding test items (CSV, XLSX or JSONL with a question field).",
    )
    question_fields: tuple[str, ...] = Field(
        ("Question", "question", "instruction", "prompt"), description="First field found is an item's question."
    )
    option_fields: tuple[str, ...] = Field(
        ("A", "B", "C", "D", "E", "Options", "options"), description="Fields appended to the question (multiple choice options)."
    )
    zh_ngram_chars: int = Field(13, ge=4, description="Character n-gram size for Chinese items (punctuation/space removed).")
    en_ngram_words: int = Field(13, ge=3, description="Word n-gram size for English items.")
    min_item_chars: int = Field(
        10, ge=1, description="Items whose matchable text is shorter than this are skipped (too generic to flag a document)."
    )
    min_overlap: float = Field(
        0.5, gt=0, le=1, description="Share of an item's n-grams found in a text at or above which the text is contaminated."
    )


class SftSource(_Section):
    """One SFT input: an importer id (see ``medcorpus.readers.formats.IMPORTERS``) and a file or folder."""

    name: str = Field(..., description="Short source name stored in sft.source.")
    format: str = Field(..., description="Importer id, e.g. alpaca_jsonl, toyhom_csv, cmexam_xlsx.")
    path: str = Field(..., description="File or folder; relative paths are resolved from the working directory.")
    subjects: tuple[str, ...] = Field((), description="cmmlu_csv only: subject files to read (empty = all).")


class MixtureConfig(_Section):
    """A named pretraining mixture: token-level shares per component and per language."""

    components: dict[str, float] = Field(
        ..., description="Token share per component: medical | general | sft (normalised to sum 1)."
    )
    languages: dict[str, float] = Field(..., description="Token share per language zh | en (normalised).")
    medical_min_quality: float = Field(
        0.0, ge=0, le=5, description="Medical documents need quality_score >= this (0-5 scale of scored_documents)."
    )
    medical_top_fraction: float = Field(
        1.0, gt=0, le=1,
        description="Keep only this top fraction of the (threshold-passing) medical documents by quality_score.",
    )
    max_tokens: int | None = Field(None, ge=1, description="Cap on the mixture's total tokens (None = as many as fit).")
    tolerance: float = Field(
        0.02, ge=0, le=1, description="Largest allowed |achieved - requested| token share, per component and per language."
    )

    @model_validator(mode="after")
    def _shares_are_weights(self) -> MixtureConfig:
        for what in ("components", "languages"):
            shares = getattr(self, what)
            if any(v < 0 for v in shares.values()) or not any(v > 0 for v in shares.values()):
                raise ValueError(f"{what} shares must be >= 0 with at least one > 0, got {shares}")
        return self


def _default_mixtures() -> dict[str, MixtureConfig]:
    return {
        "stable": MixtureConfig(components={"medical": 19, "general": 1}, languages={"zh": 1, "en": 9},
                                medical_min_quality=2.5),
        "boost": MixtureConfig(components={"medical": 1, "sft": 1}, languages={"zh": 4, "en": 6},
                               medical_min_quality=2.5, medical_top_fraction=0.3),
    }


def _default_sft_sources() -> tuple[SftSource, ...]:
    base = "build/demo-sft"
    return (
        SftSource(name="demo_alpaca", format="alpaca_jsonl", path=f"{base}/instructions.jsonl"),
        SftSource(name="demo_sharegpt", format="sharegpt_jsonl", path=f"{base}/dialogues.jsonl"),
        SftSource(name="demo_exam", format="mc_jsonl", path=f"{base}/exam.jsonl"),
        SftSource(name="demo_scored", format="scored_jsonl", path=f"{base}/scored.jsonl"),
    )


class DatasetsConfig(_Section):
    """Pretraining mixtures, SFT and preference tables, releases."""

    seed: int = Field(20240601, description="Seed of every sampling decision (mixtures, rejected options).")
    mixtures: dict[str, MixtureConfig] = Field(
        default_factory=_default_mixtures,
        description="Named mixtures (CareBot: stable = medical:general 19:1, zh:en 1:9; boost = top medical:SFT 1:1, zh:en 4:6).",
    )
    sft_sources: tuple[SftSource, ...] = Field(
        default_factory=_default_sft_sources, description="SFT inputs; a missing path is skipped with a warning."
    )
    min_turn_chars: int = Field(2, ge=0, description="A message shorter than this (after trim) makes the sample empty_turn.")
    deita_threshold: float = Field(
        4.0, description="Keep SFT samples with complexity x quality >= this (each 1-5, so 1-25)."
    )
    confilter_ngram_order: int = Field(3, ge=1, description="Character n-gram order of the ConFilter language model.")
    confilter_cache_weight: float = Field(
        0.2, ge=0, le=1, description="Weight of the history cache in the mixture P = (1-w) P_ngram + w P_cache."
    )
    confilter_min_count: int = Field(2, ge=1, description="N-grams seen fewer times are dropped from the model.")
    confilter_max_ngrams: int = Field(400_000, ge=1, description="Model size cap: the most frequent n-grams kept.")
    confilter_train_rows: int = Field(20_000, ge=1, description="SFT samples (hash-sampled) the ConFilter LM trains on.")
    confilter_train_chars: int = Field(2000, ge=1, description="Characters of each training sample used (the start).")
    confilter_max_turn_chars: int = Field(1500, ge=1, description="Characters of a turn scored (longer turns are cut).")
    confilter_lower: float = Field(
        0.55, description="Drop a dialogue whose mean CF = L(turn|history)/L(turn) is below this (turns repeat the history)."
    )
    confilter_upper: float = Field(
        1.0, description="Drop a dialogue whose mean CF is above this (turns ignore their history)."
    )
    decontaminate: bool = Field(
        True, description="Remove SFT/preference rows overlapping the decontaminate stage's benchmark items."
    )
    export_rows_per_shard: int = Field(50_000, ge=1, description="Rows per exported shard.")
    auto_release: bool = Field(True, description="`medcorpus run` ends by recording release <prefix><run_id>.")
    auto_release_prefix: str = Field("run-", description="Name prefix of the automatic per-run release.")
    retention_days: float = Field(
        400, gt=0, description="delta.deletedFileRetentionDuration and delta.logRetentionDuration set on sft, "
        "preference and pretrain when a release is recorded (never shortened): how long VACUUM and Delta's log "
        "cleanup leave an old version readable.",
    )
    release_life_days: float = Field(
        365, gt=0, description="How long a release is promised to stay exportable; `medcorpus release` refuses "
        "when retention_days is shorter.",
    )


class ValidateConfig(_Section):
    """Great Expectations gates and reports.

    Suites live in ``expectations/<table>.json`` (regenerate with ``python -m medcorpus.quality.expectations``);
    values that come from the config are passed to them as GX suite parameters.
    """

    enabled: bool = Field(
        True, description="Validate every table a stage wrote before the next stage runs (run_pipeline)."
    )
    expectations_dir: str = Field("expectations", description="Suite folder, relative to the repo root or absolute.")
    skip_tables: tuple[str, ...] = Field((), description="Tables the pipeline gate does not validate.")
    result_format: str = Field(
        "BASIC",
        description="GX result format of the gate (BASIC | SUMMARY | COMPLETE; Data Docs cannot render "
        "BOOLEAN_ONLY). With BASIC, GX lists no unexpected values (no extra Spark job per expectation); failed "
        "expectations get their count and sample rows from one targeted query each.",
    )
    sample_rows: int = Field(5, ge=1, description="Sample failing rows shown per failed expectation.")
    max_failures_shown: int = Field(5, ge=1, description="Failed critical expectations detailed in the error message.")
    persist: bool = Field(
        True, description="Cache the table version in memory/disk while GX computes its metrics (one Delta scan)."
    )
    domain_values: tuple[str, ...] = Field(("medical", "general"), description="Allowed values of a 'domain' column.")
    subdomain_values: tuple[str, ...] = Field(
        ("clinical", "tcm", "pharmacy", "consumer_health", "general"),
        description="Allowed values of a 'subdomain' column (null allowed).",
    )
    reports_dir: str = Field("reports", description="Folder under the warehouse for Data Docs and run reports.")


class LLMAnnotateConfig(_Section):
    """Stage ``annotate``: two LLM labelling rounds of domain and 0-5 quality (CareBot's seed data)."""

    sample_size: int = Field(2000, ge=0, description="Documents labelled per run (deterministic sample by doc_id hash).")
    min_chars: int = Field(50, description="Shorter documents are not worth labelling and are not sampled.")
    max_input_chars: int = Field(2000, ge=1, description="Text sent to the model is cut to this many characters.")
    domain_labels: tuple[str, ...] = Field(
        ("general", "clinical", "tcm", "pharmacy", "consumer_health"),
        description="Allowed domain labels; 'general' is non-medical, the rest are medical sub-domains.",
    )
    template: str = Field("annotate.v1", description="Prompt template <name>.<version> under prompt_dir.")

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "quality_max_diff" in data:
            raise ValueError("'quality_max_diff' was removed: CareBot's two-round agreement gap is one key, "
                             "classify.max_score_gap (used by annotate and by train)")
        return data


class LLMTranslateConfig(_Section):
    """Stage ``translate``: classical -> modern Chinese, one request per paragraph (aligned by construction)."""

    classical_column: str = Field(
        "is_classical", description="Boolean column of the input table marking classical text, used when present."
    )
    classical_particle_ratio: float = Field(
        0.02,
        description="Fallback when the column is absent: share of classical particles (之乎者也矣焉哉曰兮其) among "
        "non-space characters at or above which a zh document counts as classical.",
    )
    min_paragraph_chars: int = Field(2, description="Shorter paragraphs (after trimming) are not sent.")
    max_docs: int = Field(0, ge=0, description="Documents translated per run (0 = all classical documents).")
    template: str = "translate.v1"


class LLMGenerateQAConfig(_Section):
    """Stage ``generate-qa``: QA pairs from documents into the sft messages format."""

    pairs_per_doc: int = Field(3, ge=1, description="QA pairs asked for per document.")
    min_chars: int = Field(100, description="Documents shorter than this are not used.")
    max_input_chars: int = Field(3000, ge=1, description="Text sent to the model is cut to this many characters.")
    max_docs: int = Field(0, ge=0, description="Documents used per run (0 = all).")
    medical_only: bool = Field(
        True, description="When the input has a 'domain' column, keep only rows whose domain is 'medical'."
    )
    template: str = "generate_qa.v1"


class LLMJudgeConfig(_Section):
    """Stage ``judge``: a second doctor answer, then scores on four aspects -> subjective preference pairs."""

    max_items: int = Field(0, ge=0, description="Prompts judged per run (0 = all).")
    answer_template: str = Field("doctor_answer.v1", description="Template that writes the competing answer.")
    template: str = "judge.v1"
    min_margin: float = Field(
        1.0, description="Total score margin (sum over the four aspects) below which the pair is dropped as a tie."
    )


class LLMConfig(_Section):
    """OpenAI-compatible endpoint used by the LLM-backed stages (annotate, translate, generate-qa, judge).

    The API key is read from the environment variable named by ``api_key_env`` on the driver; it is never
    part of the config, a log line, a table or a report.
    """

    base_url: str | None = Field(
        None, description="e.g. http://127.0.0.1:8000/v1 (vLLM, SGLang, llama.cpp server, a hosted API). Unset: "
        "the LLM stages refuse to run and are not part of `medcorpus run`.",
    )
    model: str = Field("Qwen2.5-7B-Instruct", description="Model name sent with every request; part of the cache key.")
    api_key_env: str = Field("MEDCORPUS_LLM_API_KEY", description="Environment variable holding the API key.")
    concurrency: int = Field(4, ge=1, description="Requests in flight per partition (threads per partition).")
    partitions: int = Field(2, ge=1, description="Partitions calling the endpoint at once (total = x concurrency).")
    connect_timeout_s: float = Field(10.0, gt=0, description="TCP connect timeout.")
    request_timeout_s: float = Field(120.0, gt=0, description="Socket read timeout per request.")
    max_retries: int = Field(5, ge=0, description="Retries after the first attempt on 429/5xx/timeouts.")
    backoff_base_s: float = Field(1.0, ge=0, description="First backoff; doubles per retry, with jitter.")
    backoff_max_s: float = Field(30.0, ge=0, description="Cap of one backoff sleep.")
    retry_after_max_s: float = Field(120.0, ge=0, description="Cap on an honoured Retry-After header.")
    retry_seed: int = Field(0, description="Seed of the backoff jitter (deterministic per item and attempt).")
    temperature: float = 0.2
    max_tokens: int = 1024
    prompt_dir: str = Field("prompts", description="Folder of versioned prompt templates, relative to the repo root.")
    commit_every: int = Field(
        256, ge=1, description="Responses written to llm_cache per chunk: a killed run loses at most one chunk."
    )
    failure_raw_chars: int = Field(4000, ge=0, description="Raw model text kept in llm_failures rows.")
    price_per_1k_prompt_tokens: float = Field(0.0, description="For the cost estimate in run_log/llm_usage.")
    price_per_1k_completion_tokens: float = 0.0
    annotate: LLMAnnotateConfig = LLMAnnotateConfig()
    translate: LLMTranslateConfig = LLMTranslateConfig()
    generate_qa: LLMGenerateQAConfig = LLMGenerateQAConfig()
    judge: LLMJudgeConfig = LLMJudgeConfig()


class Config(_Section):
    warehouse: str = Field("warehouse", description="Local path or s3a:// URI holding every table.")
    run_id: str | None = Field(None, description="Set per run; generated when absent.")
    log_level: str = "INFO"
    spark: SparkConfig = SparkConfig()
    s3: S3Config = S3Config()
    ingest: IngestConfig = IngestConfig()
    normalize: NormalizeConfig = NormalizeConfig()
    filter: FilterConfig = FilterConfig()
    classify: ClassifyConfig = ClassifyConfig()
    dedup: DedupConfig = DedupConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()
    datasets: DatasetsConfig = DatasetsConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    llm: LLMConfig = LLMConfig()

    def hash(self) -> str:
        """A stable short hash of everything that changes results (run_id excluded)."""
        payload = self.model_dump(mode="json", by_alias=True,
                                  exclude={"run_id": True, "log_level": True,
                                           "spark": {"progress_seconds", "class_data_sharing"}})
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_override(item: str) -> dict[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    dotted, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else ""
    node: dict[str, Any] = {}
    cursor = node
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        cursor[part] = {}
        cursor = cursor[part]
    cursor[parts[-1]] = value
    return node


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _explain(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{loc}'{_valid_keys_hint(e['loc'])}")
        else:
            lines.append(f"bad value for '{loc}': {e['msg']}")
    return "; ".join(lines)


def _valid_keys_hint(loc: tuple[Any, ...]) -> str:
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return ""
        model = field.annotation
    return f" (valid: {', '.join(sorted(model.model_fields))})"


def load_config(
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    base_file: str | Path | None = DEFAULT_CONFIG_PATH,
) -> Config:
    """Defaults <- configs/default.yaml <- --config FILE <- --set key=value."""
    data: dict[str, Any] = {}
    if base_file is not None and Path(base_file).exists():
        data = _read_yaml(Path(base_file))
    if config_file is not None:
        data = _deep_merge(data, _read_yaml(Path(config_file)))
    for item in overrides:
        data = _deep_merge(data, _parse_override(item))
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_explain(err)) from None



def write_default_yaml(path: Path = DEFAULT_CONFIG_PATH) -> None:
    """Regenerate configs/default.yaml from the typed defaults (``python -m medcorpus.core.config``)."""
    data = Config().model_dump(mode="json", by_alias=True, exclude={"run_id"})
    header = "# medcorpus defaults: every threshold of every stage. Override with --config FILE or --set key=value.\n"
    header += ("# Generated from lib/medcorpus/core/config.py by `python -m medcorpus.core.config`; "
               "edit the classes, not this file.\n")
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


if __name__ == "__main__":
    write_default_yaml()
