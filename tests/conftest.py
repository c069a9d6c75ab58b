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
