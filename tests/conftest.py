"""One session-scoped local Spark (Delta on, UI off, few partitions) and a fresh warehouse per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDCORPUS_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def shared_data_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real dataset not available: {path} (the ../shared/data folder is absent)")
    return path


@pytest.fixture(scope="session")
def spark():
    from medcorpus.core.config import load_config
    from medcorpus.core.session import build_spark

    config = load_config(overrides=["spark.shuffle_partitions=2", "spark.driver_memory=2g"])
    session = build_spark(config)
    yield session
    session.stop()


@pytest.fixture
def make_config(tmp_path):
    """Config with a per-test warehouse; extra ``key=value`` overrides as arguments."""
    from medcorpus.core.config import load_config

    def _make(*overrides: str):
        return load_config(overrides=[f"warehouse={tmp_path / 'warehouse'}", "spark.shuffle_partitions=2", *overrides])

    return _make


@pytest.fixture
def ctx(spark, make_config):
    from medcorpus.core.pipeline import RunContext

    return RunContext.create(spark, make_config("run_id=test-run-1"))


def _default_of(dtype):
    """A typed placeholder for a required column a test does not care about."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if isinstance(dtype, T.StringType):
        return F.lit("test")
    if isinstance(dtype, (T.IntegerType, T.LongType, T.ShortType, T.DoubleType, T.FloatType)):
        return F.lit(0).cast(dtype)
    if isinstance(dtype, T.BooleanType):
        return F.lit(False)
    if isinstance(dtype, T.TimestampType):
        return F.current_timestamp()
    if isinstance(dtype, T.MapType):
        return F.create_map().cast(dtype)
    if isinstance(dtype, T.ArrayType):
        return F.array().cast(dtype)
    if isinstance(dtype, T.StructType):
        return F.struct(*[(_default_of(f.dataType) if not f.nullable else F.lit(None).cast(f.dataType)).alias(f.name)
                          for f in dtype.fields])
    raise TypeError(f"no default for {dtype}")


def as_table(df, table: str):
    """``df`` shaped as rows of ``table``: its columns kept, missing ones null (nullable) or a placeholder."""
    from pyspark.sql import functions as F

    from medcorpus.core.warehouse import table_spec

    cols = []
    for f in table_spec(table).schema.fields:
        if f.name in df.columns:
            cols.append(F.col(f.name).cast(f.dataType).alias(f.name))
        else:
            cols.append((F.lit(None).cast(f.dataType) if f.nullable else _default_of(f.dataType)).alias(f.name))
    return df.select(cols)
