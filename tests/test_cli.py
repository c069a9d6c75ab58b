"""CLI comforts that need no Spark: one-line errors before any work starts."""

from medcorpus.cli import main


def test_missing_input_path_is_one_line(capsys, tmp_path):
    assert main(["ingest", str(tmp_path / "nope"), "--warehouse", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: input path does not exist: {tmp_path / 'nope'}"


def test_bad_config_key_is_one_line(capsys):
    assert main(["config", "--set", "normalize.nope=1"]) == 2
    assert "error: unknown config key 'normalize.nope'" in capsys.readouterr().err


def test_config_dry_run_prints_hash(capsys):
    assert main(["config", "--set", "ingest.max_record_bytes=99"]) == 0
    out = capsys.readouterr().out
    assert "max_record_bytes: 99" in out and "# config hash: " in out


def test_demo_corpus_is_deterministic(tmp_path):
    from medcorpus.demo import write_demo_corpus

    a = write_demo_corpus(tmp_path / "a")
    b = write_demo_corpus(tmp_path / "b")
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    assert (a / "books" / "shanghan_selection.txt").read_bytes().decode("gb18030").startswith("<篇名>")


def test_demo_run_without_shared_benchmarks_uses_the_demo_set(tmp_path, monkeypatch):
    import argparse

    from medcorpus.cli import _load, _with_demo_benchmarks_if_missing
    from medcorpus.dedup.decontaminate import benchmarks_root, load_benchmark_items

    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(set=[f"decontaminate.benchmarks_dir={tmp_path / 'absent'}"], config=None,
                              warehouse=None, run_id=None, sources=[])
    config = _with_demo_benchmarks_if_missing(args, _load(args))
    root = benchmarks_root(config.decontaminate)
    assert root == (tmp_path / "build" / "demo-benchmarks").resolve()
    items = load_benchmark_items(config.decontaminate)
    assert len(items) == 4 and all(len(i.text) >= 20 for i in items)
    # a folder that exists is kept as configured
    present = argparse.Namespace(set=[f"decontaminate.benchmarks_dir={root}"], config=None, warehouse=None,
                                 run_id=None, sources=[])
    assert benchmarks_root(_with_demo_benchmarks_if_missing(present, _load(present)).decontaminate) == root
