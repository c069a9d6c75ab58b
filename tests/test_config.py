import pytest
from pydantic import ValidationError

from medcorpus.core.config import Config, load_config
from medcorpus.core.errors import ConfigError


def test_defaults_file_matches_the_typed_defaults():
    assert load_config() == Config()


def test_set_overrides_nested_keys_with_yaml_typing(tmp_path):
    cfg = load_config(overrides=["ingest.max_record_bytes=1000", "spark.conf={spark.x: 'y'}", "warehouse=s3a://b/w"])
    assert cfg.ingest.max_record_bytes == 1000
    assert cfg.spark.conf == {"spark.x": "y"}
    assert cfg.warehouse == "s3a://b/w"


def test_config_file_layers_over_defaults_and_set_over_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("ingest:\n  max_record_bytes: 5\n  files_per_partition: 9\n")
    cfg = load_config(f, ["ingest.max_record_bytes=7"])
    assert (cfg.ingest.max_record_bytes, cfg.ingest.files_per_partition) == (7, 9)


def test_unknown_key_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'ingest.bogus' \(valid: .*max_record_bytes"):
        load_config(overrides=["ingest.bogus=1"])


def test_bad_value_is_one_clear_line():
    with pytest.raises(ConfigError, match="bad value for 'spark.shuffle_partitions'"):
        load_config(overrides=["spark.shuffle_partitions=many"])


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_hash_is_stable_ignores_run_id_and_tracks_thresholds():
    a = load_config(overrides=["run_id=a"])
    b = load_config(overrides=["run_id=b"])
    c = load_config(overrides=["ingest.max_record_bytes=12"])
    assert a.hash() == b.hash()
    assert a.hash() != c.hash()


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.warehouse = "elsewhere"  # type: ignore[misc]


def test_carebot_agreement_gap_is_one_key():
    assert load_config(overrides=["classify.max_score_gap=1.5"]).classify.max_score_gap == 1.5
    assert not hasattr(Config().llm.annotate, "quality_max_diff")
    with pytest.raises(ConfigError, match=r"'quality_max_diff' was removed: .* classify\.max_score_gap"):
        load_config(overrides=["llm.annotate.quality_max_diff=3"])
