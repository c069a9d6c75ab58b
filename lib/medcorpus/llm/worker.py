"""What runs on an executor: render the prompt, call the endpoint, validate the reply (retry once), emit a row.

Pure Python over pandas batches, so it is tested without Spark. :func:`partition_answerer` builds the
function given to ``mapInPandas``: one :class:`ChatClient` per partition, and every batch goes through the
client's bounded thread pool.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from medcorpus.llm.client import ChatClient, ChatRequest, ClientSettings, Secret
from medcorpus.llm.prompts import REPAIR_MESSAGE, PromptTemplate, ReplyError, validate
from medcorpus.text.pii import Policy, redact, redact_json_string

# Columns of the DataFrame the partition function returns (also the Spark schema below).
RESULT_COLUMNS = (
    "cache_key",
    "ok",
    "reason",
    "error",
    "http_status",
    "raw_response",
    "parsed",
    "requests",
    "prompt_tokens",
    "completion_tokens",
)
RESULT_SCHEMA = (
    "cache_key string, ok boolean, reason string, error string, http_status int, raw_response string, "
    "parsed string, requests int, prompt_tokens long, completion_tokens long"
)


@dataclass
class ItemAnswer:
    cache_key: str
    ok: bool
    reason: str | None
    error: str | None
    http_status: int | None
    raw_response: str | None
    parsed: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int


def answer_item(
    client: ChatClient,
    template: PromptTemplate,
    cache_key: str,
    variables: Mapping[str, Any],
    seed: int | None,
    options: Mapping[str, Any],
    policy: Policy | None = None,
) -> ItemAnswer:
    """One item: request, validate; a malformed reply is asked for once more, then it is a failure.

    Every message is PII-redacted (:mod:`medcorpus.text.pii`) right before it is sent: nothing unredacted
    leaves the machine, whatever table the prompt was built from. The model's reply (raw and parsed, which
    go to llm_cache, llm_failures and the stage tables) is redacted too, after it was validated.
    """
    policy = policy or Policy()
    messages = safe_messages(template.render(variables), policy)
    requests = p_tok = c_tok = 0
    raw: str | None = None
    for repair in (False, True):
        result = client.complete(ChatRequest(cache_key, messages, seed))
        requests += result.attempts
        p_tok += result.prompt_tokens
        c_tok += result.completion_tokens
        if not result.ok:
            return ItemAnswer(cache_key, False, result.reason, redact(result.error, policy), result.status,
                              redact(raw, policy), None, requests, p_tok, c_tok)
        raw = result.content
        try:
            parsed = validate(template, raw or "", options)
        except ReplyError as err:
            if repair:
                return ItemAnswer(cache_key, False, "malformed_reply", redact(str(err), policy), None,
                                  redact(raw, policy), None, requests, p_tok, c_tok)
            messages = safe_messages([*messages, {"role": "assistant", "content": raw or ""},
                                      {"role": "user", "content": REPAIR_MESSAGE.format(error=err)}], policy)
            continue
        return ItemAnswer(cache_key, True, None, None, None, redact(raw, policy), redact_json_string(parsed, policy),
                          requests, p_tok, c_tok)
    raise AssertionError("unreachable")


def safe_messages(messages: list[dict[str, str]], policy: Policy) -> list[dict[str, str]]:
    """Chat messages with every content PII-redacted."""
    return [{**m, "content": redact(m.get("content"), policy) or ""} for m in messages]


def answer_batch(
    client: ChatClient,
    template: PromptTemplate,
    batch: pd.DataFrame,
    options: Mapping[str, Any],
    raw_chars: int,
    policy: Policy | None = None,
) -> pd.DataFrame:
    """Answer every row of a (cache_key, vars_json, seed) batch through the client's thread pool."""

    def one(row: tuple[str, str, Any]) -> ItemAnswer:
        key, vars_json, seed = row
        seed_value = None if seed is None or pd.isna(seed) else int(seed)
        return answer_item(client, template, key, json.loads(vars_json), seed_value, options, policy)

    rows = list(zip(batch["cache_key"], batch["vars_json"], batch["seed"], strict=True))
    workers = max(1, min(client.settings.concurrency, len(rows)))
    if workers == 1:
        answers = [one(r) for r in rows]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
            answers = list(pool.map(one, rows))
    frame = pd.DataFrame([a.__dict__ for a in answers], columns=list(RESULT_COLUMNS))
    frame["raw_response"] = frame["raw_response"].map(lambda s: s if s is None else s[:raw_chars])
    frame["http_status"] = frame["http_status"].astype("Int32")
    return frame


def partition_answerer(
    settings: ClientSettings,
    secret: Secret,
    template: PromptTemplate,
    options: Mapping[str, Any],
    raw_chars: int,
    policy: Policy | None = None,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The ``mapInPandas`` function; everything it closes over is plain picklable data."""

    def answer_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        client = ChatClient(settings, secret)  # once per partition, created on the executor
        try:
            for batch in batches:
                if len(batch):
                    yield answer_batch(client, template, batch, options, raw_chars, policy)
        finally:
            client.close()

    return answer_partition
