"""The streaming load of `bench.py serve`, in `vllm bench serve`'s terms.

Each request streams a completion and records when its token chunks arrive (as vLLM's benchmark, a
chunk with choices, its text possibly empty: a token without text of its own, e.g. half a character,
still arrives; a closing chunk without text and with a finish reason is not a token): TTFT (first
chunk), ITL (the gaps between chunks), E2E, and TPOT = (E2E - TTFT) / (tokens - 1). Load is closed-loop
(`clients` concurrent clients, each sending its next request when the previous one ends) or
open-loop (a Poisson process of `request_rate` requests/s, seeded; `clients` caps concurrency).
Prompts are deterministic natural-looking text of about `prompt_tokens` tokens, distinct per
request (a server that caches a shared prefix must not measure its cache); adapters are assigned
round-robin from `models`; `ignore_eos` makes every output `max_tokens` long.
"""
import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import List

import numpy as np

WORDS = ("the river city market morning light quiet garden old bridge north wind people walk along stone "
         "houses near water small boats carry fruit bread and fish while children watch from windows every "
         "season brings new colours to the hills where farmers count their sheep and talk about rain").split()


def prompt_text(index, prompt_tokens):
    """About `prompt_tokens` tokens of text, a different text for each index. These common words are
    about one token each (SmolLM2's BPE: 1.03 tokens a word, measured; 192 words made 198 tokens)."""
    rng = np.random.default_rng([7, index])
    words = [f"Note {index}:"] + [WORDS[i] for i in rng.integers(0, len(WORDS), max(1, int(prompt_tokens * 0.97)))]
    return " ".join(words) + "."


@dataclass
class Outcome:
    ok: bool
    prompt_tokens: int = 0
    tokens: int = 0
    ttft: float = 0.0
    e2e: float = 0.0
    itl: List[float] = field(default_factory=list)
    error: str = ""


async def one_request(http, url, body, headers):
    """Stream one completion; its Outcome."""
    start = time.perf_counter()
    arrivals, usage = [], None
    try:
        async with http.stream("POST", url + "/v1/completions", json=body, headers=headers) as r:
            if r.status_code != 200:
                return Outcome(False, error=f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                choices = chunk.get("choices")
                if choices and (choices[0].get("text") or choices[0].get("finish_reason") is None):
                    arrivals.append(time.perf_counter())
    except Exception as e:  # noqa: BLE001 - a failed request is counted, not fatal to the run
        return Outcome(False, error=f"{type(e).__name__}: {e}")
    end = time.perf_counter()
    if usage is None or not arrivals:
        return Outcome(False, error="no tokens or no usage in the stream")
    return Outcome(True, usage["prompt_tokens"], usage["completion_tokens"], arrivals[0] - start, end - start,
                   list(np.diff(arrivals)))


def cold_body(models, prompt_tokens, max_tokens, extra):
    """i -> the streamed /v1/completions body of request i for our server: adapters round-robin."""
    def body(i):
        return {"model": models[i % len(models)], "prompt": prompt_text(i, prompt_tokens), "max_tokens": max_tokens,
                "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True, **extra}
    return body


async def run_load(url, body, n_requests, clients, request_rate, headers):
    """[Outcome] of n_requests requests (request i sends body(i)), and the wall seconds they took."""
    import httpx
    sem = asyncio.Semaphore(clients)
    rng = np.random.default_rng(0)
    gaps = rng.exponential(1.0 / request_rate, n_requests) if request_rate else np.zeros(n_requests)

    async def limited(http, i):
        async with sem:
            return await one_request(http, url, body(i), headers)

    # a fresh connection per request: llama-server closes idle keep-alive connections, and a request
    # sent on one just closed failed ("Server disconnected without sending a response")
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=3600, limits=limits) as http:
        start, tasks = time.perf_counter(), []
        for i in range(n_requests):
            if request_rate:
                await asyncio.sleep(gaps[i])
            tasks.append(asyncio.ensure_future(limited(http, i)))
        outcomes = await asyncio.gather(*tasks)
        return outcomes, time.perf_counter() - start


def _pct(values, q):
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def summary(outcomes, wall):
    """vLLM's figures: throughput, and TTFT, TPOT, ITL, E2E median and p99 in ms."""
    done = [o for o in outcomes if o.ok]
    tpot = [(o.e2e - o.ttft) / (o.tokens - 1) for o in done if o.tokens > 1]
    itl = [g for o in done for g in o.itl]
    out = {"requests": len(outcomes), "failed": len(outcomes) - len(done), "wall_s": round(wall, 2),
           "errors": sorted({o.error for o in outcomes if not o.ok})[:3],
           "request_throughput": round(len(done) / wall, 3),
           "output_tokens_per_s": round(sum(o.tokens for o in done) / wall, 1),
           "mean_prompt_tokens": round(statistics.mean(o.prompt_tokens for o in done), 1) if done else 0,
           "mean_output_tokens": round(statistics.mean(o.tokens for o in done), 1) if done else 0}
    for name, values in (("ttft", [o.ttft for o in done]), ("tpot", tpot), ("itl", itl),
                         ("e2e", [o.e2e for o in done])):
        out[f"{name}_median_ms"], out[f"{name}_p99_ms"] = round(_pct(values, 50), 1), round(_pct(values, 99), 1)
    return out
