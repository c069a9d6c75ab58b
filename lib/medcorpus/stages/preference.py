"""preference: sft (+ judged_preferences) -> preference pairs (objective from exam items, subjective from
scored responses); a materialized view, overwritten whole each run."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.stage import Ledger, Stage, is_kept, tag, untagged
from medcorpus.datasets import preference as pref_mod
from medcorpus.datasets.candidates import PREFERENCE_TEXT_COLUMNS
from medcorpus.datasets.decontamination import contaminated_ids, flag_contaminated
from medcorpus.text.pii import redact_columns


class Preference(Stage):
    name = "preference"
    help = "sft (+ judged_preferences) -> preference (DPO pairs)"
    inputs = ("sft",)
    outputs = ("preference",)

    def pending(self) -> DataFrame:
        wh, cfg = self.ctx.warehouse, self.ctx.config.datasets
        sft = wh.read("sft")
        pairs = pref_mod.objective_pairs(sft, cfg.seed).unionByName(pref_mod.subjective_pairs(sft))
        if wh.exists("judged_preferences"):  # the LLM judge's pairs (subjective, CareBot-style)
            pairs = pairs.unionByName(pref_mod.judged_pairs(wh.read("judged_preferences")))
        # sft is redacted already; judged pairs carry model text: the policy runs on every pair
        return redact_columns(pairs, PREFERENCE_TEXT_COLUMNS, self.ctx.config)

    def transform(self, pending: DataFrame) -> DataFrame:
        rows = self.persist(pref_mod.to_preference_rows(pending, self.ctx.config.normalize, self.ctx.run_id))
        ids, note = contaminated_ids(self.ctx, rows.filter(F.col("reject_reason").isNull()), "pair_id",
                                     PREFERENCE_TEXT_COLUMNS, "preference")
        self.notes.append(note)
        reason = F.coalesce(F.col("reject_reason"), F.when(F.col("_contaminated"), F.lit("contaminated")))
        flagged = flag_contaminated(rows, ids, "pair_id")
        return tag(flagged, F.when(reason.isNull(), F.lit("kept")).otherwise(F.lit("removed")), reason)

    def write(self, tagged: DataFrame) -> int:
        return self.overwrite("preference", untagged(tagged.filter(is_kept())))

    def write_nothing(self) -> None:
        self.clear("preference")

    def finish(self, ledger: Ledger) -> None:
        stats = {r["kind"]: int(r["n"]) for r in self.ctx.warehouse.read("preference").groupBy("kind")
                 .agg(F.count(F.lit(1)).alias("n")).collect()}
        self.notes.append(", ".join(f"{k} pairs={v}" for k, v in sorted(stats.items())) or "no pairs")
