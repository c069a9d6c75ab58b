"""Pretraining mixtures: sample documents (and SFT text) to token-level shares. DataFrame -> DataFrame.

A mixture names token shares per component (medical | general | sft) and per language (zh | en). The two
are combined into cells (component, language) with share = component share x language share, so both
ratios hold at once. The mixture's total T is the largest that every cell can supply,
T = min_cell available_tokens / share (optionally capped by ``max_tokens``); the binding cell is taken
whole, every other cell is sampled to T x share tokens.

Sampling is deterministic: each item gets a key u = xxhash64(seed, mixture, item_id) mapped to [0, 1), and
a cell keeps its items in key order while the running token total stays within the cell's target.
Achieved shares are measured afterwards; a share off by more than ``tolerance`` (or a needed cell with no
tokens) raises :class:`MixtureError` naming the cell, what was available and what was asked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from medcorpus.core.config import MixtureConfig
from medcorpus.core.errors import MedcorpusError

log = logging.getLogger(__name__)

COMPONENTS = ("medical", "general", "sft")
LANGS = ("zh", "en")
_KEY_SPACE = float(2**53)


class MixtureError(MedcorpusError):
    """The sources cannot meet a mixture's ratios within its tolerance."""


@dataclass
class MixturePlan:
    name: str
    requested: dict[tuple[str, str], float]  # cell -> share
    available: dict[tuple[str, str], int]  # cell -> tokens in the pool
    targets: dict[tuple[str, str], int] = field(default_factory=dict)
    total: int = 0


@dataclass
class MixtureResult:
    name: str
    achieved_tokens: dict[tuple[str, str], int]
    requested_components: dict[str, float]
    requested_languages: dict[str, float]

    @property
    def total(self) -> int:
        return sum(self.achieved_tokens.values())

    def share(self, axis: int, value: str) -> float:
        total = self.total or 1
        return sum(t for cell, t in self.achieved_tokens.items() if cell[axis] == value) / total

    def deviations(self) -> dict[str, tuple[float, float]]:
        """'component:medical' -> (requested, achieved), for every component and language."""
        out = {f"component:{c}": (r, self.share(0, c)) for c, r in self.requested_components.items()}
        out.update({f"language:{lang}": (r, self.share(1, lang)) for lang, r in self.requested_languages.items()})
        return out

    def summary(self) -> str:
        parts = [f"{k} {req:.3f}->{got:.3f}" for k, (req, got) in self.deviations().items()]
        return f"{self.name}: {self.total:,} tokens; " + ", ".join(parts)


def normalized(shares: dict[str, float]) -> dict[str, float]:
    total = sum(v for v in shares.values() if v > 0)
    if total <= 0:
        raise MixtureError(f"mixture shares must have a positive sum, got {shares}")
    return {k: v / total for k, v in shares.items() if v > 0}


def validate_mixture(name: str, mix: MixtureConfig) -> None:
    """Fail fast on unknown components/languages, before any Spark work."""
    bad = [c for c in mix.components if c not in COMPONENTS] + [x for x in mix.languages if x not in LANGS]
    if bad:
        raise MixtureError(
            f"mixture {name!r}: unknown component/language {bad}; components: {', '.join(COMPONENTS)}; "
            f"languages: {', '.join(LANGS)}"
        )
    normalized(mix.components)
    normalized(mix.languages)


def plan_mixture(name: str, mix: MixtureConfig, available: dict[tuple[str, str], int]) -> MixturePlan:
    """Token targets per cell; raises when a cell the mixture needs has no tokens at all."""
    comps, langs = normalized(mix.components), normalized(mix.languages)
    requested = {(c, lang): comps[c] * langs[lang] for c in comps for lang in langs}
    plan = MixturePlan(name, requested, {cell: int(available.get(cell, 0)) for cell in requested})
    empty = [cell for cell in requested if plan.available[cell] <= 0]
    if empty:
        raise MixtureError(
            f"mixture {name!r} cannot be built: no tokens for "
            + ", ".join(f"{c}/{lang} (needs {requested[(c, lang)]:.1%} of the mix)" for c, lang in empty)
            + f"; available tokens per cell: {_fmt(plan.available)}. Add sources for those cells, lower "
            f"the quality threshold, or change datasets.mixtures.{name}."
        )
    total = min(plan.available[cell] / share for cell, share in requested.items())
    if mix.max_tokens is not None:
        total = min(total, float(mix.max_tokens))
    plan.total = int(total)
    plan.targets = {cell: int(total * share) for cell, share in requested.items()}
    return plan


def _fmt(cells: dict[tuple[str, str], int]) -> str:
    return ", ".join(f"{c}/{lang}={n:,}" for (c, lang), n in sorted(cells.items()))


def check_tolerance(result: MixtureResult, tolerance: float, plan: MixturePlan) -> None:
    off = {k: v for k, v in result.deviations().items() if abs(v[0] - v[1]) > tolerance}
    if result.total == 0 or off:
        detail = "; ".join(f"{k} requested {r:.3f} achieved {a:.3f}" for k, (r, a) in off.items()) or "no tokens"
        raise MixtureError(
            f"mixture {result.name!r} misses its ratios beyond tolerance {tolerance}: {detail}. "
            f"Available tokens per cell: {_fmt(plan.available)}; targets: {_fmt(plan.targets)}. Documents "
            f"larger than a small cell's target make it unreachable; add data or raise the tolerance."
        )


# ---------------------------------------------------------------------------------------------------
# DataFrame side
# ---------------------------------------------------------------------------------------------------
def domain_column(columns: list[str]) -> tuple[Column, str]:
    """The document's domain and where it came from (for the log).

    Prefers the classifier's ``domain``; else ``meta.domain`` (sources that label themselves); else the
    source path (``medical_*`` / ``general_*`` folders as in ../shared/data).
    """
    path_guess = (
        F.when(F.lower(F.col("source_file")).rlike(r"(^|[/_\-])medical"), F.lit("medical"))
        .when(F.lower(F.col("source_file")).rlike(r"(^|[/_\-])general"), F.lit("general"))
    )
    meta_domain = F.get_json_object(F.col("meta"), "$.domain") if "meta" in columns else F.lit(None)
    if "domain" in columns:
        return F.coalesce(F.col("domain"), meta_domain, path_guess), "classifier column 'domain'"
    return F.coalesce(meta_domain, path_guess), (
        "no 'domain' column upstream: using meta.domain, else the source path (medical_*/general_*)"
    )


def document_pool(docs: DataFrame) -> tuple[DataFrame, list[str]]:
    """documents-like rows -> (item_id, component, lang, source, text, token_estimate, quality_score), notes."""
    notes = []
    domain, how = domain_column(docs.columns)
    notes.append(f"domain from {how}")
    if "quality_score" in docs.columns:
        quality = F.col("quality_score").cast("double")
    else:
        quality = F.lit(None).cast("double")
        notes.append("no 'quality_score' upstream: every medical document passes the quality threshold")
    pool = docs.select(
        F.col("doc_id").alias("item_id"),
        domain.alias("component"),
        F.col("lang"),
        F.col("source"),
        F.col("text"),
        F.col("token_estimate").cast("long").alias("token_estimate"),
        quality.alias("quality_score"),
    )
    return pool, notes


def sft_pool(sft: DataFrame) -> DataFrame:
    """sft rows as pretraining text: the message contents, one paragraph each."""
    return sft.select(
        F.col("sample_id").alias("item_id"),
        F.lit("sft").alias("component"),
        F.col("language").alias("lang"),
        F.col("source"),
        F.concat_ws("\n\n", F.transform(F.col("messages"), lambda m: m["content"])).alias("text"),
        F.col("token_estimate").cast("long").alias("token_estimate"),
        F.lit(None).cast("double").alias("quality_score"),
    )


def quality_cutoffs(pool: DataFrame, mix: MixtureConfig) -> dict[str, float]:
    """Per language, the quality a medical document needs: max(medical_min_quality, the top-fraction cut-off).

    The cut-off is the (1 - medical_top_fraction) quantile of quality_score over the medical documents of
    that language that pass the absolute threshold (one small aggregate; ``percentile_approx`` is
    deterministic). It is taken per language because the rater's scores are not comparable across
    languages: one global cut-off can leave a language with no "top" documents at all, and the mix's
    language ratio could then never be met.
    """
    if mix.medical_top_fraction >= 1.0:
        return {lang: mix.medical_min_quality for lang in LANGS}
    medical = pool.filter((F.col("component") == "medical") & (F.col("quality_score") >= mix.medical_min_quality))
    rows = medical.groupBy("lang").agg(
        F.percentile_approx("quality_score", 1.0 - mix.medical_top_fraction, 10_000).alias("q")).collect()
    found = {r["lang"]: float(r["q"]) for r in rows if r["q"] is not None}
    return {lang: max(mix.medical_min_quality, found.get(lang, mix.medical_min_quality)) for lang in LANGS}


def with_eligibility(pool: DataFrame, mix: MixtureConfig, min_quality: dict[str, float] | None = None) -> DataFrame:
    """``reason``: lang_other | domain_unknown | not_in_mixture | below_quality | null (eligible).

    ``min_quality`` maps language -> the quality a medical document needs (default: the mixture's
    absolute threshold for every language)."""
    comps = list(normalized(mix.components))
    cutoffs = min_quality or {}
    threshold = F.lit(mix.medical_min_quality)
    for lang, value in sorted(cutoffs.items()):
        threshold = F.when(F.col("lang") == lang, F.lit(value)).otherwise(threshold)
    below = (F.col("component") == "medical") & F.col("quality_score").isNotNull() & (
        F.col("quality_score") < threshold
    )
    reason = (
        F.when(~F.col("lang").isin(*LANGS), F.lit("lang_other"))
        .when(F.col("component").isNull(), F.lit("domain_unknown"))
        .when(~F.col("component").isin(*comps), F.lit("not_in_mixture"))
        .when(F.col("token_estimate") <= 0, F.lit("empty"))
        .when(below, F.lit("below_quality"))
    )
    return pool.withColumn("reason", reason)


def sample_key(seed: int, mixture: str) -> Column:
    return F.pmod(F.xxhash64(F.lit(seed), F.lit(mixture), F.col("item_id")), F.lit(2**53)).cast("double") / F.lit(
        _KEY_SPACE
    )


def sample_cells(eligible: DataFrame, plan: MixturePlan, seed: int) -> DataFrame:
    """Keep, per cell, the items in sample-key order up to the cell target.

    An item is kept while the running token total stays <= the target; the one item that crosses the
    target is kept too when that lands closer to it than stopping short would. Without that rule a cell
    of long documents (whole books) stops up to one document short of its target and the mix misses its
    ratio; with it the error is at most half a document. The window holds only narrow columns per cell;
    ties on the key are broken by item_id.
    """
    targets = F.create_map(*[x for (c, lang), t in plan.targets.items()
                             for x in (F.lit(f"{c}/{lang}"), F.lit(t))])
    cell = F.concat_ws("/", "component", "lang")
    w = (Window.partitionBy("cell").orderBy("sample_key", "item_id")
         .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    keyed = eligible.withColumn("sample_key", sample_key(seed, plan.name)).withColumn("cell", cell)
    return (
        keyed.withColumn("running", F.sum("token_estimate").over(w))
        .withColumn("target", F.coalesce(targets[F.col("cell")], F.lit(0)))
        .withColumn("before", F.col("running") - F.col("token_estimate"))
        .withColumn("sampled", (F.col("running") <= F.col("target")) | (
            (F.col("before") < F.col("target"))
            & (F.col("running") - F.col("target") < F.col("target") - F.col("before"))))
        .drop("running", "before", "target", "cell")
    )
