"""The OpenAI-compatible client, prompt templates and reply validation, against a real local HTTP server."""

from __future__ import annotations

import json
import pickle

import pandas as pd
import pytest

from medcorpus.core.config import load_config
from medcorpus.core.errors import ConfigError
from medcorpus.llm.client import ChatClient, ChatRequest, ClientSettings, Secret, backoff_seconds, parse_retry_after
from medcorpus.llm.prompts import (
    ReplyError,
    extract_json,
    load_template,
    prompt_dir,
    validate_annotate,
    validate_generate_qa,
    validate_judge,
    validate_translate,
)
from medcorpus.llm.worker import answer_batch, answer_item, partition_answerer
from tests.llm_server import FakeLLMServer

KEY = "sk-unit-test-5f0c1e"
PROMPTS = prompt_dir("prompts")


@pytest.fixture
def server():
    with FakeLLMServer(api_key=KEY, slow_seconds=1.0) as srv:
        yield srv


def settings(server, **kw):
    base = dict(base_url=server.base_url, model="m", concurrency=4, request_timeout_s=5.0, max_retries=3,
                backoff_base_s=0.01, backoff_max_s=0.05)
    base.update(kw)
    return ClientSettings(**base)


def messages(text):
    return [{"role": "user", "content": text}]


def test_plain_request_sends_key_model_seed_and_counts_tokens(server):
    client = ChatClient(settings(server), Secret(KEY))
    result = client.complete(ChatRequest("k1", messages("<question>头痛怎么办</question>"), seed=7))
    assert result.ok and result.attempts == 1
    assert result.content.startswith("医生建议：头痛怎么办")
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert server.auth_headers == [f"Bearer {KEY}"]


def test_wrong_key_is_a_failure_without_retries(server):
    result = ChatClient(settings(server), Secret("wrong")).complete(ChatRequest("k", messages("hi")))
    assert (result.ok, result.reason, result.attempts) == (False, "http_401", 1)
    assert server.requests_total == 1


@pytest.mark.parametrize(
    ("marker", "attempts"), [("[[429]]", 2), ("[[500x2]]", 3), ("[[slow]]", 2)]
)
def test_retries_on_429_5xx_and_timeouts_then_succeed(server, marker, attempts):
    client = ChatClient(settings(server, request_timeout_s=0.3), Secret(KEY))
    result = client.complete(ChatRequest("k", messages(f"<question>{marker} q</question>")))
    assert result.ok, result
    assert result.attempts == attempts
    assert server.requests_total == attempts


def test_an_item_that_keeps_failing_returns_a_failure_not_an_exception(server):
    client = ChatClient(settings(server, max_retries=2), Secret(KEY))
    result = client.complete(ChatRequest("k", messages("[[always500]]")))
    assert (result.ok, result.reason, result.status, result.attempts) == (False, "http_500", 500, 3)
    assert "gave up after 3 attempts" in result.error
    assert server.requests_total == 3


def test_retry_after_is_honoured_and_backoff_is_seeded_exponential_and_capped():
    s = ClientSettings(base_url="http://x/v1", model="m", backoff_base_s=1.0, backoff_max_s=8.0, retry_after_max_s=5)
    assert backoff_seconds(s, "k", 1, 3.0) == 3.0
    assert backoff_seconds(s, "k", 1, 60.0) == 5.0  # capped
    delays = [backoff_seconds(s, "k", a, None) for a in range(1, 7)]
    assert delays == [backoff_seconds(s, "k", a, None) for a in range(1, 7)]  # deterministic
    for attempt, d in enumerate(delays, start=1):
        ceiling = min(8.0, 2 ** (attempt - 1))
        assert ceiling / 2 <= d <= ceiling
    assert backoff_seconds(s, "other", 3, None) != delays[2]  # jitter differs per item
    assert parse_retry_after("2") == 2.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None


def test_client_sleeps_what_retry_after_says(server):
    slept = []
    server.retry_after = 0.25
    client = ChatClient(settings(server), Secret(KEY), sleep=slept.append)
    assert client.complete(ChatRequest("k", messages("[[429]] x"))).ok
    assert slept == [0.25]


def test_secret_never_shows_in_repr_str_or_settings():
    secret = Secret(KEY)
    assert KEY not in repr(secret) and KEY not in str(secret) and KEY not in f"{secret}"
    assert pickle.loads(pickle.dumps(secret)).reveal() == KEY
    assert KEY not in repr(ClientSettings(base_url="http://h/v1", model="m"))


def test_unset_base_url_fails_with_a_hint():
    with pytest.raises(ConfigError, match="llm.base_url is not set"):
        ClientSettings.from_config(load_config().llm)


# -- templates and validation -----------------------------------------------------------------------
def test_every_template_loads_renders_and_declares_its_version():
    for path in PROMPTS.glob("*.yaml"):
        template = load_template(path.name.removesuffix(".yaml"), PROMPTS)
        variables = {name: "{json braces} 文本" for name in template.placeholders()}
        rendered = template.render(variables)
        assert [m["role"] for m in rendered] == ["system", "user"]
        assert "{json braces} 文本" in rendered[1]["content"]


def test_unknown_template_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"'annotate.v9' not found .*available: .*annotate.v1"):
        load_template("annotate.v9", PROMPTS)


def test_json_is_found_in_fences_and_prose_and_malformed_is_rejected():
    assert extract_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('好的，结果如下：{"a": 2} 以上。') == {"a": 2}
    with pytest.raises(ReplyError):
        extract_json('{"a": nope')


@pytest.mark.parametrize(
    ("reply", "ok"),
    [
        ('{"domain": "TCM", "quality": 4}', True),
        ('{"domain": "astrology", "quality": 4}', False),
        ('{"domain": "tcm", "quality": 7}', False),
        ('{"domain": "tcm", "quality": 2.5}', False),
        ('{"domain": "tcm"}', False),
        ("", False),
    ],
)
def test_annotate_replies_are_validated(reply, ok):
    options = {"domain_labels": ["general", "tcm"]}
    if ok:
        assert json.loads(validate_annotate(reply, options)) == {"domain": "tcm", "quality": 4}
    else:
        with pytest.raises(ReplyError):
            validate_annotate(reply, options)


def test_qa_judge_translate_validators():
    qa = validate_generate_qa('{"qa": [{"question": "Q", "answer": "A"}, {"question": "", "answer": "x"}]}', {})
    assert json.loads(qa) == {"qa": [{"question": "Q", "answer": "A"}]}
    with pytest.raises(ReplyError):
        validate_generate_qa('{"qa": []}', {})
    scores = {k: 3 for k in ("fluency", "relevance", "completeness", "proficiency")}
    assert json.loads(validate_judge(json.dumps({"a": scores, "b": scores}), {}))["b"]["fluency"] == 3.0
    with pytest.raises(ReplyError):
        validate_judge(json.dumps({"a": scores}), {})
    assert json.loads(validate_translate("译文：  今天下雨。\n", {})) == {"translation": "今天下雨。"}
    with pytest.raises(ReplyError):
        validate_translate("   ", {})


# -- the executor side: malformed replies, concurrency --------------------------------------------
def annotate_template():
    return load_template("annotate.v1", PROMPTS)


OPTIONS = {"domain_labels": ["general", "clinical", "tcm", "pharmacy", "consumer_health"]}


def test_malformed_json_is_retried_once_then_recorded_with_the_raw_text(server):
    client = ChatClient(settings(server), Secret(KEY))
    fixed = answer_item(client, annotate_template(), "k1", {"text": "[[badjson]] 患者发热"}, 1, OPTIONS)
    assert fixed.ok and fixed.requests == 2
    assert json.loads(fixed.parsed) == {"domain": "clinical", "quality": 0}
    broken = answer_item(client, annotate_template(), "k2", {"text": "[[alwaysbad]] 患者"}, 1, OPTIONS)
    assert (broken.ok, broken.reason, broken.requests) == (False, "malformed_reply", 2)
    assert broken.raw_response == '{"this is": not json'


def test_a_partition_runs_at_most_concurrency_requests_at_once(server):
    server.delay_s = 0.1
    fn = partition_answerer(settings(server, concurrency=3), Secret(KEY), annotate_template(), OPTIONS, 100)
    batch = pd.DataFrame({
        "cache_key": [f"k{i}" for i in range(12)],
        "vars_json": [json.dumps({"text": f"文本{i} 营养"}, ensure_ascii=False) for i in range(12)],
        "seed": [1] * 12,
    })
    out = pd.concat(list(fn(iter([batch]))))
    assert list(out["cache_key"]) == list(batch["cache_key"])
    assert out["ok"].all() and server.requests_total == 12
    assert server.max_in_flight == 3


def test_answer_batch_cuts_the_raw_text_and_keeps_failures_as_rows(server):
    client = ChatClient(settings(server, max_retries=0), Secret(KEY))
    batch = pd.DataFrame({"cache_key": ["a", "b"], "vars_json": ['{"text": "[[always500]]"}', '{"text": "[[alwaysbad]]"}'],
                          "seed": [None, None]})
    out = answer_batch(client, annotate_template(), batch, OPTIONS, raw_chars=5)
    assert list(out["reason"]) == ["http_500", "malformed_reply"]
    assert list(out["raw_response"]) == [None, '{"thi']


def test_chrf_matches_sacrebleu_reference_values():
    from medcorpus.llm.eval_translate import corpus_chrf

    # expected values computed with sacrebleu 2.4.3, CHRF() defaults
    assert corpus_chrf([("今天天气好", "今天天气很好")]) == pytest.approx(47.448166, abs=1e-5)
    assert corpus_chrf([("子曰学而时习之", "孔子说：学习了并且时常复习")]) == pytest.approx(5.649718, abs=1e-5)
    assert corpus_chrf([("a", "abcdefg"), ("今天天气很好呀", "今天天气很好")]) == pytest.approx(47.218867, abs=1e-5)
    assert corpus_chrf([("abc", "xyz")]) == 0.0
    assert corpus_chrf([("同 一 句", "同一句")]) == pytest.approx(100.0)
