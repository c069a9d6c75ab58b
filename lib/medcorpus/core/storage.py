"""Object-store helpers for the driver: list sources, check they exist, upload reports and exports.

Spark reads and writes tables through Hadoop's S3A; these helpers are for the small things around it
that should not need a JVM: failing fast on a missing ``s3a://`` input before Spark starts, and putting
a report or an export file next to the warehouse. Local paths work the same way, so callers do not
branch on the scheme. Credentials come from the environment variables named in ``config.s3``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcorpus.core.config import S3Config

S3_SCHEMES = ("s3a://", "s3://", "s3n://")


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEMES)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3a://bucket/some/key`` -> (``bucket``, ``some/key``)."""
    if not is_s3(uri):
        raise ValueError(f"not an s3 URI: {uri}")
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri}")
    return bucket, key


def s3_client(s3: S3Config) -> Any:
    """A boto3 S3 client for the configured endpoint (AWS when ``endpoint`` is None)."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name=s3.region,
        aws_access_key_id=os.environ.get(s3.access_key_env),
        aws_secret_access_key=os.environ.get(s3.secret_key_env),
        config=BotoConfig(s3={"addressing_style": "path" if s3.path_style_access else "auto"},
                          retries={"max_attempts": 3, "mode": "standard"}),
    )


def list_objects(uri: str, s3: S3Config) -> list[ObjectInfo]:
    """Every object (file) under ``uri`` — a key prefix or a single key — sorted by URI."""
    if not is_s3(uri):
        root = Path(uri.removeprefix("file:"))
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        return [ObjectInfo(str(p), p.stat().st_size) for p in files]
    scheme = uri.split("://", 1)[0]
    bucket, key = split_s3(uri)
    client = s3_client(s3)
    out: list[ObjectInfo] = []
    prefixes = [key] if not key or key.endswith("/") else [key, key.rstrip("/") + "/"]
    seen: set[str] = set()
    for prefix in prefixes:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"]
                exact_or_child = name == key or name.startswith(key.rstrip("/") + "/") or not key
                if exact_or_child and name not in seen and not name.endswith("/"):
                    seen.add(name)
                    out.append(ObjectInfo(f"{scheme}://{bucket}/{name}", int(obj["Size"])))
    return sorted(out, key=lambda o: o.uri)


def exists(uri: str, s3: S3Config) -> bool:
    """True when ``uri`` is a file or a non-empty folder/prefix."""
    if not is_s3(uri):
        return Path(uri.removeprefix("file:")).exists()
    return bool(list_objects(uri, s3)[:1])


def upload(local: str | Path, uri: str, s3: S3Config) -> list[str]:
    """Copy a local file, or a folder recursively, to ``uri`` (s3a:// or local). Returns the written URIs."""
    local = Path(local)
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    written = []
    for path in files:
        rel = path.name if local.is_file() else path.relative_to(local).as_posix()
        target = uri if local.is_file() else uri.rstrip("/") + "/" + rel
        if is_s3(target):
            bucket, key = split_s3(target)
            s3_client(s3).upload_file(str(path), bucket, key)
        else:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        written.append(target)
    return written


def write_bytes(uri: str, data: bytes, s3: S3Config) -> str:
    """Write one small object (a JSON report, a manifest)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_client(s3).put_object(Bucket=bucket, Key=key, Body=data)
    else:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_bytes(data)
    return uri


def read_bytes(uri: str, s3: S3Config) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return s3_client(s3).get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
    return Path(uri).read_bytes()


# ---------------------------------------------------------------------------------------------------
# the warehouse: checked before Spark starts, and locked against a second writer
# ---------------------------------------------------------------------------------------------------
LOCK_NAME = ".medcorpus.lock"


def check_warehouse(uri: str, s3: S3Config, writable: bool = True) -> None:
    """Fail in one line, before any input is read, when the warehouse cannot be used.

    Local: the path must not be a file, and (``writable``) a probe file must be creatable in it or in its
    nearest existing parent folder. ``s3a://``: credentials must be configured and the bucket reachable.
    """
    from medcorpus.core.errors import ConfigError

    if is_s3(uri):
        _check_s3_warehouse(uri, s3)
        return
    path = Path(uri.removeprefix("file:"))
    if path.exists() and not path.is_dir():
        raise ConfigError(f"warehouse {uri} is a file, not a folder; pass --warehouse with a folder path")
    if not writable:
        return
    probe_dir = path
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise ConfigError(f"warehouse {uri} cannot be created: {probe_dir} is a file")
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".medcorpus-probe-"):
            pass
    except OSError as err:
        raise ConfigError(f"warehouse {uri} is not writable ({probe_dir}: {err.strerror or err}); "
                          "pass --warehouse with a writable folder") from None


def _check_s3_warehouse(uri: str, s3: S3Config) -> None:
    from medcorpus.core.errors import ConfigError

    bucket, _ = split_s3(uri)
    if not (os.environ.get(s3.access_key_env) and os.environ.get(s3.secret_key_env)):
        import boto3

        if boto3.Session().get_credentials() is None:
            raise ConfigError(f"warehouse {uri}: no S3 credentials; set {s3.access_key_env} and "
                              f"{s3.secret_key_env} (or an AWS profile)")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3_client(s3).head_bucket(Bucket=bucket)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "?")
        raise ConfigError(f"warehouse {uri}: bucket {bucket!r} is not usable (S3 error {code})") from None
    except BotoCoreError as err:
        raise ConfigError(f"warehouse {uri}: cannot reach S3 ({err})") from None


class WarehouseLock:
    """An exclusive ``flock`` on ``<warehouse>/.medcorpus.lock`` for one writing command.

    The kernel drops it when the process ends, however it ends, so a killed run never leaves a stale
    lock. ``s3a://`` warehouses have no such lock (Delta's optimistic concurrency still protects the
    tables; its conflict errors are reported in one line by the CLI).
    """

    def __init__(self, uri: str):
        self.uri = uri
        self._fh: Any = None

    def acquire(self) -> WarehouseLock:
        import fcntl

        from medcorpus.core.errors import MedcorpusError

        if is_s3(self.uri):
            return self
        folder = Path(self.uri.removeprefix("file:"))
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise MedcorpusError(f"warehouse busy: {self.uri} is being written by {holder}; wait for it to "
                                 "finish (or use another --warehouse)") from None
        fh.seek(0)
        fh.truncate()
        import datetime as dt

        fh.write(f"medcorpus pid {os.getpid()} since {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the file drops the flock
            self._fh = None

    def __enter__(self) -> WarehouseLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
