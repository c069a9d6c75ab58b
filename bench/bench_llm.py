"""LLM client: requests/s against the local test server with a fixed reply latency, by concurrency.

The server (tests/llm_server.py) waits ``latency`` seconds per reply, like a model endpoint; with the
endpoint not the bottleneck, throughput should grow ~linearly with ``llm.concurrency`` (threads per
partition). Also the copy-source chrF floor of the translate stage on the real NiuTrans chapters when
../shared/data is present (a real model's chrF must beat it; see medcorpus.llm.eval_translate).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _throughput(concurrency: int, n: int, latency: float) -> dict[str, float]:
    from tests.llm_server import FakeLLMServer

    from medcorpus.llm.client import ClientSettings, Secret
    from medcorpus.llm.prompts import load_template, prompt_dir
    from medcorpus.llm.worker import partition_answerer

    with FakeLLMServer(api_key="bench-key", delay_s=latency) as server:
        settings = ClientSettings(base_url=server.base_url, model="bench", concurrency=concurrency)
        template = load_template("annotate.v1", prompt_dir("prompts"))
        labels = {"domain_labels": ["general", "clinical", "tcm", "pharmacy", "consumer_health"]}
        fn = partition_answerer(settings, Secret("bench-key"), template, labels, 100)
        batch = pd.DataFrame({
            "cache_key": [f"k{i}" for i in range(n)],
            "vars_json": [json.dumps({"text": f"患者发热第{i}天，医生建议治疗。"}, ensure_ascii=False) for i in range(n)],
            "seed": [1] * n,
        })
        t0 = time.perf_counter()
        out = pd.concat(list(fn(iter([batch]))))
        seconds = time.perf_counter() - t0
        assert bool(out["ok"].all()), "bench requests failed"
        return {"requests": n, "seconds": round(seconds, 3), "requests_per_s": round(n / seconds, 1),
                "max_in_flight": server.max_in_flight}


def run(spark, args) -> dict:
    latency = 0.05
    n = 64 if getattr(args, "quick", False) else 400
    result: dict = {"latency_s": latency}
    for concurrency in (1, 4, 16):
        result[f"concurrency_{concurrency}"] = _throughput(concurrency, n if concurrency > 1 else n // 4, latency)
    from medcorpus.llm.eval_translate import DEFAULT_ROOT, chapter_pairs, corpus_chrf, sample

    if DEFAULT_ROOT.exists():
        chapters = sample(chapter_pairs(DEFAULT_ROOT), 50, 3000)
        pairs = [(s.read_text(encoding="utf-8"), t.read_text(encoding="utf-8")) for _, s, t in chapters]
        result["niutrans_copy_baseline_chrF"] = {"chapters": len(pairs), "chrF": round(corpus_chrf(pairs), 2)}
    return result
