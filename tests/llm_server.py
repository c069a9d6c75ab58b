"""A small OpenAI chat-completions server for tests: deterministic answers, injected faults, request counts.

Run it in a test (``with FakeLLMServer() as server: server.base_url``) or alone
(``python tests/llm_server.py --port 8099``). It answers ``POST /v1/chat/completions`` deterministically
from the prompt, recognising which of the project's templates asked (by the tags and JSON keys the
templates use). Faults are injected by markers in the prompt text, counted per distinct prompt (the
first user message), so a retry of the same prompt sees the next behaviour:

- ``[[429]]``        first request 429 with ``Retry-After: <retry_after>``, then normal
- ``[[500x2]]``      first two requests 500, then normal
- ``[[always500]]``  every request 500
- ``[[slow]]``       first request sleeps ``slow_seconds`` before answering (trips a client timeout)
- ``[[badjson]]``    first reply is malformed JSON, then normal
- ``[[alwaysbad]]``  every reply is malformed
- ``[[disagree]]``   annotate: round 2 (seed 2) gives another domain
- ``[[qdiff]]``      annotate: round 2 quality differs by 3
- ``[[tie]]``        judge: both answers get the same scores
- ``[[echoauth]]``   400 whose body echoes the Authorization header (the client must redact it)

``requests_total`` counts every POST; ``prompts_seen`` counts per prompt; ``max_in_flight`` records the
largest number of requests handled at once; ``auth_headers`` holds every Authorization header received.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MEDICAL_HINTS = (
    ("tcm", ("中医", "脉", "本草", "汤", "气血", "经络")),
    ("pharmacy", ("药", "剂量", "mg")),
    ("consumer_health", ("营养", "健康", "饮食", "运动")),
    ("clinical", ("病", "医", "症", "治疗", "患者", "诊断")),
)
DOMAINS = ("general", "clinical", "tcm", "pharmacy", "consumer_health")


def _tag(text: str, tag: str) -> str | None:
    m = re.search(rf"<{tag}>\s*(.*?)\s*</{tag}>", text, re.S)
    return m.group(1) if m else None


def domain_of(text: str) -> str:
    for label, hints in MEDICAL_HINTS:
        if any(h in text for h in hints):
            return label
    return "general"


def quality_of(text: str) -> int:
    return min(5, len(text) // 20)


def judge_scores(answer: str) -> dict[str, float]:
    """A doctor's answer ("医生") scores higher on proficiency; deterministic."""
    complete = min(5.0, 1.0 + len(answer) / 40)
    proficiency = 5.0 if "医生" in answer else 2.0
    return {"fluency": 4.0, "relevance": 4.0, "completeness": round(complete, 1), "proficiency": proficiency}


def respond(messages: list[dict[str, str]], seed: int | None) -> str:
    """The deterministic reply to a prompt built from one of the project's templates."""
    user = next((m["content"] for m in messages if m["role"] == "user"), "")
    if "<response_a>" in user:
        a, b = _tag(user, "response_a") or "", _tag(user, "response_b") or ""
        sa, sb = judge_scores(a), judge_scores(b)
        if "[[tie]]" in user:
            sb = dict(sa)
        return json.dumps({"a": sa, "b": sb}, ensure_ascii=False)
    if '"domain"' in user:
        doc = _tag(user, "document") or ""
        domain, quality = domain_of(doc), quality_of(doc)
        if seed == 2 and "[[disagree]]" in doc:
            domain = DOMAINS[(DOMAINS.index(domain) + 1) % len(DOMAINS)]
        if seed == 2 and "[[qdiff]]" in doc:
            quality = quality - 3 if quality >= 3 else quality + 3
        return json.dumps({"domain": domain, "quality": quality}, ensure_ascii=False)
    if '"qa"' in user:
        doc = _tag(user, "document") or ""
        n = int(re.search(r"编写 (\d+) 个问答对", user).group(1)) if re.search(r"编写 (\d+) 个", user) else 2
        pairs = [{"question": f"问题{i + 1}：{doc[:12]}讲了什么？", "answer": f"答案{i + 1}：{doc[i * 10:i * 10 + 40]}"}
                 for i in range(n)]
        return json.dumps({"qa": pairs}, ensure_ascii=False)
    if "<classical>" in user:
        return "译文：" + (_tag(user, "classical") or "") + "（现代汉语）"
    if "<question>" in user:
        return "医生建议：" + (_tag(user, "question") or "") + " 请注意休息，必要时及时就医。"
    return "OK"


class FakeLLMServer:
    """Threaded HTTP server on 127.0.0.1 (a free port); use as a context manager."""

    def __init__(self, *, api_key: str | None = None, retry_after: float = 0.05, slow_seconds: float = 2.0,
                 delay_s: float = 0.0, port: int = 0):
        self.api_key = api_key
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.requests_total = 0
        self.prompts_seen: Counter[str] = Counter()
        self.status_counts: Counter[int] = Counter()
        self.auth_headers: list[str] = []
        self._last_auth = ""
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def reset_counts(self) -> None:
        with self.lock:
            self.requests_total = 0
            self.prompts_seen.clear()
            self.status_counts.clear()
            self.max_in_flight = 0

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- request handling -------------------------------------------------------------------------
    def _decide(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes, float]:
        """(status, headers, body, sleep) for one request; updates the counters."""
        messages = body.get("messages") or []
        user = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
        prompt_id = hashlib.sha256(f"{body.get('seed')}|{user}".encode()).hexdigest()
        with self.lock:
            self.prompts_seen[prompt_id] += 1
            nth = self.prompts_seen[prompt_id]
        if "[[echoauth]]" in user:  # a careless endpoint that echoes the request headers in its error
            return 400, {}, json.dumps({"error": {"headers": self._last_auth}}).encode(), 0.0
        if "[[always500]]" in user or ("[[500x2]]" in user and nth <= 2):
            return 500, {}, b'{"error": {"message": "injected server error"}}', 0.0
        if "[[429]]" in user and nth == 1:
            return 429, {"Retry-After": str(self.retry_after)}, b'{"error": {"message": "rate limited"}}', 0.0
        sleep = self.slow_seconds if ("[[slow]]" in user and nth == 1) else self.delay_s
        if "[[alwaysbad]]" in user or ("[[badjson]]" in user and nth == 1):
            content = '{"this is": not json'
        else:
            content = respond(messages, body.get("seed"))
        reply = {
            "id": f"chatcmpl-{prompt_id[:12]}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(user), "completion_tokens": len(content),
                      "total_tokens": len(user) + len(content)},
        }
        return 200, {}, json.dumps(reply, ensure_ascii=False).encode("utf-8"), sleep

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with server.lock:
                    server.requests_total += 1
                    server.auth_headers.append(self.headers.get("Authorization") or "")
                    server._last_auth = self.headers.get("Authorization") or ""
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if not self.path.endswith("/chat/completions"):
                        status, headers, payload, sleep = 404, {}, b'{"error": "not found"}', 0.0
                    elif server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                        status, headers, payload, sleep = 401, {}, b'{"error": "bad key"}', 0.0
                    else:
                        status, headers, payload, sleep = server._decide(json.loads(raw or b"{}"))
                    if sleep:
                        time.sleep(sleep)
                    with server.lock:
                        server.status_counts[status] += 1
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away
                finally:
                    with server.lock:
                        server.in_flight -= 1

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--api-key")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds every reply waits")
    args = parser.parse_args()
    server = FakeLLMServer(api_key=args.api_key, delay_s=args.delay, port=args.port)
    print(f"serving {server.base_url}", flush=True)
    server._httpd.serve_forever()


if __name__ == "__main__":
    main()
