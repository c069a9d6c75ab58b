"""classify: clean_documents -> scored_documents (domain probability, label, quality score); every row kept."""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame

from medcorpus.classify import scoring
from medcorpus.classify.training import ensure_default_models
from medcorpus.core.stage import KEPT, Ledger, Stage, tag, untagged

log = logging.getLogger(__name__)


class Classify(Stage):
    name = "classify"
    help = "clean_documents -> scored_documents (domain classifier, quality rater)"
    inputs = ("clean_documents",)
    outputs = ("scored_documents",)

    def transform(self, pending: DataFrame) -> DataFrame:
        cfg = self.ctx.config.classify
        ensure_default_models(self.ctx)
        self.prepared = scoring.prepare_backend(cfg)
        log.info("classify backend %s: %s, %s", self.prepared.backend, self.prepared.classifier_version,
                 self.prepared.rater_version)
        sc = self.ctx.spark.sparkContext
        self.accumulators = (sc.accumulator(0), sc.accumulator(0))
        scored = scoring.classify_documents(pending, self.prepared, cfg, self.ctx.run_id,
                                            accumulators=self.accumulators)
        return tag(scored, KEPT)

    def write(self, tagged: DataFrame) -> int:
        return self.merge("scored_documents", untagged(tagged))

    def finish(self, ledger: Ledger) -> None:
        if not ledger.total:
            return
        loads, batches = (a.value for a in self.accumulators)
        log.info("classify: model built %d time(s) in the Python workers for %d Arrow batches (once per worker "
                 "process, never per batch)", loads, batches)
        self.notes.append(f"{self.prepared.classifier_version}, {self.prepared.rater_version}; "
                          f"model loads={loads} batches={batches}")
