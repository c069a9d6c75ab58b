"""release: pin the Delta versions of sft, preference and pretrain under a name (one releases row).

In ``medcorpus run`` the name is ``<datasets.auto_release_prefix><run_id>`` (no release when
``datasets.auto_release`` is false); ``medcorpus release NAME`` names it.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame

from medcorpus.core.stage import KEPT, Stage, tag
from medcorpus.datasets import release as release_mod


class Release(Stage):
    name = "release"
    help = "record a named release: Delta versions of sft, preference, pretrain"
    inputs = release_mod.DATASET_TABLES
    outputs = ("releases",)
    skip_note = None

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        parser.add_argument("name", help="the release name (immutable: a second release with it fails)")

    @classmethod
    def params_from(cls, args: Any) -> dict[str, Any]:
        return {"name": args.name}

    def release_name(self) -> str | None:
        cfg = self.ctx.config.datasets
        if self.params.get("name"):
            return str(self.params["name"])
        return f"{cfg.auto_release_prefix}{self.ctx.run_id}" if cfg.auto_release else None

    def check_inputs(self) -> None:
        if self.release_name() is not None:  # release_mod.record_release names the missing tables
            return

    def pending(self) -> DataFrame:
        name = self.release_name()
        if name is None:
            self.notes.append("datasets.auto_release is false: no release recorded")
        return self.ctx.spark.createDataFrame([(name,)] if name else [], "release string")

    def transform(self, pending: DataFrame) -> DataFrame:
        return tag(pending, KEPT)

    def write(self, tagged: DataFrame) -> int:
        name = self.release_name()
        assert name is not None
        self.notes.append(release_mod.record_release(self.ctx, name, stage=self.name))
        return 1

    def write_nothing(self) -> None:
        """No release requested: nothing to write."""
