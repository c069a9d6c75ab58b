"""Decontamination of the SFT and preference rows against the benchmark index of the decontaminate stage.

It runs or stops the run: a missing benchmark index fails like the decontaminate stage does, unless the
user turned it off explicitly (``datasets.decontaminate=false``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.errors import MedcorpusError
from medcorpus.dedup import decontaminate as decon


class DecontaminationUnavailable(MedcorpusError):
    pass


def contaminated_ids(ctx: Any, df: DataFrame, id_col: str, text_cols: Sequence[str], kind: str
                     ) -> tuple[DataFrame | None, str]:
    """(ids of the rows of ``df`` overlapping a benchmark item, persisted hits merged into contamination_hits
    for audit; a note). None when ``datasets.decontaminate`` is false."""
    if not ctx.config.datasets.decontaminate:
        return None, f"{kind}: decontamination off (datasets.decontaminate=false)"
    cfg = ctx.config.decontaminate
    try:
        index = decon.load_index(ctx.spark, cfg)
    except MedcorpusError as err:
        raise DecontaminationUnavailable(
            f"{kind}: cannot decontaminate, the benchmark index is unavailable ({err}); fix "
            "decontaminate.benchmarks_dir, or set datasets.decontaminate=false to build the table without "
            "decontamination"
        ) from err
    hits = decon.find_contamination(df, index, cfg, id_col=id_col, text_cols=text_cols, kind=kind)
    ctx.warehouse.merge_new_rows("contamination_hits", hits.withColumn("run_id", F.lit(ctx.run_id)), kind)
    ids = hits.select(F.col("item_id").alias(id_col)).distinct()
    return ids, f"{kind}: decontaminated against {index.items} benchmark items"


def flag_contaminated(df: DataFrame, ids: DataFrame | None, id_col: str) -> DataFrame:
    """``df`` with boolean ``_contaminated``."""
    if ids is None:
        return df.withColumn("_contaminated", F.lit(False))
    return (df.join(ids.withColumn("_contaminated", F.lit(True)), on=id_col, how="left")
            .withColumn("_contaminated", F.coalesce(F.col("_contaminated"), F.lit(False))))
