"""Releases: pin the Delta versions of the dataset tables under a name, and export them reproducibly.

``medcorpus release NAME`` appends one row to ``releases``: the current Delta version, rows and tokens of
``sft``, ``preference`` and ``pretrain`` (per mixture too), the config hash and the code version. Names are
immutable: releasing an existing name fails.

``medcorpus export NAME --format jsonl|parquet --out DIR`` reads exactly those versions (Delta time travel)
and writes, under ``DIR/NAME/``::

    sft/train-00000-of-0000N.{jsonl,parquet}          messages format (HF datasets, TRL SFTTrainer,
                                                      LLaMA-Factory sharegpt with role/content tags)
    preference/train-....                             prompt / chosen / rejected (TRL DPOTrainer,
                                                      LLaMA-Factory ranking)
    pretrain/<mixture>/train-....                     {"text": ...} (LLaMA-Factory pretraining)
    dataset_info.json                                 LLaMA-Factory dataset registry for the above
    manifest.json                                     release row + every file's rows, bytes, sha256

Rows are written in key order, by Python (not Spark's writer, whose file names and row-group layout vary),
so exporting the same release again — even after the tables moved on — gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medcorpus.core.config import REPO_ROOT
from medcorpus.core.errors import InputError, MedcorpusError, TableMissingError
from medcorpus.core.runlog import StageReport, write_report

log = logging.getLogger(__name__)

DATASET_TABLES = ("sft", "preference", "pretrain")
FORMATS = ("jsonl", "parquet")


class ReleaseError(MedcorpusError):
    """A release cannot be recorded or exported."""


#: A release name is one path component: letters, digits, '.', '_' and '-', starting with a letter or digit
#: (so never '.', '..', a hidden name or anything with a separator), at most 128 characters.
RELEASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_release_name(name: str) -> str:
    """``name`` when it is a safe release name (one folder under ``--out``), else a one-line ReleaseError."""
    if not isinstance(name, str) or not RELEASE_NAME.fullmatch(name):
        raise ReleaseError(f"bad release name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit (no path separators, no '.' or '..')")
    return name


def code_version() -> str:
    """``<package version>+g<commit>[.dirty]`` (``+unknown`` outside a git checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("medcorpus")
    except PackageNotFoundError:
        pkg = "0"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "lib", "schemas", "configs"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"{pkg}+unknown"
    return f"{pkg}+g{commit}" + (".dirty" if dirty else "")


def _validation_hook(ctx: Any, versions: dict[str, int]) -> str:
    """Call validation.assert_release_ready when that module provides it (it raises on failure)."""
    try:
        from medcorpus.quality import validation  # type: ignore[attr-defined]
    except ImportError:
        log.warning("release: medcorpus.quality.validation not available: release NOT gated by validation")
        return "not gated (medcorpus.quality.validation absent)"
    fn = getattr(validation, "assert_release_ready", None)
    if fn is None:
        log.warning("release: medcorpus.quality.validation has no assert_release_ready: release NOT gated")
        return "not gated (no assert_release_ready)"
    import inspect

    available = {"ctx": ctx, "spark": ctx.spark, "config": ctx.config, "warehouse": ctx.warehouse,
                 "versions": versions, "table_versions": versions, "tables": list(versions)}
    params = list(inspect.signature(fn).parameters.values())
    args = [available[p.name] for p in params if p.name in available and p.default is inspect.Parameter.empty]
    kwargs = {p.name: available[p.name] for p in params
              if p.name in available and p.default is not inspect.Parameter.empty}
    if params and params[0].name not in available:
        args = [ctx] + args  # an unknown first parameter name: pass the run context
    fn(*args, **kwargs)
    return "validation passed"


def table_counts(ctx: Any, name: str, version: int) -> tuple[dict[str, int], dict[str, int]]:
    """Rows and tokens of a table at a version; pretrain also per mixture (``pretrain/<mixture>``)."""
    df = ctx.warehouse.read(name, version)
    total = df.agg(F.count(F.lit(1)).alias("n"), F.sum("token_estimate").alias("t")).first()
    rows, tokens = {name: int(total["n"])}, {name: int(total["t"] or 0)}
    if name == "pretrain":
        for r in df.groupBy("mixture").agg(F.count(F.lit(1)).alias("n"), F.sum("token_estimate").alias("t")).collect():
            rows[f"pretrain/{r['mixture']}"] = int(r["n"])
            tokens[f"pretrain/{r['mixture']}"] = int(r["t"] or 0)
    return rows, tokens


def release_row(ctx: Any, name: str) -> dict[str, Any] | None:
    if not ctx.warehouse.exists("releases"):
        return None
    row = ctx.warehouse.read("releases").filter(F.col("release") == name).first()
    return row.asDict(recursive=True) if row else None


def run_release(ctx: Any, name: str) -> StageReport:
    """Record release ``name`` (fails when it exists or a dataset table is missing)."""
    import datetime as dt

    report = StageReport("release")
    check_release_name(name)
    if release_row(ctx, name) is not None:
        raise ReleaseError(f"release {name!r} already exists; releases are immutable, pick a new name")
    missing = [t for t in DATASET_TABLES if not ctx.warehouse.exists(t)]
    if missing:
        raise TableMissingError(f"cannot release {name!r}: tables {missing} do not exist; run the pipeline first")
    versions = {t: int(ctx.warehouse.version(t)) for t in DATASET_TABLES}
    gate = _validation_hook(ctx, versions)
    rows: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for t, v in versions.items():
        r, k = table_counts(ctx, t, v)
        rows.update(r)
        tokens.update(k)
    record = {
        "release": name,
        "created_at": dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
        "run_id": ctx.run_id,
        "config_hash": ctx.config.hash(),
        "code_version": code_version(),
        "table_versions": versions,
        "row_counts": rows,
        "token_counts": tokens,
    }
    from medcorpus.core.warehouse import table_spec

    schema = table_spec("releases").schema
    ctx.warehouse.append_rows("releases", ctx.spark.createDataFrame([record], schema), stage="release")
    report.rows_in = report.rows_out = 1
    report.table_version = ctx.warehouse.version("releases")
    report.note = f"release {name}: versions {versions}; {gate}"
    write_report(ctx.spark, ctx.warehouse, report.finish())
    return report


# ---------------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------------
def _sft_export(df: DataFrame) -> DataFrame:
    """Flat, always-typed columns: strings are '' rather than null so every shard infers the same schema."""
    s = lambda c: F.coalesce(F.col(c), F.lit(""))  # noqa: E731
    options = F.concat_ws("\n", F.transform(F.coalesce(F.col("options"), F.array()),
                                            lambda o: F.concat(o["label"], F.lit(". "), o["text"])))
    return df.orderBy("sample_id").select(
        F.col("sample_id").alias("id"),
        F.transform("messages", lambda m: F.struct(m["role"].alias("role"), m["content"].alias("content"))).alias("messages"),
        "source", "type", "language", s("department").alias("department"),
        s("question").alias("question"), options.alias("options"), s("answer").alias("answer"),
        s("explanation").alias("explanation"), s("disease_group").alias("disease_group"),
        s("discipline").alias("discipline"), s("competency").alias("competency"), s("difficulty").alias("difficulty"),
        F.col("scores.deita").alias("deita_score"), F.col("token_estimate"),
    )


def _preference_export(df: DataFrame) -> DataFrame:
    return df.orderBy("pair_id").select(F.col("pair_id").alias("id"), "prompt", "chosen", "rejected", "kind", "source",
                                        "language", "token_estimate")


def _pretrain_export(df: DataFrame, mixture: str) -> DataFrame:
    return df.filter(F.col("mixture") == mixture).orderBy("item_id").select(
        F.col("item_id").alias("id"), "text", "component", "lang", "source", "token_estimate")


def _rows(df: DataFrame) -> Iterator[dict[str, Any]]:
    """Stream rows to the driver partition by partition, in the DataFrame's order (never a collect())."""
    for row in df.toLocalIterator(prefetchPartitions=False):
        yield row.asDict(recursive=True)


def _shard_name(i: int, n: int, fmt: str) -> str:
    return f"train-{i:05d}-of-{n:05d}.{fmt}"


def _write_shards(df: DataFrame, n_rows: int, folder: Path, fmt: str, per_shard: int) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import to_arrow_schema

    folder.mkdir(parents=True, exist_ok=True)
    n_shards = max(1, -(-n_rows // per_shard))
    arrow_schema = to_arrow_schema(df.schema) if fmt == "parquet" else None
    files: list[dict[str, Any]] = []
    it = _rows(df)
    for i in range(n_shards):
        path = folder / _shard_name(i, n_shards, fmt)
        batch = []
        for row in it:
            batch.append(row)
            if len(batch) == per_shard:
                break
        if fmt == "jsonl":
            with path.open("w", encoding="utf-8", newline="\n") as fh:
                for row in batch:
                    fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        else:
            table = pa.Table.from_pylist(batch, schema=arrow_schema)
            pq.write_table(table, path, compression="zstd", write_statistics=True, use_dictionary=True)
        files.append({"path": str(path), "rows": len(batch)})
    if next(it, None) is not None:
        raise ReleaseError(f"export of {folder} found more rows than the release recorded ({n_rows})")
    return files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def llamafactory_info(name: str, fmt: str, mixtures: list[str]) -> dict[str, Any]:
    """LLaMA-Factory ``dataset_info.json`` entries for the exported folders."""
    info: dict[str, Any] = {
        f"{name}_sft": {
            "file_name": "sft", "formatting": "sharegpt", "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"},
        },
        f"{name}_dpo": {"file_name": "preference", "ranking": True,
                        "columns": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}},
    }
    for m in mixtures:
        info[f"{name}_pretrain_{m}"] = {"file_name": f"pretrain/{m}", "columns": {"prompt": "text"}}
    return info


def export_release(ctx: Any, name: str, fmt: str, out_dir: str | Path) -> Path:
    """Write the release's shards, dataset_info.json and manifest.json under ``out_dir/name``.

    Everything is written into a fresh temporary folder inside ``out_dir`` that is renamed to ``name`` at
    the end, so a crash leaves no half-written export. Nothing that this call did not create is ever
    deleted: an existing ``out_dir/name`` is left alone (an identical earlier export makes this a no-op;
    anything else is an error that names the folder).
    """
    check_release_name(name)
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    out = Path(out_dir)
    target = check_export_target(out, name)
    rel = release_row(ctx, name)
    if rel is None:
        known = []
        if ctx.warehouse.exists("releases"):
            known = [r["release"] for r in ctx.warehouse.read("releases").select("release").collect()]
        raise ReleaseError(f"no release named {name!r}; releases: {', '.join(sorted(known)) or 'none'}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=out))
    except OSError as err:
        raise ReleaseError(f"cannot write under --out {out}: {err.strerror or err}") from err
    try:
        _write_export(ctx, name, fmt, rel, tmp)
        if target.exists():  # an earlier export of this release: keep it when it is the same bytes
            if _same_export(target, tmp):
                log.info("export %s (%s): %s already holds identical files", name, fmt, target)
                return target
            raise ReleaseError(f"{target} already holds a different export of {name!r}; move it away or "
                               "choose another --out (existing files are never deleted)")
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)  # only the temporary folder this call created
    log.info("export %s (%s): files under %s", name, fmt, target)
    return target


def check_export_target(out: Path, name: str) -> Path:
    """``out/name`` when an export may go there (checked before Spark starts, and again at export time)."""
    if out.exists() and not out.is_dir():
        raise ReleaseError(f"--out {out} is a file, not a folder")
    target = out / name
    if target.exists() or target.is_symlink():
        _check_replaceable(target, name)
    return target


def _check_replaceable(target: Path, name: str) -> None:
    """An existing ``out/name`` must be an earlier export of the same release (else: a one-line error)."""
    manifest = target / "manifest.json"
    if target.is_symlink() or not target.is_dir() or not manifest.is_file():
        raise ReleaseError(f"{target} already exists and is not an export of release {name!r}; "
                           "choose another --out (existing files are never deleted)")
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8")).get("release")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded != name:
        raise ReleaseError(f"{target} already exists and is not an export of release {name!r}; "
                           "choose another --out (existing files are never deleted)")


def _same_export(existing: Path, new: Path) -> bool:
    """Same manifest (files, sizes, hashes), and the files on disk still match it."""
    try:
        same = (existing / "manifest.json").read_bytes() == (new / "manifest.json").read_bytes()
    except OSError:
        return False
    return same and not verify_export(existing)


def _write_export(ctx: Any, name: str, fmt: str, rel: dict[str, Any], tmp: Path) -> None:
    versions, counts = rel["table_versions"], rel["row_counts"]
    per_shard = ctx.config.datasets.export_rows_per_shard
    files: list[dict[str, Any]] = []
    files += _write_shards(_sft_export(ctx.warehouse.read("sft", versions["sft"])), counts["sft"],
                           tmp / "sft", fmt, per_shard)
    files += _write_shards(_preference_export(ctx.warehouse.read("preference", versions["preference"])),
                           counts["preference"], tmp / "preference", fmt, per_shard)
    pretrain = ctx.warehouse.read("pretrain", versions["pretrain"])
    mixtures = sorted(k.split("/", 1)[1] for k in counts if k.startswith("pretrain/"))
    for m in mixtures:
        files += _write_shards(_pretrain_export(pretrain, m), counts[f"pretrain/{m}"], tmp / "pretrain" / m, fmt,
                               per_shard)
    (tmp / "dataset_info.json").write_text(
        json.dumps(llamafactory_info("medcorpus", fmt, mixtures), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    entries = []
    for f in files:
        path = Path(f["path"])
        entries.append({"path": path.relative_to(tmp).as_posix(), "rows": f["rows"],
                        "bytes": path.stat().st_size, "sha256": _sha256(path)})
    manifest = {
        "release": name,
        "created_at": rel["created_at"].isoformat(),
        "config_hash": rel["config_hash"],
        "code_version": rel["code_version"],
        "table_versions": dict(sorted(versions.items())),
        "row_counts": dict(sorted(counts.items())),
        "token_counts": dict(sorted(rel["token_counts"].items())),
        "format": fmt,
        "files": sorted(entries, key=lambda e: e["path"]),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def verify_export(folder: str | Path) -> list[str]:
    """Files whose sha256 or size no longer match the manifest (empty list = intact)."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    bad = []
    for e in manifest["files"]:
        p = folder / e["path"]
        if not p.exists() or p.stat().st_size != e["bytes"] or _sha256(p) != e["sha256"]:
            bad.append(e["path"])
    return bad


def run_auto_release(ctx: Any) -> StageReport:
    """Pipeline stage: record release ``<auto_release_prefix><run_id>`` (off when auto_release is false)."""
    cfg = ctx.config.datasets
    if not cfg.auto_release:
        report = StageReport("release")
        report.note = "datasets.auto_release is false: no release recorded"
        write_report(ctx.spark, ctx.warehouse, report.finish())
        return report
    return run_release(ctx, f"{cfg.auto_release_prefix}{ctx.run_id}")
