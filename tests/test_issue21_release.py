"""Issue 21: releases survive `medcorpus vacuum`; exports that trainers and `datasets` read as they are.

Tiny hand-made sft / preference / pretrain tables (real Delta tables, written through the Warehouse), so
the stages themselves are not rerun here (tests/test_datasets_stage.py does that).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from medcorpus.cli import main
from medcorpus.core.warehouse import table_spec


def _msg(role, content):
    return {"role": role, "content": content}


def _tables(spark, g: int):
    """Generation ``g`` of the three dataset tables (the text changes with g, the keys do not)."""
    sft = [
        dict(sample_id="s1", source="exam", source_file="exam.jsonl", type="multiple_choice", language="zh",
             department=None, messages=[_msg("user", f"治疗首选？g{g}\nA. 阿司匹林\nB. 阿莫西林"),
                                        _msg("assistant", f"答案：B. 阿莫西林\n解析：细菌感染首选抗生素。g{g}")],
             question=f"治疗首选？g{g}", options=[{"label": "A", "text": "阿司匹林"}, {"label": "B", "text": "阿莫西林"}],
             answer="B", explanation="细菌感染首选抗生素。", disease_group=None, discipline=None, competency=None,
             difficulty=None, responses=None, scores={"complexity": 2.0, "quality": 3.0, "deita": 6.0, "confilter": None},
             token_estimate=20, text_hash="h1", run_id=f"g{g}"),
        dict(sample_id="s2", source="dialogues", source_file="d.jsonl", type="multi_turn", language="en",
             department=None, messages=[_msg("system", "You are a careful doctor."), _msg("user", f"I have a cough g{g}"),
                                        _msg("assistant", "How long?"), _msg("user", "Two weeks."),
                                        _msg("assistant", "See a doctor for a chest exam.")],
             question=None, options=None, answer=None, explanation=None, disease_group=None, discipline=None,
             competency=None, difficulty=None, responses=None,
             scores={"complexity": 3.0, "quality": 4.0, "deita": 12.0, "confilter": 0.8}, token_estimate=30,
             text_hash="h2", run_id=f"g{g}"),
    ]
    pref = [
        dict(pair_id="p1", sample_id="s1", prompt=f"治疗首选？g{g}\nA. 阿司匹林\nB. 阿莫西林",
             chosen=f"答案：B. 阿莫西林\n解析：细菌感染首选抗生素。g{g}", rejected="答案：A. 阿司匹林", kind="objective",
             source="exam", language="zh", token_estimate=30, run_id=f"g{g}"),
        dict(pair_id="p2", sample_id="s2", prompt="system: ...", chosen="See a doctor for a chest exam.",
             rejected=f"Coughs go away; drink warm water, rest well, and wait a month or two. g{g}",
             kind="subjective", source="dialogues", language="en", token_estimate=40, run_id=f"g{g}"),
        dict(pair_id="p3", sample_id="judged-1", prompt=f"Is fever dangerous? g{g}", chosen="Above 39 C, see a doctor.",
             rejected="No.", kind="subjective", source="judged:llm", language="en", token_estimate=12, run_id=f"g{g}"),
    ]
    pretrain = [dict(mixture=m, item_id=f"{m}-{i}", component="medical", lang="zh", source="demo",
                     text=f"高血压 {m} {i} g{g}", token_estimate=5, quality_score=0.9, sample_key=0.1 * i, run_id=f"g{g}")
                for m, n in (("stable", 3), ("boost", 2)) for i in range(n)]
    return {name: spark.createDataFrame(rows, table_spec(name).schema)
            for name, rows in (("sft", sft), ("preference", pref), ("pretrain", pretrain))}


def _write(ctx, spark, g: int) -> None:
    for name, df in _tables(spark, g).items():
        ctx.warehouse.overwrite_rows(name, df, stage=f"test-g{g}")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_validation(monkeypatch):
    """The release gate validates with GX suites made for real stage output; these tables are hand-made."""
    from medcorpus.datasets import release

    monkeypatch.setattr(release, "_validation_hook", lambda ctx, versions: "not gated (test tables)")


# ---------------------------------------------------------------------------------------------------
# 1. releases survive VACUUM
# ---------------------------------------------------------------------------------------------------
def test_vacuum_with_the_configured_retention_then_the_release_exports_byte_identically(
        spark, make_config, tmp_path, no_validation, capsys):
    from deltalake import DeltaTable

    from medcorpus.core.pipeline import RunContext
    from medcorpus.datasets.release import export_release, record_release, release_row, table_properties

    # retention of 2 seconds, so the test can wait it out; a release promised for 1 second
    sets = ["datasets.retention_days=0.000025", "datasets.release_life_days=0.00001", "datasets.export_rows_per_shard=2"]
    ctx = RunContext.create(spark, make_config("run_id=g1", *sets))
    _write(ctx, spark, 1)
    record_release(ctx, "keep-me")
    assert table_properties(ctx, "sft")["delta.deletedFileRetentionDuration"] == "interval 2 seconds"
    assert table_properties(ctx, "pretrain")["delta.logRetentionDuration"] == "interval 2 seconds"
    pinned = release_row(ctx, "keep-me")["table_versions"]
    first = export_release(ctx, "keep-me", "jsonl", tmp_path / "a")

    _write(ctx, spark, 2)  # an unreleased version ...
    unreleased = ctx.warehouse.version("sft")
    _write(ctx, spark, 3)  # ... and the current one
    time.sleep(3)

    uri = ctx.warehouse.path("sft")
    release_files = {u.rsplit("/", 1)[-1] for u in DeltaTable(uri, version=pinned["sft"]).file_uris()}
    plain = DeltaTable(uri).vacuum(dry_run=True, full=True)  # what a plain VACUUM would delete
    assert release_files & set(plain), "a plain VACUUM with this retention would break the release"

    wh = ["--warehouse", ctx.config.warehouse, *sum((["--set", s] for s in sets), [])]
    assert main(["vacuum", *wh]) == 0
    out = capsys.readouterr().out
    import re

    removed = re.search(rf"sft: removed (\d+) files \(retention [\d.e-]+ days; kept the files of released versions "
                        rf"{pinned['sft']}\)", out)
    assert removed and int(removed.group(1)) > 0, out
    assert "warning: release keep-me: sft version" in out  # older than the (2 s) log retention
    assert release_files <= {p.name for p in Path(uri).glob("*.parquet")}

    # older than the 2 s file retention, so Delta itself refuses the time travel; the export checks that the
    # release's files are all there and reads them anyway
    second = export_release(ctx, "keep-me", "jsonl", tmp_path / "b")
    assert _files(first) and _files(first) == _files(second)
    # the vacuum did run: the unreleased version lost its files
    with pytest.raises(Exception, match="(?i)file|exist|retention"):
        spark.read.format("delta").option("versionAsOf", unreleased).load(uri).collect()

    # a plain VACUUM breaks the release; the export then says so in one line
    from medcorpus.datasets.release import ReleaseError

    DeltaTable(uri).vacuum(dry_run=False, full=True)
    with pytest.raises(ReleaseError, match=r"sft version \d+ of the release lost \d+ data file"):
        export_release(ctx, "keep-me", "jsonl", tmp_path / "c")


def test_release_refuses_a_retention_shorter_than_its_life_and_never_shortens_one(
        spark, make_config, no_validation):
    from medcorpus.core.pipeline import RunContext
    from medcorpus.datasets.release import record_release, table_properties
    from medcorpus.datasets.retention import RetentionError

    ctx = RunContext.create(spark, make_config("run_id=g1", "datasets.retention_days=30"))
    _write(ctx, spark, 1)
    with pytest.raises(RetentionError, match=r"retention_days \(30\) is shorter than datasets.release_life_days"):
        record_release(ctx, "r1")
    assert not ctx.warehouse.exists("releases")
    assert main(["release", "r1", "--warehouse", ctx.config.warehouse, "--set", "datasets.retention_days=30"]) == 2

    spark.sql(f"ALTER TABLE delta.`{ctx.warehouse.path('sft')}` SET TBLPROPERTIES ("
              "'delta.deletedFileRetentionDuration' = 'interval 1000 days', "
              "'delta.logRetentionDuration' = 'interval 1000 days')")
    ok = RunContext.create(spark, make_config("run_id=g2"))
    note = record_release(ok, "r1")
    assert "retention set on preference, pretrain;" in note
    props = table_properties(ok, "sft")  # longer than the configured 400 days: kept
    assert props["delta.deletedFileRetentionDuration"] == props["delta.logRetentionDuration"] == "interval 1000 days"
    assert table_properties(ok, "preference")["delta.deletedFileRetentionDuration"] == "interval 400 days"


# ---------------------------------------------------------------------------------------------------
# 2-4. tables/history without Spark; exports side by side, dataset card, verify, tokenizer, preference forms
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def no_spark(monkeypatch):
    from medcorpus.core import session

    def boom(config):
        raise AssertionError("Spark was started")

    monkeypatch.setattr(session, "build_spark", boom)


def _word_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return path


def _words(text: str) -> int:
    import re

    return len(re.findall(r"\w+|[^\w\s]+", text))


def test_exports_side_by_side_load_in_datasets_verify_and_count_tokens(spark, make_config, tmp_path, no_validation,
                                                                        capsys, monkeypatch):
    import datasets

    from medcorpus.core.pipeline import RunContext
    from medcorpus.datasets.release import export_release, record_release

    ctx = RunContext.create(spark, make_config("run_id=g1", "datasets.export_rows_per_shard=2"))
    _write(ctx, spark, 1)
    record_release(ctx, "v1")
    out = tmp_path / "out"
    jsonl = export_release(ctx, "v1", "jsonl", out, tokenizer=_word_tokenizer(tmp_path / "tok.json"),
                           length_balanced=True)
    parquet = export_release(ctx, "v1", "parquet", out)
    assert (jsonl, parquet) == (out / "v1" / "jsonl", out / "v1" / "parquet")
    assert json.loads((jsonl / "manifest.json").read_text())["format"] == "jsonl"
    assert json.loads((parquet / "manifest.json").read_text())["format"] == "parquet"

    for folder in (jsonl, parquet):
        sft = datasets.load_dataset(str(folder), "sft", split="train")
        assert sft.num_rows == 2 and [m["role"] for m in sft[1]["messages"]][:2] == ["system", "user"]
        assert datasets.load_dataset(str(folder), "pretrain_stable", split="train").num_rows == 3
        assert datasets.load_dataset(str(folder), "pretrain_boost", split="train").num_rows == 2
        conv = {r["id"]: r for r in datasets.load_dataset(str(folder), "preference_conversational", split="train")}
        # TRL's conversational preference form: prompt = messages up to the answer, chosen/rejected = one
        # assistant message each; a judged pair without an sft row keeps its prompt as one user message
        assert [m["role"] for m in conv["p2"]["prompt"]] == ["system", "user", "assistant", "user"]
        assert conv["p2"]["prompt"][-1]["content"] == "Two weeks."
        assert conv["p1"]["prompt"] == [{"role": "user", "content": "治疗首选？g1\nA. 阿司匹林\nB. 阿莫西林"}]
        assert conv["p1"]["chosen"] == [{"role": "assistant", "content": "答案：B. 阿莫西林\n解析：细菌感染首选抗生素。g1"}]
        assert conv["p3"]["prompt"] == [{"role": "user", "content": "Is fever dangerous? g1"}]
        assert all(r["rejected"][0]["role"] == "assistant" and len(r["rejected"]) == 1 for r in conv.values())
        share = {r["id"]: r for r in datasets.load_dataset(str(folder), "preference_sharegpt", split="train")}
        # LLaMA-Factory's sharegpt ranking: human/gpt alternate, odd length, system apart
        assert [t["from"] for t in share["p2"]["conversations"]] == ["human", "gpt", "human"]
        assert share["p2"]["system"] == "You are a careful doctor." and share["p2"]["chosen"]["from"] == "gpt"
        assert share["p1"]["system"] == "" and len(share["p1"]["conversations"]) == 1
    info = json.loads((jsonl / "dataset_info.json").read_text())
    assert info["medcorpus_dpo_sharegpt"]["ranking"] is True

    manifest = json.loads((jsonl / "manifest.json").read_text())
    lengths = manifest["preference_lengths"]
    assert (lengths["pairs"], lengths["chosen_longer"], lengths["chosen_shorter"]) == (3, 2, 1)
    balanced = datasets.load_dataset(str(jsonl), "preference_balanced", split="train")
    assert balanced.num_rows == 2 and "p2" in balanced["id"]  # the one chosen-shorter pair + one longer
    expected_sft = sum(_words("\n".join(m["content"] for m in r["messages"]))
                       for r in datasets.load_dataset(str(jsonl), "sft", split="train"))
    assert manifest["tokenizer"]["counts"]["sft"] == expected_sft > 0
    assert manifest["tokenizer"]["counts"]["pretrain_stable"] == 3 * 4  # "高血压 stable i g1"
    card = (jsonl / "README.md").read_text()
    assert "release `v1`" in card and "In 2 of 3 pairs the chosen answer is longer" in card
    assert f"| sft | 2 | {expected_sft:,} |" in card  # the tokenizer's count, not the estimate

    # the card and manifest come from the release, not the exporting config: another config, same bytes
    other = RunContext.create(spark, make_config("run_id=g9", "datasets.export_rows_per_shard=2",
                                                 "datasets.deita_threshold=12"))
    assert _files(export_release(other, "v1", "parquet", tmp_path / "again")) == _files(parquet)
    assert "- sft: `dialogues` 1, `exam` 1" in card

    # verify: both format folders are intact; then one changed byte is found
    assert main(["verify", "v1", str(out)]) == 0
    shard = parquet / "preference" / "train-00000-of-00002.parquet"
    data = bytearray(shard.read_bytes())
    data[-20] ^= 1
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", "v1", str(out)]) == 1
    assert "preference/train-00000-of-00002.parquet: sha256 differs" in capsys.readouterr().out
    assert main(["verify", "v2", str(jsonl)]) == 1

    # tables and history read the Delta logs without a JVM
    from medcorpus.core import session

    monkeypatch.setattr(session, "build_spark", lambda config: (_ for _ in ()).throw(AssertionError("Spark started")))
    capsys.readouterr()
    started = time.monotonic()
    assert main(["tables", "--warehouse", ctx.config.warehouse]) == 0
    assert main(["history", "sft", "--warehouse", ctx.config.warehouse, "--limit", "3"]) == 0
    assert time.monotonic() - started < 5
    text = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert lines["sft"][1:3] == [str(ctx.warehouse.version("sft")), "2"]
    assert lines["preference"][2] == "3" and lines["pretrain"][2] == "5"
    assert lines["raw_documents"][1:3] == ["-", "-"]
    assert '"stage": "release"' in text and '"stage": "test-g1"' in text  # history: the retention commit, the write


# ---------------------------------------------------------------------------------------------------
# 5. Data Docs: validations named by run id, SQL expectations described, an offline index; stats.json
# ---------------------------------------------------------------------------------------------------
def test_data_docs_name_the_run_describe_sql_checks_and_have_an_offline_index(spark, make_config):
    from medcorpus.core.pipeline import RunContext
    from medcorpus.quality.validation import OFFLINE_INDEX, data_docs_dir, validate_table
    from medcorpus.views.report import build_report

    ctx = RunContext.create(spark, make_config("run_id=docs-run-7"))
    _write(ctx, spark, 1)
    validate_table(ctx, "preference", stage="test")
    docs = data_docs_dir(ctx)
    pages = list((docs / "validations" / "preference").glob("*/*/*.html"))
    assert [p.relative_to(docs / "validations" / "preference").parts[0] for p in pages] == ["docs-run-7"]
    page = pages[0].read_text(encoding="utf-8")
    assert "chosen != rejected." in page  # the SQL expectation's description, not only its query
    index = (docs / OFFLINE_INDEX).read_text(encoding="utf-8")
    assert "docs-run-7" in index and "<script" not in index
    assert pages[0].relative_to(docs).as_posix() in index

    from medcorpus.core.runlog import StageReport, write_report

    report = StageReport("sft")
    report.rows_in, report.rows_out, report.rows_removed = 5, 2, 3
    report.removed_by_reason = {"confilter_high": 1, "deita_low": 2}
    write_report(spark, ctx.warehouse, report.finish())
    html = build_report(ctx, "docs-run-7")
    assert 'href="data_docs/offline_index.html"' in html.read_text(encoding="utf-8")
    stats = json.loads((html.parent / "run-docs-run-7.stats.json").read_text())
    assert stats["run_id"] == "docs-run-7"
    assert stats["stages"][0] | {"seconds": None} == {
        "stage": "sft", "rows_in": 5, "rows_out": 2, "rows_quarantined": 0, "rows_removed": 3, "seconds": None,
        "table_version": None, "removed_by_reason": {"confilter_high": 1, "deita_low": 2}}
    assert [v["table"] for v in stats["validations"]] == ["preference"]


def test_progress_inside_a_stage_comes_from_the_status_tracker(spark, caplog):
    import logging

    from medcorpus.core.progress import SparkProgress, progress_line

    assert progress_line(spark, "idle") is None
    slow = lambda x: time.sleep(1.5) or x  # noqa: E731 - a job long enough to be seen running
    with caplog.at_level(logging.INFO, logger="medcorpus.progress"), SparkProgress(spark, "demo", every=0.3) as p:
        assert spark.sparkContext.parallelize(range(6), 6).map(slow).count() == 6
    assert p.lines and all(line.startswith("demo: Spark job ") for line in p.lines)
    assert any("/6 tasks done" in line for line in p.lines)
    assert any("demo: Spark job" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------------
# 2. the conversational preference export through TRL's DPOTrainer preprocessing (trl 1.16, no torch)
# ---------------------------------------------------------------------------------------------------
_ROLES = ("system", "user", "assistant")
#: a minimal chat template: role markers, an end marker, and the generation prompt
_CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                  "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _char_chat_tokenizer(texts: list[str]):
    """A character-level WordLevel tokenizer over ``texts`` (built here, no hub download), with the role
    markers as special tokens and the chat template above, as a ``transformers`` fast tokenizer."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[PAD]", "<|end|>", *(f"<|{r}|>" for r in _ROLES)]
    chars = sorted({c for text in texts for c in text})
    vocab = {tok: i for i, tok in enumerate([*specials, *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one char each
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="<|end|>")
    fast.chat_template = _CHAT_TEMPLATE
    return fast


def test_the_conversational_preference_export_goes_through_trl_dpo_preprocessing(spark, make_config, tmp_path,
                                                                                  no_validation):
    """What ``DPOTrainer._prepare_dataset`` (trl 1.16) does to a dataset, with TRL's own helpers: the export
    loads with ``load_dataset(<folder>, "preference_conversational")``, is conversational, and every pair
    tokenizes with a chat template into a prompt that is a prefix of prompt+chosen and prompt+rejected."""
    pytest.importorskip("transformers", reason="transformers is in the test extra (make setup installs it)")
    data_utils = pytest.importorskip("trl.data_utils", reason="trl==1.16.0 is installed --no-deps by make setup")
    import datasets

    from medcorpus.core.pipeline import RunContext
    from medcorpus.datasets.release import export_release, record_release

    ctx = RunContext.create(spark, make_config("run_id=g1"))
    _write(ctx, spark, 1)
    record_release(ctx, "v1")
    folder = export_release(ctx, "v1", "jsonl", tmp_path / "out")
    dataset = datasets.load_dataset(str(folder), "preference_conversational", split="train")
    assert dataset.num_rows == 3 and "prompt" in dataset.column_names  # no extract_prompt step needed
    examples = list(dataset)
    assert all(data_utils.is_conversational(ex) for ex in examples)  # so no EOS is appended to plain strings

    texts = [m["content"] for ex in examples for key in ("prompt", "chosen", "rejected") for m in ex[key]]
    tokenizer = _char_chat_tokenizer(texts)

    def tokenize_fn(example, processing_class):  # DPOTrainer._prepare_dataset's, for the conversational case
        prompt_ids = data_utils._tokenize(processing_class, example["prompt"], add_generation_prompt=True)["input_ids"]
        prompt_chosen_ids = data_utils._tokenize(processing_class, example["prompt"] + example["chosen"])["input_ids"]
        prompt_rejected_ids = data_utils._tokenize(processing_class,
                                                   example["prompt"] + example["rejected"])["input_ids"]
        prefix = min(data_utils.common_prefix_length(prompt_ids, prompt_chosen_ids),
                     data_utils.common_prefix_length(prompt_ids, prompt_rejected_ids))
        return {"prompt_ids": prompt_ids[:prefix], "chosen_ids": prompt_chosen_ids[prefix:],
                "rejected_ids": prompt_rejected_ids[prefix:], "full_prompt_len": len(prompt_ids)}

    tokenized = dataset.map(tokenize_fn, fn_kwargs={"processing_class": tokenizer})
    assistant, end = tokenizer.convert_tokens_to_ids(["<|assistant|>", "<|end|>"])
    for row in tokenized:
        assert len(row["prompt_ids"]) == row["full_prompt_len"] > 0  # the whole prompt is a prefix of both
        assert row["prompt_ids"][-1] == assistant  # it ends on the generation prompt
        assert row["chosen_ids"] and row["rejected_ids"] and row["chosen_ids"] != row["rejected_ids"]
        assert row["chosen_ids"][-1] == end and row["rejected_ids"][-1] == end
        assert tokenizer.unk_token_id not in row["prompt_ids"] + row["chosen_ids"] + row["rejected_ids"]

    by_id = {ex["id"]: ex for ex in examples}
    p2 = by_id["p2"]  # the multi-turn pair: the history stays messages, rendered by the template
    text = data_utils.maybe_apply_chat_template(p2, tokenizer)
    assert text["prompt"].startswith("<|system|>You are a careful doctor.<|end|><|user|>I have a cough g1<|end|>")
    assert text["prompt"].endswith("<|user|>Two weeks.<|end|><|assistant|>")
    assert "See a doctor for a chest exam." not in text["prompt"] and "Coughs go away" not in text["prompt"]
    assert text["chosen"] == "See a doctor for a chest exam.<|end|>"
    assert text["rejected"].startswith("Coughs go away;")
    p1 = data_utils.maybe_apply_chat_template(by_id["p1"], tokenizer)
    assert p1["prompt"] == "<|user|>治疗首选？g1\nA. 阿司匹林\nB. 阿莫西林<|end|><|assistant|>"  # no "…阿莫西林答案：B"
    assert p1["chosen"].startswith("答案：B. 阿莫西林")
