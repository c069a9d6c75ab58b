"""A small OpenAI-compatible chat-completions client, safe to use from Spark executors.

Standard library only (``http.client``), so nothing extra has to be installed on the workers. One
:class:`ChatClient` per partition; the worker runs a bounded thread pool over the partition's requests (see
:mod:`medcorpus.llm.worker`). Each request is retried on 429, 5xx, timeouts and connection errors with
exponential backoff and jitter (seeded per item and attempt, so a rerun sleeps the same), and a
``Retry-After`` header is honoured. An item that keeps failing returns a :class:`ChatResult` with
``ok=False`` — it never raises.

The API key lives only in :class:`Secret`, whose ``repr``/``str`` hide it, and in the Authorization header.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class Secret:
    """Holds the API key; printing, logging or pickling into a repr never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None):
        self._value = value or None

    def reveal(self) -> str | None:
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        return "Secret(***)" if self._value else "Secret(None)"

    __str__ = __repr__

    def __getstate__(self) -> dict[str, str | None]:
        return {"v": self._value}

    def __setstate__(self, state: dict[str, str | None]) -> None:
        self._value = state["v"]


@dataclass(frozen=True)
class ClientSettings:
    """Everything a worker needs to call the endpoint (plain data: pickled into the Spark closure)."""

    base_url: str
    model: str
    concurrency: int = 4
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 120.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0
    retry_seed: int = 0
    temperature: float = 0.2
    max_tokens: int = 1024

    @classmethod
    def from_config(cls, llm: Any) -> ClientSettings:
        if not llm.base_url:
            from medcorpus.core.errors import ConfigError

            raise ConfigError(
                "llm.base_url is not set: point it at an OpenAI-compatible endpoint, "
                "e.g. --set llm.base_url=http://127.0.0.1:8000/v1"
            )
        return cls(
            base_url=llm.base_url,
            model=llm.model,
            concurrency=llm.concurrency,
            connect_timeout_s=llm.connect_timeout_s,
            request_timeout_s=llm.request_timeout_s,
            max_retries=llm.max_retries,
            backoff_base_s=llm.backoff_base_s,
            backoff_max_s=llm.backoff_max_s,
            retry_after_max_s=llm.retry_after_max_s,
            retry_seed=llm.retry_seed,
            temperature=llm.temperature,
            max_tokens=llm.max_tokens,
        )


@dataclass(frozen=True)
class ChatRequest:
    key: str
    messages: Sequence[dict[str, str]]
    seed: int | None = None


@dataclass
class ChatResult:
    key: str
    ok: bool
    content: str | None = None
    status: int | None = None
    reason: str | None = None  # http_<status> | timeout | connection | bad_response | exhausted
    error: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    slept_s: float = field(default=0.0, repr=False)


class _Retryable(Exception):
    def __init__(self, reason: str, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class _Fatal(Exception):
    def __init__(self, reason: str, message: str, status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status


def backoff_seconds(settings: ClientSettings, key: str, attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with 'equal jitter', seeded by (retry_seed, key, attempt); Retry-After wins."""
    if retry_after is not None:
        return max(0.0, min(retry_after, settings.retry_after_max_s))
    ceiling = min(settings.backoff_max_s, settings.backoff_base_s * (2 ** (attempt - 1)))
    digest = hashlib.sha256(f"{settings.retry_seed}|{key}|{attempt}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    return ceiling / 2 + rng.random() * ceiling / 2


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; an HTTP date is read as 'retry soon')."""
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class ChatClient:
    """Chat completions against ``{base_url}/chat/completions`` with retries; one keep-alive connection per thread."""

    def __init__(
        self,
        settings: ClientSettings,
        api_key: Secret | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self._api_key = api_key or Secret(None)
        self._sleep = sleep
        parts = urlsplit(settings.base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            from medcorpus.core.errors import ConfigError

            raise ConfigError(f"llm.base_url must be an http(s) URL, got {settings.base_url!r}")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "") + "/chat/completions"
        self._local = threading.local()

    # -- connection -------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.settings.connect_timeout_s)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def close(self) -> None:
        self._drop_connection()

    # -- one attempt ------------------------------------------------------------------------------
    def _payload(self, request: ChatRequest) -> bytes:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": list(request.messages),
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key.reveal()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _attempt(self, request: ChatRequest) -> tuple[str, int, int]:
        conn = self._connection()
        try:
            if conn.sock is None:
                conn.connect()
            conn.sock.settimeout(self.settings.request_timeout_s)  # type: ignore[union-attr]
            conn.request("POST", self._path, body=self._payload(request), headers=self._headers())
            response = conn.getresponse()
            status = response.status
            raw = response.read()
            retry_after = parse_retry_after(response.getheader("Retry-After"))
            if response.getheader("Connection", "").lower() == "close":
                self._drop_connection()
        except TimeoutError as err:
            self._drop_connection()
            raise _Retryable("timeout", f"no reply within {self.settings.request_timeout_s}s") from err
        except (ConnectionError, http.client.HTTPException, OSError) as err:
            self._drop_connection()
            raise _Retryable("connection", type(err).__name__) from err
        if status in RETRYABLE_STATUS:
            raise _Retryable(f"http_{status}", self._redact(_short(raw)), status, retry_after)
        if status >= 400:
            raise _Fatal(f"http_{status}", self._redact(_short(raw)), status)
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise _Retryable("bad_response", f"not a chat completion: {self._redact(_short(raw))}", status) from err
        if not isinstance(content, str):
            raise _Retryable("bad_response", "message content is not a string", status)
        return content, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)

    def _redact(self, text: str) -> str:
        """An endpoint may echo the request (headers included) in an error body; never keep the key."""
        key = self._api_key.reveal()
        return text.replace(key, "***") if key else text

    # -- public -----------------------------------------------------------------------------------
    def complete(self, request: ChatRequest) -> ChatResult:
        """One request with retries; never raises for endpoint problems."""
        result = ChatResult(key=request.key, ok=False)
        for attempt in range(1, self.settings.max_retries + 2):
            result.attempts = attempt
            try:
                content, p_tok, c_tok = self._attempt(request)
            except _Fatal as err:
                result.reason, result.status, result.error = err.reason, err.status, str(err)
                return result
            except _Retryable as err:
                result.reason, result.status, result.error = err.reason, err.status, str(err)
                if attempt > self.settings.max_retries:
                    break
                delay = backoff_seconds(self.settings, request.key, attempt, err.retry_after)
                log.debug("retry %s after %s (attempt %d, sleep %.2fs)", request.key[:12], err.reason, attempt, delay)
                result.slept_s += delay
                self._sleep(delay)
                continue
            result.ok, result.content = True, content
            result.prompt_tokens += p_tok
            result.completion_tokens += c_tok
            result.reason = result.status = result.error = None
            return result
        result.error = f"gave up after {result.attempts} attempts: {result.error}"
        return result


def _short(raw: bytes, limit: int = 300) -> str:
    return raw[:limit].decode("utf-8", errors="replace")
