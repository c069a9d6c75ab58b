"""The driver JVM's class-data-sharing archive: when it is applied, and that the suite's own JVM maps it."""

from __future__ import annotations

import pytest

from medcorpus.core import jvmcache
from medcorpus.core.config import load_config


def _config(tmp_path, *overrides):
    return load_config(overrides=[f"spark.ivy_dir={tmp_path / 'ivy'}", *overrides])


def _plant_archive(config) -> None:
    path = jvmcache.archive_path(config)
    assert path is not None, "no java answered `java -version`"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not really an archive")


def test_no_archive_no_option(tmp_path):
    assert jvmcache.driver_java_options(_config(tmp_path)) is None


def test_a_built_archive_is_added_to_the_users_options(tmp_path):
    config = _config(tmp_path)
    _plant_archive(config)
    options = jvmcache.driver_java_options(config, "-Dfoo=bar")
    assert options == f"-Dfoo=bar {jvmcache.ARCHIVE_FLAG}{jvmcache.archive_path(config)}"


@pytest.mark.parametrize("user_options", ["-Xshare:off", "-XX:SharedArchiveFile=/elsewhere.jsa"])
def test_the_users_own_sharing_choice_wins(tmp_path, user_options):
    config = _config(tmp_path)
    _plant_archive(config)
    assert jvmcache.driver_java_options(config, user_options) is None


@pytest.mark.parametrize("override", ["spark.class_data_sharing=false", "spark.master=spark://127.0.0.1:7077"])
def test_sharing_off_or_a_cluster_driver_gets_no_archive(tmp_path, override):
    config = _config(tmp_path, override)
    _plant_archive(config)
    assert jvmcache.driver_java_options(config) is None


def test_the_archive_is_named_after_the_jvm_class_path(tmp_path):
    plain = jvmcache.archive_path(_config(tmp_path))
    other = jvmcache.archive_path(_config(tmp_path, "spark.conf={'spark.driver.extraClassPath': '/opt/x.jar'}"))
    assert plain is not None and other is not None and plain != other


def test_sharing_is_not_part_of_the_config_hash(tmp_path):
    assert _config(tmp_path).hash() == _config(tmp_path, "spark.class_data_sharing=false").hash()


def _built_archive():
    path = jvmcache.archive_path(load_config())
    if path is None or not path.is_file():
        pytest.skip("no class-data-sharing archive: `make setup` builds it (python -m medcorpus.core.jvmcache build)")
    return path


def test_the_suites_driver_jvm_maps_the_built_archive(spark):
    """The session fixture's JVM got the option and mapped the archive (a JVM that cannot map it, being another
    JDK or class path or a damaged file, runs on with only the JDK's own ~13 MB base archive)."""
    path = _built_archive()
    jvm = spark._jvm
    args = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert f"{jvmcache.ARCHIVE_FLAG}{path}" in args
    mapped = jvmcache.mapped_archive_bytes(int(jvm.java.lang.ProcessHandle.current().pid()))
    assert mapped is not None, "jcmd VM.info did not say what CDS mapped"
    assert mapped >= path.stat().st_size
