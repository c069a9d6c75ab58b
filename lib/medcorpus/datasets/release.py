"""Releases: pin the Delta versions of the dataset tables under a name, and export them reproducibly.

``medcorpus release NAME`` appends one row to ``releases``: the current Delta version, rows and tokens of
``sft``, ``preference`` and ``pretrain`` (per mixture too), the config hash and the code version. Names are
immutable: releasing an existing name fails.

``medcorpus export NAME --format jsonl|parquet --out DIR`` reads exactly those versions (Delta time travel)
and writes, under ``DIR/NAME/<format>/`` (so a jsonl and a parquet export sit side by side)::

    sft/train-00000-of-0000N.{jsonl,parquet}          messages format (HF datasets, TRL SFTTrainer,
                                                      LLaMA-Factory sharegpt with role/content tags)
    preference/train-....                             prompt / chosen / rejected strings (LLaMA-Factory ranking)
    preference_conversational/train-....              the same pairs as message lists (TRL DPOTrainer)
    preference_sharegpt/train-....                    LLaMA-Factory sharegpt ranking form
    pretrain/<mixture>/train-....                     {"text": ...} (LLaMA-Factory pretraining)
    dataset_info.json                                 LLaMA-Factory dataset registry for the above
    README.md                                         dataset card; YAML ``configs:`` for datasets.load_dataset
    manifest.json                                     release row + every file's rows, bytes, sha256

Rows are written in key order, by Python (not Spark's writer, whose file names and row-group layout vary),
so exporting the same release again — even after the tables moved on — gives byte-identical files.
"""

from __future__ import annotations

import contextlib
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
from medcorpus.datasets.export import sha256_file

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


def table_properties(ctx: Any, name: str) -> dict[str, str]:
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(ctx.spark, ctx.warehouse.path(name)).detail().select("properties").first()
    return dict(row["properties"] or {}) if row else {}


def apply_retention(ctx: Any) -> str:
    """Set ``datasets.retention_days`` as file and log retention on the dataset tables (never shortening a
    longer value), then check that each table keeps a release for ``datasets.release_life_days``."""
    from medcorpus.datasets.retention import check_retention_config, check_table_retention, wanted_properties

    check_retention_config(ctx.config)
    changed = []
    for table in DATASET_TABLES:
        props = table_properties(ctx, table)
        want = wanted_properties(ctx.config, props)
        if want:
            ctx.warehouse._commit_metadata("release")
            pairs = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(want.items()))
            ctx.spark.sql(f"ALTER TABLE delta.`{ctx.warehouse.path(table)}` SET TBLPROPERTIES ({pairs})")
            props = table_properties(ctx, table)
            changed.append(table)
        check_table_retention(ctx.config, table, props)
    days = ctx.config.datasets.release_life_days
    return (f"retention set on {', '.join(changed)}; " if changed else "") + f"kept for at least {days:g} days"


def record_release(ctx: Any, name: str, stage: str = "release") -> str:
    """Record release ``name`` (fails when it exists or a dataset table is missing); returns a note."""
    import datetime as dt

    check_release_name(name)
    if release_row(ctx, name) is not None:
        raise ReleaseError(f"release {name!r} already exists; releases are immutable, pick a new name")
    missing = [t for t in DATASET_TABLES if not ctx.warehouse.exists(t)]
    if missing:
        raise TableMissingError(f"cannot release {name!r}: tables {missing} do not exist; run the pipeline first")
    retention = apply_retention(ctx)  # before the versions are read: the property commits come first
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
    ctx.warehouse.append_rows("releases", ctx.spark.createDataFrame([record], schema), stage=stage)
    return f"release {name}: versions {versions}; {gate}; {retention}"


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


def _write_shards(df: DataFrame, n_rows: int, folder: Path, fmt: str, per_shard: int,
                  counter: Any = None, subset: str = "") -> list[dict[str, Any]]:
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
        if counter is not None:
            counter.add(subset, batch)
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
        f"{name}_dpo_sharegpt": {"file_name": "preference_sharegpt", "formatting": "sharegpt", "ranking": True,
                                 "columns": {"messages": "conversations", "system": "system",
                                             "chosen": "chosen", "rejected": "rejected"}},
    }
    for m in mixtures:
        info[f"{name}_pretrain_{m}"] = {"file_name": f"pretrain/{m}", "columns": {"prompt": "text"}}
    return info


def export_release(ctx: Any, name: str, fmt: str, out_dir: str | Path, tokenizer: str | Path | None = None,
                   length_balanced: bool = False) -> Path:
    """Write the release's shards, README.md card, dataset_info.json and manifest.json under
    ``out_dir/name/fmt`` (a jsonl and a parquet export of one release sit side by side).

    Everything is written into a fresh temporary folder inside ``out_dir`` that is renamed into place at
    the end, so a crash leaves no half-written export. Nothing that this call did not create is ever
    deleted: an existing ``out_dir/name/fmt`` is left alone (an identical earlier export makes this a no-op;
    anything else is an error that names the folder). ``tokenizer``: a ``tokenizers`` file to count tokens
    with (the release's estimates otherwise); ``length_balanced``: add the ``preference_balanced`` subset.
    """
    check_release_name(name)
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    out = Path(out_dir)
    target = check_export_target(out, name, fmt)
    counter = None
    if tokenizer is not None:
        from medcorpus.datasets.export import TokenCounter

        counter = TokenCounter(tokenizer)
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
    made_parent = False
    try:
        _write_export(ctx, name, fmt, rel, tmp, counter=counter, balanced=length_balanced)
        if target.exists():  # an earlier export of this release: keep it when it is the same bytes
            if _same_export(target, tmp):
                log.info("export %s (%s): %s already holds identical files", name, fmt, target)
                return target
            raise ReleaseError(f"{target} already holds a different export of {name!r}; move it away or "
                               "choose another --out (existing files are never deleted)")
        if not target.parent.exists():
            target.parent.mkdir()
            made_parent = True
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)  # only the temporary folder this call created
        if made_parent and not target.exists():
            target.parent.rmdir()
    log.info("export %s (%s): files under %s", name, fmt, target)
    return target


def check_export_target(out: Path, name: str, fmt: str = "jsonl") -> Path:
    """``out/name/fmt`` when an export may go there (checked before Spark starts, and again at export time).

    ``out/name`` may exist when it holds only format folders; ``out/name/fmt`` when it is an earlier export of
    the same release.
    """
    if out.exists() and not out.is_dir():
        raise ReleaseError(f"--out {out} is a file, not a folder")
    folder = out / name
    if folder.exists() or folder.is_symlink():
        entries = list(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else None
        if entries is None or any(e.name not in FORMATS or e.is_symlink() or not e.is_dir() for e in entries):
            raise ReleaseError(f"{folder} already exists and is not an export of release {name!r}; "
                               "choose another --out (existing files are never deleted)")
    target = folder / fmt
    if target.exists() or target.is_symlink():
        _check_replaceable(target, name)
    return target


def _check_replaceable(target: Path, name: str) -> None:
    """An existing ``out/name/fmt`` must be an earlier export of the same release (else: a one-line error)."""
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


#: Delta 4 refuses time travel to a version older than delta.deletedFileRetentionDuration, whether or not its
#: files are still there. ``medcorpus vacuum`` keeps every release's files, so an export lifts the check once it
#: has seen that every file of the pinned versions exists.
ENFORCE_RETENTION_CONF = "spark.databricks.delta.vacuum.enforceTimeTravelWithinDeletedFileRetentionDuration"


@contextlib.contextmanager
def _release_reads(ctx: Any, versions: dict[str, int]) -> Iterator[None]:
    """Read a release's versions: every data file present (else one line naming the table), then time travel
    past the file retention allowed while the export runs."""
    from medcorpus.datasets.retention import missing_files

    for table in DATASET_TABLES:
        try:
            gone = missing_files(ctx.config, table, int(versions[table]))
        except Exception as err:  # delta-rs: the version's log was cleaned
            raise ReleaseError(f"{table} version {versions[table]} of the release can no longer be read: "
                               f"{str(err).splitlines()[0][:200]}") from None
        if gone:
            raise ReleaseError(f"{table} version {versions[table]} of the release lost {len(gone)} data file(s) "
                               f"(e.g. {gone[0]}): the table was vacuumed outside `medcorpus vacuum`, which keeps "
                               "every release's files")
    before = ctx.spark.conf.get(ENFORCE_RETENTION_CONF, None)
    ctx.spark.conf.set(ENFORCE_RETENTION_CONF, "false")
    try:
        yield
    finally:
        if before is None:
            ctx.spark.conf.unset(ENFORCE_RETENTION_CONF)
        else:
            ctx.spark.conf.set(ENFORCE_RETENTION_CONF, before)


def _read_at(ctx: Any, table: str, version: int) -> DataFrame:
    """A table at a release's version; one line naming the cause when that version is gone."""
    try:
        df = ctx.warehouse.read(table, version)
        df.schema  # noqa: B018 - resolves the snapshot now
        return df
    except Exception as err:  # a vacuumed or log-cleaned version: Spark's error is pages long
        text = str(err)
        if any(k in text for k in ("versionAsOf", "FileNotFound", "VersionNotFound", "DELTA_", "does not exist")):
            raise ReleaseError(f"{table} version {version} can no longer be read: {text.splitlines()[0][:300]}") \
                from None
        raise


def _write_export(ctx: Any, name: str, fmt: str, rel: dict[str, Any], tmp: Path, counter: Any = None,
                  balanced: bool = False) -> None:
    with _release_reads(ctx, rel["table_versions"]):
        _write_release_files(ctx, name, fmt, rel, tmp, counter, balanced)


def _write_release_files(ctx: Any, name: str, fmt: str, rel: dict[str, Any], tmp: Path, counter: Any,
                         balanced: bool) -> None:
    from medcorpus.datasets import export as ex

    versions, counts = rel["table_versions"], rel["row_counts"]
    per_shard = ctx.config.datasets.export_rows_per_shard
    files: list[dict[str, Any]] = []

    def shards(df: DataFrame, n: int, subset: str) -> None:
        files.extend(_write_shards(df, n, tmp / subset, fmt, per_shard, counter, subset.replace("/", "_")))

    sft = _read_at(ctx, "sft", versions["sft"])
    shards(_sft_export(sft), counts["sft"], "sft")
    pref = _read_at(ctx, "preference", versions["preference"])
    shards(_preference_export(pref), counts["preference"], "preference")
    conversational = ex.conversational_preference(pref, sft)
    shards(conversational, counts["preference"], "preference_conversational")
    shards(ex.sharegpt_preference(conversational), counts["preference"], "preference_sharegpt")
    if balanced:
        chosen = ex.length_balanced(pref, ctx.config.datasets.seed).persist()
        try:
            n_balanced = chosen.count()
            if n_balanced:
                shards(ex.conversational_preference(chosen, sft), n_balanced, "preference_balanced")
            else:  # an empty subset would only fail the trainer's loader
                log.warning("export %s: no length-balanced selection: in every pair chosen is longer (or every one "
                            "shorter) than rejected", name)
        finally:
            chosen.unpersist()
    pretrain = _read_at(ctx, "pretrain", versions["pretrain"])
    mixtures = sorted(k.split("/", 1)[1] for k in counts if k.startswith("pretrain/"))
    for m in mixtures:
        shards(_pretrain_export(pretrain, m), counts[f"pretrain/{m}"], f"pretrain/{m}")
    (tmp / "dataset_info.json").write_text(
        json.dumps(llamafactory_info("medcorpus", fmt, mixtures), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    entries = []
    for f in files:
        path = Path(f["path"])
        entries.append({"path": path.relative_to(tmp).as_posix(), "rows": f["rows"],
                        "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    manifest = {
        "release": name,
        "created_at": rel["created_at"].isoformat(),
        "config_hash": rel["config_hash"],
        "code_version": rel["code_version"],
        "table_versions": dict(sorted(versions.items())),
        "row_counts": dict(sorted(counts.items())),
        "token_counts": dict(sorted(rel["token_counts"].items())),
        "preference_lengths": ex.length_report(pref),
        "sources": {"sft": ex.source_counts(sft), "preference": ex.source_counts(pref),
                    "pretrain": ex.source_counts(pretrain)},
        "format": fmt,
        "files": sorted(entries, key=lambda e: e["path"]),
    }
    if counter is not None:
        manifest["tokenizer"] = counter.manifest()
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp / "README.md").write_text(ex.dataset_card(manifest), encoding="utf-8")


def verify_export(folder: str | Path) -> list[str]:
    """Files whose sha256 or size no longer match the manifest (empty list = intact)."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    bad = []
    for e in manifest["files"]:
        p = folder / e["path"]
        if not p.exists() or p.stat().st_size != e["bytes"] or sha256_file(p) != e["sha256"]:
            bad.append(e["path"])
    return bad
