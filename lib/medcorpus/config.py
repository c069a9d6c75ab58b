"""Typed configuration: one frozen object, loaded from YAML, overridable from the command line.

Every threshold of every stage lives here. ``configs/default.yaml`` mirrors these defaults so a user
can read and copy them; ``--config FILE`` layers a partial YAML on top and ``--set a.b=value`` layers
single keys on top of that. Unknown keys fail with the list of valid ones.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medcorpus.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = REPO_ROOT / "configs" / "default.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SparkConfig(_Section):
    master: str = Field("local[2]", description="Used only when spark-submit did not set a master.")
    app_name: str = "medcorpus"
    shuffle_partitions: int = Field(8, description="Local default; AQE coalesces further.")
    driver_memory: str = "4g"
    delta_package: str = Field(
        "io.delta:delta-spark_4.1_2.13:4.4.0",
        description="Delta jar coordinates (Maven Central serves 4.4.0 for Spark 4.1; the pip wrapper is 4.4.1).",
    )
    extra_packages: tuple[str, ...] = Field((), description="More Maven coordinates, e.g. hadoop-aws.")
    ivy_dir: str = Field(".ivy", description="Project-local Ivy cache, relative to the repo root.")
    conf: dict[str, str] = Field(default_factory=dict, description="Any extra spark.* settings.")


class S3Config(_Section):
    enabled: bool = Field(
        False, description="Add the S3A jars even when the warehouse is local (set by the CLI for s3a:// sources)."
    )
    endpoint: str | None = Field(None, description="S3-protocol endpoint URL (None = AWS).")
    region: str = "us-east-1"
    path_style_access: bool = True
    access_key_env: str = "AWS_ACCESS_KEY_ID"
    secret_key_env: str = "AWS_SECRET_ACCESS_KEY"
    sdk_version: str | None = Field(
        None, description="AWS SDK v2 version for S3A (None = the one the bundled Hadoop was built with)."
    )
    sdk_bundle: bool = Field(
        False, description="Use the full shaded AWS SDK bundle (612 MiB) instead of the ~12 MB S3 modules."
    )


class IngestConfig(_Section):
    max_record_bytes: int = Field(8_000_000, description="Records larger than this go to quarantine.")
    max_line_bytes: int = Field(16_000_000, description="A JSONL line longer than this is quarantined unread.")
    quarantine_payload_chars: int = Field(2000, description="Raw payload kept in quarantine rows.")
    max_replacement_ratio: float = Field(
        0.02, description="Share of U+FFFD after best-effort decoding above which a record is undecodable."
    )
    files_per_partition: int = Field(4, description="Source files read by one task.")
    text_extensions: tuple[str, ...] = (".txt", ".md", ".text")
    jsonl_extensions: tuple[str, ...] = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")
    parquet_extensions: tuple[str, ...] = (".parquet",)
    warc_extensions: tuple[str, ...] = (".warc", ".warc.gz", ".wet", ".wet.gz", ".warc.wet.gz")
    text_field: str = "text"


class NormalizeConfig(_Section):
    t2s_config: str = Field("t2s", description="OpenCC conversion used for Traditional -> Simplified.")
    t2s_min_changed_ratio: float = Field(
        0.02, description="Share of Han characters OpenCC changes above which a doc counts as Traditional."
    )
    lang_min_confidence: float = Field(0.5, description="Below this the language is 'other'.")
    zh_tokens_per_han_char: float = 0.7
    tokens_per_other_char: float = 0.25


# Sections of the later stages. Each stage's owner fills its own class; keep one class per stage.
class FilterConfig(_Section):
    """Rule filters and PII redaction (stage ``filter``)."""


class ClassifyConfig(_Section):
    """Domain classifier and quality rater (stage ``classify``)."""


class DedupConfig(_Section):
    """Exact and MinHash LSH near-duplicate removal (stage ``dedup``)."""


class DecontaminateConfig(_Section):
    """Benchmark decontamination (stage ``decontaminate``)."""


class DatasetsConfig(_Section):
    """Pretraining mixtures, SFT and preference tables, releases."""


class ValidateConfig(_Section):
    """Great Expectations gates and reports."""


class LLMConfig(_Section):
    """OpenAI-compatible endpoint used by the LLM-backed stages."""


class Config(_Section):
    warehouse: str = Field("warehouse", description="Local path or s3a:// URI holding every table.")
    run_id: str | None = Field(None, description="Set per run; generated when absent.")
    log_level: str = "INFO"
    spark: SparkConfig = SparkConfig()
    s3: S3Config = S3Config()
    ingest: IngestConfig = IngestConfig()
    normalize: NormalizeConfig = NormalizeConfig()
    filter: FilterConfig = FilterConfig()
    classify: ClassifyConfig = ClassifyConfig()
    dedup: DedupConfig = DedupConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()
    datasets: DatasetsConfig = DatasetsConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    llm: LLMConfig = LLMConfig()

    def hash(self) -> str:
        """A stable short hash of everything that changes results (run_id excluded)."""
        payload = self.model_dump(mode="json", by_alias=True, exclude={"run_id", "log_level"})
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_override(item: str) -> dict[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    dotted, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else ""
    node: dict[str, Any] = {}
    cursor = node
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        cursor[part] = {}
        cursor = cursor[part]
    cursor[parts[-1]] = value
    return node


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _explain(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{loc}'{_valid_keys_hint(e['loc'])}")
        else:
            lines.append(f"bad value for '{loc}': {e['msg']}")
    return "; ".join(lines)


def _valid_keys_hint(loc: tuple[Any, ...]) -> str:
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return ""
        model = field.annotation
    return f" (valid: {', '.join(sorted(model.model_fields))})"


def load_config(
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    base_file: str | Path | None = DEFAULT_CONFIG_PATH,
) -> Config:
    """Defaults <- configs/default.yaml <- --config FILE <- --set key=value."""
    data: dict[str, Any] = {}
    if base_file is not None and Path(base_file).exists():
        data = _read_yaml(Path(base_file))
    if config_file is not None:
        data = _deep_merge(data, _read_yaml(Path(config_file)))
    for item in overrides:
        data = _deep_merge(data, _parse_override(item))
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_explain(err)) from None



def write_default_yaml(path: Path = DEFAULT_CONFIG_PATH) -> None:
    """Regenerate configs/default.yaml from the typed defaults (``python -m medcorpus.config``)."""
    data = Config().model_dump(mode="json", by_alias=True, exclude={"run_id"})
    header = "# medcorpus defaults: every threshold of every stage. Override with --config FILE or --set key=value.\n"
    header += "# Generated from lib/medcorpus/config.py by `python -m medcorpus.config`; edit the classes, not this file.\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


if __name__ == "__main__":
    write_default_yaml()
