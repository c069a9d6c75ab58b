"""Issue 21, without Spark: tables/history/vacuum from the Delta log (delta-rs), --help descriptions,
a bad --until, retention intervals, verify of a hand-made export."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medcorpus.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_spark(monkeypatch):
    from medcorpus.core import session

    def boom(config):
        raise AssertionError("Spark was started")

    monkeypatch.setattr(session, "build_spark", boom)


def _delta_rs_warehouse(root: Path) -> None:
    """Two registered tables written by delta-rs (no JVM), with medcorpus commit metadata."""
    import pyarrow as pa
    from deltalake import CommitProperties, write_deltalake

    def meta(run, stage):
        return CommitProperties(custom_metadata={"userMetadata": json.dumps({"run_id": run, "stage": stage})})

    rows = pa.table({"release": ["a"], "run_id": ["r1"]})
    write_deltalake(str(root / "releases"), rows, commit_properties=meta("r1", "release"))
    docs = pa.table({"doc_id": [f"d{i}" for i in range(7)]})
    write_deltalake(str(root / "documents"), docs.slice(0, 3), commit_properties=meta("r1", "normalize"))
    write_deltalake(str(root / "documents"), docs.slice(3), mode="append", commit_properties=meta("r2", "normalize"))


def test_tables_and_history_read_the_delta_log_without_spark(tmp_path, capsys, no_spark):
    wh = tmp_path / "wh"
    _delta_rs_warehouse(wh)
    started = time.monotonic()
    assert main(["tables", "--warehouse", str(wh)]) == 0
    assert time.monotonic() - started < 5
    lines = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines() if ln.strip()}
    assert lines["documents"][1:] == ["1", "7", "r2", "/", "normalize"]
    assert lines["releases"][1:3] == ["0", "1"] and lines["sft"][1:3] == ["-", "-"]
    assert main(["history", "documents", "--warehouse", str(wh), "--limit", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in out[1:]] == ["1", "0"] and '"run_id": "r2"' in out[1]
    assert main(["history", "nosuch", "--warehouse", str(wh)]) == 2
    assert "unknown table 'nosuch'" in capsys.readouterr().err


def test_the_no_spark_commands_do_not_import_the_stage_registry_or_a_jvm(tmp_path):
    """`tables` in a fresh interpreter: neither the stage registry (seconds of imports) nor py4j."""
    wh = tmp_path / "wh"
    _delta_rs_warehouse(wh)
    code = ("import sys; from medcorpus.cli import main; rc = main(['tables', '--warehouse', sys.argv[1]]); "
            "ps = sys.modules.get('pyspark'); gateway = ps and ps.SparkContext._gateway; "
            "print('LOADED', sorted(m for m in ('medcorpus.stages', 'medcorpus.llm.engine') if m in sys.modules), "
            "'GATEWAY', gateway); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(wh)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED [] GATEWAY None" in proc.stdout


def test_every_subcommand_help_has_its_one_line_description():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = [name for name, p in sub.choices.items() if not (p.description or "").strip()]
    assert missing == []
    assert sub.choices["vacuum"].format_help().splitlines()[-1] != ""
    assert "never deleting a release's files" in sub.choices["vacuum"].format_help()


def test_a_bad_until_fails_before_spark_and_writes_nothing(tmp_path, capsys, no_spark):
    wh = tmp_path / "wh"
    assert main(["run", "--until", "normalise", "--warehouse", str(wh)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown stage 'normalise' for --until") and "Traceback" not in err
    assert not wh.exists()  # no warehouse folder, no report, no latest.json


def test_a_bad_until_fails_in_under_two_seconds_in_a_fresh_process_and_writes_nothing(tmp_path):
    """The whole process, as a user runs it: no stage import, no config, no JVM; the warehouse (and its
    reports/latest.json) and the working folder (no build/demo) stay as they were."""
    wh = tmp_path / "wh"
    latest = wh / "reports" / "latest.json"
    latest.parent.mkdir(parents=True)
    latest.write_text('{"run_id": "before", "report": "run_before.html"}', encoding="utf-8")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    work = tmp_path / "cwd"
    work.mkdir()
    code = ("import sys; from medcorpus.cli import main; rc = main(sys.argv[1:]); "
            "print('LOADED', sorted(m for m in ('medcorpus.stages', 'medcorpus.core.config', 'pyspark') "
            "if m in sys.modules)); sys.exit(rc)")
    best = float("inf")
    for _ in range(3):  # a loaded machine: the best of three
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", code, "run", "--until", "typo", "--warehouse", str(wh)],
                              capture_output=True, text=True, timeout=60, cwd=work)
        best = min(best, time.monotonic() - started)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: unknown stage 'typo' for --until; stages: ingest, normalize")
        assert "LOADED []" in proc.stdout
    assert best < 2.0, f"a bad --until took {best:.2f} s"
    assert list(work.iterdir()) == []  # no build/demo
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p != work} == before
    assert latest.read_text(encoding="utf-8") == '{"run_id": "before", "report": "run_before.html"}'


def test_the_stage_names_known_without_the_registry_are_the_registry_s_order():
    from medcorpus.core.stagenames import PIPELINE_STAGES
    from medcorpus.stages import pipeline_stages

    assert list(PIPELINE_STAGES) == pipeline_stages()


def test_tables_and_history_never_reach_the_spark_dispatch(tmp_path, monkeypatch, capsys):
    """They are answered from the Delta log before ``_dispatch`` (whose old Spark branches for them are gone)."""
    from medcorpus import cli

    def boom(args):
        raise AssertionError(f"{args.command} reached the Spark dispatch")

    monkeypatch.setattr(cli, "_dispatch", boom)
    wh = tmp_path / "wh"
    _delta_rs_warehouse(wh)
    assert main(["tables", "--warehouse", str(wh)]) == 0
    assert main(["history", "documents", "--warehouse", str(wh)]) == 0


def test_retention_intervals_and_the_release_life_check():
    from medcorpus.core.config import load_config
    from medcorpus.core.deltars import interval_hours, interval_text
    from medcorpus.datasets.retention import RetentionError, check_retention_config, wanted_properties

    assert interval_hours("interval 7 days", 0) == 168 and interval_hours("interval 2 weeks", 0) == 336
    assert interval_hours("168 hours", 0) == 168 and interval_hours(None, 5.0) == 5.0
    assert interval_text(400) == "interval 400 days" and interval_text(0.000025) == "interval 2 seconds"
    with pytest.raises(ValueError):
        interval_hours("interval 3 fortnights", 0)
    cfg = load_config()
    assert wanted_properties(cfg, {}) == {"delta.deletedFileRetentionDuration": "interval 400 days",
                                          "delta.logRetentionDuration": "interval 400 days"}
    assert wanted_properties(cfg, {"delta.deletedFileRetentionDuration": "interval 1000 days",
                                   "delta.logRetentionDuration": "interval 1000 days"}) == {}
    # Delta wants log retention >= file retention: a longer file retention set by hand lifts the log's
    assert wanted_properties(cfg, {"delta.deletedFileRetentionDuration": "interval 1000 days"}) == {
        "delta.logRetentionDuration": "interval 1000 days"}
    check_retention_config(cfg)
    with pytest.raises(RetentionError, match="shorter than datasets.release_life_days"):
        check_retention_config(load_config(overrides=["datasets.retention_days=30"]))


def test_release_with_a_short_retention_fails_before_spark(tmp_path, capsys, no_spark):
    assert main(["release", "v1", "--warehouse", str(tmp_path / "wh"), "--set", "datasets.retention_days=7"]) == 2
    assert "datasets.retention_days (7) is shorter than" in capsys.readouterr().err
    assert not (tmp_path / "wh").exists()


def test_verify_finds_a_changed_a_missing_and_an_unlisted_file(tmp_path, capsys):
    import hashlib

    folder = tmp_path / "dist" / "v1" / "jsonl"
    (folder / "sft").mkdir(parents=True)
    files = []
    for i in range(2):
        p = folder / "sft" / f"train-0000{i}-of-00002.jsonl"
        p.write_text(f'{{"id": {i}}}\n')
        files.append({"path": p.relative_to(folder).as_posix(), "rows": 1, "bytes": p.stat().st_size,
                      "sha256": hashlib.sha256(p.read_bytes()).hexdigest()})
    (folder / "manifest.json").write_text(json.dumps({"release": "v1", "format": "jsonl", "files": files}))
    assert main(["verify", "v1", str(tmp_path / "dist")]) == 0
    (folder / "sft" / "train-00000-of-00002.jsonl").write_text('{"id": 9}\n')
    (folder / "sft" / "train-00001-of-00002.jsonl").unlink()
    (folder / "sft" / "extra.jsonl").write_text("{}\n")
    capsys.readouterr()
    assert main(["verify", "v1", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "train-00000-of-00002.jsonl: sha256 differs" in out and "train-00001-of-00002.jsonl: missing" in out
    assert "sft/extra.jsonl: not in the manifest" in out
    assert main(["verify", "v1", str(tmp_path / "nowhere")]) == 2


def test_two_exports_in_folders_of_the_same_name_do_not_share_the_datasets_cache(tmp_path):
    """`datasets` keys its cache on the folder name and the card's configs, not on the files: the card's
    per-subset rows and bytes keep another release's "jsonl" folder from being served from the cache."""
    import datasets

    from medcorpus.datasets.export import dataset_card

    loaded = []
    for release, n in (("a", 1), ("b", 2)):
        base = tmp_path / release / "jsonl"
        (base / "sft").mkdir(parents=True)
        shard = base / "sft" / "train-00000-of-00001.jsonl"
        shard.write_text("".join(json.dumps({"id": f"{release}{i}", "messages": [{"role": "user", "content": "q"}]})
                                 + "\n" for i in range(n)))
        manifest = {"release": release, "format": "jsonl",
                    "files": [{"path": "sft/train-00000-of-00001.jsonl", "rows": n, "bytes": shard.stat().st_size}]}
        (base / "README.md").write_text(dataset_card(manifest))
        loaded.append(datasets.load_dataset(str(base), "sft", split="train", cache_dir=str(tmp_path / "cache"))["id"])
    assert loaded == [["a0"], ["b0", "b1"]]


def test_cluster_test_checks_every_stage_it_ran_and_echoes_driver_progress(tmp_path, capsys):
    from medcorpus.cluster import check_summary, expected_stages, run_streaming

    assert expected_stages("normalize") == ["ingest", "normalize"]
    assert expected_stages(None)[-1] == "release" and "dedup" in expected_stages(None)
    ok = {"in": 41, "out": 40, "q": 1}
    row = {"rows_in": ok["in"], "rows_out": ok["out"], "rows_quarantined": ok["q"], "rows_removed": 0}
    summary = {"run_log": {"ingest": row, "normalize": dict(row, rows_in=40, rows_quarantined=0)},
               "raw_documents": 40, "documents": 40, "quarantine": 1}
    assert check_summary(summary, expected_stages("normalize")) == []
    problems = check_summary(summary, expected_stages("filter"))
    assert any("lacks rows for stages ['filter']" in p for p in problems)
    assert any(p.startswith("stage filter ran but its tables") and "clean_documents" in p for p in problems)

    code = ("import sys, time; print('stdout line'); "
            "print('00:00:01 INFO medcorpus.core.pipeline: stage dedup ...', file=sys.stderr, flush=True); "
            "print('noise', file=sys.stderr)")
    done = run_streaming([sys.executable, "-c", code], cwd=tmp_path, env=dict(__import__("os").environ), timeout=60)
    assert done.returncode == 0 and done.stdout == "stdout line\n" and "noise" in done.stderr
    echoed = capsys.readouterr().out
    assert "[driver] 00:00:01 INFO medcorpus.core.pipeline: stage dedup ..." in echoed and "noise" not in echoed
