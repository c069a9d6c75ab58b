"""What every stage gets: the Spark session, the typed config and the warehouse of one run."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from pyspark.sql import SparkSession

from medcorpus.core.config import Config
from medcorpus.core.warehouse import Warehouse


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class RunContext:
    spark: SparkSession
    config: Config
    warehouse: Warehouse

    @property
    def run_id(self) -> str:
        return self.warehouse.run_id

    @classmethod
    def create(cls, spark: SparkSession, config: Config) -> RunContext:
        run_id = config.run_id or new_run_id()
        return cls(spark, config, Warehouse(spark, config.warehouse, run_id=run_id, config_hash=config.hash()))
