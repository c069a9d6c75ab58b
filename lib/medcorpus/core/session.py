"""The one place a SparkSession is built.

It keeps whatever ``spark-submit`` already set (master, jars, conf), so the same jobs run on a cluster;
locally it adds Delta from the project-local Ivy cache, binds to loopback and picks defaults that suit a
2-core machine.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import sys
import threading
from pathlib import Path

from pyspark.sql import SparkSession

from medcorpus.core.config import REPO_ROOT, Config

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

# Jars that Delta drags in transitively but that Spark already bundles (different versions would clash).
_EXCLUDED_TRANSITIVE = (
    "com.fasterxml.jackson.core:jackson-annotations",
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-databind",
    "com.fasterxml.jackson.datatype:jackson-datatype-jdk8",
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-jackson",
    "org.slf4j:slf4j-api",
    "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni",
    "org.roaringbitmap:RoaringBitmap",
    "org.roaringbitmap:shims",
    "com.google.code.findbugs:jsr305",
    "commons-logging:commons-logging",
)


def ivy_dir(config: Config) -> Path:
    path = Path(config.spark.ivy_dir)
    return path if path.is_absolute() else REPO_ROOT / path


def ivy_settings_file() -> Path:
    return REPO_ROOT / "configs" / "ivysettings.xml"


def maven_packages(config: Config) -> list[str]:
    packages = [config.spark.delta_package, *config.spark.extra_packages]
    if _needs_s3(config):
        packages.extend(s3_packages(config))
    return list(dict.fromkeys(packages))


# AWS SDK v2 version each hadoop-aws release was built against (hadoop-project's aws-java-sdk-v2.version).
_AWS_SDK_FOR_HADOOP = {"3.4.0": "2.23.19", "3.4.1": "2.24.6", "3.4.2": "2.29.52"}

# hadoop-aws depends on the shaded AWS SDK v2 ``bundle`` (612 MiB for 2.29.52). S3A needs only the S3
# client, the transfer manager and their small modules (about 12 MB, 35 jars); the HTTP/Netty/codec
# jars they pull in are already in pyspark's jars folder, and the CRT native client is optional.
S3_EXCLUDED_TRANSITIVE = (
    "software.amazon.awssdk:bundle",
    "software.amazon.awssdk.crt:aws-crt",
    "io.netty:*",
    "org.apache.httpcomponents:*",
    "commons-codec:commons-codec",
)


def s3_packages(config: Config | None = None) -> list[str]:
    """hadoop-aws matching the Hadoop that pyspark bundles, plus the minimal AWS SDK v2 modules."""
    hadoop = bundled_hadoop_version()
    packages = [f"org.apache.hadoop:hadoop-aws:{hadoop}"]
    if config is not None and config.s3.sdk_bundle:
        return packages  # the full shaded bundle, as hadoop-aws declares it
    sdk = (config.s3.sdk_version if config is not None else None) or _AWS_SDK_FOR_HADOOP.get(hadoop, "2.29.52")
    packages += [f"software.amazon.awssdk:s3:{sdk}", f"software.amazon.awssdk:s3-transfer-manager:{sdk}"]
    return packages


def jar_excludes(config: Config) -> list[str]:
    excludes = list(_EXCLUDED_TRANSITIVE)
    if _needs_s3(config) and not config.s3.sdk_bundle:
        excludes.extend(S3_EXCLUDED_TRANSITIVE)
    return excludes


def bundled_hadoop_version() -> str:
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    for jar in jars.glob("hadoop-client-api-*.jar"):
        return jar.stem.removeprefix("hadoop-client-api-")
    return "3.4.2"


def _needs_s3(config: Config) -> bool:
    return config.s3.enabled or config.warehouse.startswith("s3a://") or bool(config.s3.endpoint)


def _s3_conf(config: Config) -> dict[str, str]:
    if not _needs_s3(config):
        return {}
    conf = {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.path.style.access": str(config.s3.path_style_access).lower(),
        "spark.hadoop.fs.s3a.endpoint.region": config.s3.region,
    }
    if config.s3.endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = config.s3.endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(config.s3.endpoint.startswith("https")).lower()
    access, secret = os.environ.get(config.s3.access_key_env), os.environ.get(config.s3.secret_key_env)
    if access and secret:
        conf["spark.hadoop.fs.s3a.access.key"] = access
        conf["spark.hadoop.fs.s3a.secret.key"] = secret
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        )
    return conf


def local_defaults(config: Config) -> dict[str, str]:
    """Settings applied only where nothing (spark-submit, the user's conf) set them already."""
    ivy = ivy_dir(config)
    defaults = {
        "spark.app.name": config.spark.app_name,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.memory": config.spark.driver_memory,
        "spark.sql.shuffle.partitions": str(config.spark.shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.parquet.compression.codec": config.spark.parquet_codec,
    }
    resolved = resolved_jars(config)
    if resolved:
        # the jars were resolved before (``make setup``): no Ivy at start-up, nothing re-copied under
        # .ivy/jars while another session of this machine has those files open
        defaults["spark.jars"] = ",".join(resolved)
    else:
        defaults.update(
            {
                "spark.jars.packages": ",".join(maven_packages(config)),
                "spark.jars.ivy": str(ivy),
                "spark.jars.excludes": ",".join(jar_excludes(config)),
                "spark.jars.ivySettings": str(ivy_settings_file()),
            }
        )
    defaults.update(_s3_conf(config))
    defaults.update(config.spark.conf)
    return defaults


def _manifest_path(config: Config) -> Path:
    key = json.dumps([maven_packages(config), jar_excludes(config)], sort_keys=True)
    return ivy_dir(config) / f"resolved-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"


def resolved_jars(config: Config) -> list[str]:
    """Jar files an earlier resolution of exactly these packages left in the cache ([] if none)."""
    path = _manifest_path(config)
    if not path.exists():
        return []
    jars = json.loads(path.read_text())["jars"]
    return jars if jars and all(Path(j).exists() for j in jars) else []


def record_resolved_jars(spark: SparkSession, config: Config) -> list[str]:
    """After Ivy resolved ``spark.jars.packages``, remember the jar files for later sessions."""
    listed = spark.sparkContext.getConf().get("spark.jars", "") or ""
    jars = sorted({j.removeprefix("file://").removeprefix("file:") for j in listed.split(",") if j.endswith(".jar")})
    jars = [j for j in jars if Path(j).exists()]
    if jars:
        path = _manifest_path(config)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"packages": maven_packages(config), "jars": jars}, indent=1))
        tmp.replace(path)
    return jars


def _submitted_conf() -> dict[str, str]:
    """The conf spark-submit handed this driver (empty when run as plain python).

    Under spark-submit the JVM already runs and PythonRunner passes its gateway port in the environment;
    ``SparkConf()`` only sees the submitted settings (--master, --packages, --conf) once the gateway is
    connected, so connect first. As plain python there is no JVM yet and nothing was submitted.
    """
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return {}
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # type: ignore[attr-defined]
    return dict(SparkConf().getAll())


def import_in_background(modules: list[str]) -> threading.Thread:
    """Import ``modules`` on a thread while the main thread waits for the JVM to start (Great Expectations
    takes 5-10 s to import, about as long as the JVM takes to start). ``join`` the thread before using them;
    an import error is left for the main thread's own import to raise."""

    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as err:  # the main thread's import raises it where the module is used
                log.debug("background import of %s failed: %s", name, err)

    thread = threading.Thread(target=load, name="medcorpus-preload", daemon=True)
    thread.start()
    return thread


def build_spark(config: Config) -> SparkSession:
    """Return the active session or build one with Delta, keeping spark-submit's settings."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    submitted = _submitted_conf()
    builder = SparkSession.builder
    if "spark.master" not in submitted:
        builder = builder.master(config.spark.master)
    for key, value in local_defaults(config).items():
        if key in submitted:
            continue
        if key.startswith("spark.jars") and ("spark.jars.packages" in submitted or "spark.jars" in submitted):
            continue  # the submitter brought its own jars
        builder = builder.config(key, value)
    builder = builder.config("spark.sql.extensions", _merge_list(submitted.get("spark.sql.extensions"), DELTA_EXTENSION))
    builder = builder.config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # we start the JVM: it may map the class-data archive
        from medcorpus.core.jvmcache import driver_java_options

        java_options = driver_java_options(config, config.spark.conf.get("spark.driver.extraJavaOptions", ""))
        if java_options:
            builder = builder.config("spark.driver.extraJavaOptions", java_options)
            log.info("driver JVM maps the class-data-sharing archive: %s", java_options)
    used_ivy = not resolved_jars(config) and "spark.jars" not in submitted and "spark.jars.packages" not in submitted
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if used_ivy:
        record_resolved_jars(spark, config)
    log.info("spark %s master=%s app=%s", spark.version, spark.sparkContext.master, spark.sparkContext.appName)
    return spark


def _merge_list(existing: str | None, item: str) -> str:
    items = [x for x in (existing or "").split(",") if x]
    if item not in items:
        items.append(item)
    return ",".join(items)
