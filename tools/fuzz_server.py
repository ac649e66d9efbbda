#!/usr/bin/env python
"""Fuzz the HTTP server on loopback: random JSON shapes, types, sizes and Unicode over
POST /v1/completions and POST /v1/chat/completions, bounded in count and in time.

Starts scripts/serve.py on 127.0.0.1 (the tiny test model by default; --model embedded for
SmolLM2 with the shipped adapters), sends --requests bodies from --concurrency clients, then
sends every body that got a 2xx once more, alone, and compares the answers. Prints the
counts; exits 1 unless there were no 5xx, no broken connections, no server crash and every
2xx equalled its run alone.

  python tools/fuzz_server.py                      # 2,000 requests, tiny model
  python tools/fuzz_server.py --model embedded --requests 2000 --seconds 1200
"""
import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from fuzz_bodies import Bodies  # noqa: E402  (tools/fuzz_bodies.py: the random requests)

KEY = "fuzz-key"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="tiny (the tests' model, built here), embedded, or a path")
    p.add_argument("--adapters-dir", help="with a model path: its adapters")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=900, help="time bound of the whole run")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slots", type=int, default=2)
    return p.parse_args(argv)


def tiny_model(root):
    """The tests' tiny LLaMA (tests/fixtures.py) with two adapters; returns (model dir, adapters dir)."""
    import fixtures
    cfg, _ = fixtures.write_model(os.path.join(root, "model"))
    fixtures.write_sentencepiece(os.path.join(root, "model", "tokenizer.model"))
    for name, seed in (("qv", 1), ("all", 2)):
        targets = ("q_proj", "v_proj") if name == "qv" else tuple(fixtures.PROJ_DIMS)
        fixtures.write_adapter(os.path.join(root, "adapters", name), cfg, seed=seed, targets=targets)
    return os.path.join(root, "model"), os.path.join(root, "adapters")


def start_server(args, root):
    from cold_ms.bench.serve import free_port
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "serve.py"), "--host", "127.0.0.1", "--port",
           str(free_port()), "--slots", str(args.slots), "--api-key", KEY, "--max-tokens-limit", "24",
           "--max-queue", "16", "--max-body-bytes", "65536"]
    if args.model == "tiny":
        model, adapters = tiny_model(root)
        cmd += ["--model", model, "--adapters-dir", adapters, "--max-len", "128", "--chat-template", "chatml"]
    elif args.model != "embedded":
        cmd += ["--model", args.model] + (["--adapters-dir", args.adapters_dir] if args.adapters_dir else [])
    log = open(os.path.join(root, "server.log"), "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    url = "http://127.0.0.1:" + cmd[cmd.index("--port") + 1]
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url, log.name
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"error: the server did not start; see {log.name}")


def answer(response):
    """What must not depend on the batch: the choices' text and finish reasons, and usage."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [json.loads(line[6:]) for line in response.text.splitlines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
        text = "".join(c.get("text") or c.get("delta", {}).get("content") or "" for e in events for c in e["choices"])
        return text, events[-1]["choices"][0]["finish_reason"], events[-1].get("usage")
    body = response.json()
    choice = body["choices"][0]
    return choice.get("text", choice.get("message", {}).get("content")), choice["finish_reason"], body["usage"]


def openai_error(response):
    """Whether an error body is {"error": {"message", "type", "param", "code"}}, its message
    free of the code's internal names."""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    internal = ("request 0", "max_new_tokens", "Traceback", "pydantic", "Value error", "list[", "dict[")
    return set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str) and \
        not any(name in error["message"] for name in internal)


async def send(http, url, request):
    path, content, headers = request
    return await http.post(url + path, content=content() if callable(content) else content, headers=headers)


async def phase_one(url, bodies, args, deadline, tally):
    """All requests, from concurrent clients; returns [(request, answer)] of the 2xx ones."""
    ok, counter = [], iter(range(args.requests))

    async def client(http):
        for _ in counter:
            if time.time() > deadline:
                return
            request = bodies.next()
            try:
                r = await send(http, url, request)
            except httpx.TransportError as e:
                tally["broken connection"] += 1
                tally[f"broken: {type(e).__name__}"] += 1
                continue
            tally["requests"] += 1
            tally[f"{r.status_code // 100}xx"] += 1
            tally[f"status {r.status_code}"] += 1
            if r.status_code >= 500:
                print(f"5xx: {request[0]} {str(request[1])[:300]!r} -> {r.text[:300]}", flush=True)
            elif r.status_code < 300:
                ok.append((request, answer(r)))
            elif not openai_error(r):
                tally["4xx not in OpenAI's error shape"] += 1
                print(f"bad error body: {r.status_code} {r.text[:300]}", flush=True)
            else:
                tally[f"  {r.status_code} {r.json()['error']['code']}"] += 1

    async with httpx.AsyncClient(timeout=120) as http:
        await asyncio.gather(*(client(http) for _ in range(args.concurrency)))
    return ok


async def phase_two(url, ok, deadline, tally):
    """Each 2xx request again, alone: the answer must be the same."""
    async with httpx.AsyncClient(timeout=120) as http:
        for request, first in ok:
            if time.time() > deadline:
                tally["2xx not rerun (time bound)"] += 1
                continue
            r = await send(http, url, request)
            tally["2xx rerun alone"] += 1
            if r.status_code >= 300 or answer(r) != first:
                tally["2xx differing from the run alone"] += 1
                # alone twice more: a difference between those is not the batch's doing
                again = [answer(await send(http, url, request)) for _ in range(2)]
                print(f"differs: {str(request[1])[:300]!r}: in the batch {first}; alone {r.status_code} "
                      f"{answer(r) if r.status_code < 300 else r.text[:300]}, then {again}", flush=True)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    with tempfile.TemporaryDirectory() as root:
        proc, url, log = start_server(args, root)
        try:
            models = [m["id"] for m in httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
                      .json()["data"]]
            bodies = Bodies(args.seed, models, KEY)
            tally, deadline = collections.Counter(), start + args.seconds
            ok = asyncio.run(phase_one(url, bodies, args, deadline, tally))
            asyncio.run(phase_two(url, ok, deadline, tally))
            alive = proc.poll() is None and httpx.get(url + "/health", timeout=5).status_code == 200
            metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        tally["server crashed"] = int(not alive)
        busy = [line for line in metrics.splitlines() if line.startswith(("cold_slots_busy ", "cold_queue_length "))]
        for kind, n in sorted(bodies.kinds.items()):
            print(f"kind {kind:<20} {n}")
        verdict = ["requests", "2xx", "4xx", "5xx", "broken connection", "server crashed", "2xx rerun alone",
                   "2xx differing from the run alone", "2xx not rerun (time bound)", "4xx not in OpenAI's error shape"]
        for key in verdict + sorted(k for k in tally if k not in verdict):
            print(f"{key:<40} {tally[key]}")
        print(*busy, sep="\n")
        print(f"wall {time.time() - start:.0f}s, seed {args.seed}, model {args.model}")
        bad = sum(tally[key] for key in verdict[3:] if key != "2xx rerun alone")
        return 1 if bad or tally["requests"] < args.requests else 0


if __name__ == "__main__":
    sys.exit(main())
