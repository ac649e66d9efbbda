"""`bench.py serve`: a bounded load test of the HTTP server on loopback.

For each slot count a server is started (or --url is used), every request kind is sent
once alone to learn its answer, then CLIENTS concurrent clients send REQUESTS requests in
total. Every answer must equal the one given alone (a request's tokens do not depend on
the batch). Prints requests/s, generated tokens/s and latency percentiles.
"""
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def add_arguments(p):
    p.add_argument("--url", help="an already running server (default: start one per --slots value)")
    p.add_argument("--model", help="model for the started servers (default: embedded)")
    p.add_argument("--adapters-dir", help="adapters for the started servers (default: shipped)")
    p.add_argument("--slots", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--max-tokens", type=int, default=32)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(slots, model=None, adapters_dir=None, extra=(), timeout=600):
    """A scripts/serve.py process on a free loopback port; returns (process, url) once healthy."""
    import httpx
    port = free_port()
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "serve.py"), "--port", str(port), "--slots", str(slots)]
    cmd += (["--model", model] if model else []) + (["--adapters-dir", adapters_dir] if adapters_dir else [])
    proc = subprocess.Popen(cmd + list(extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError("the server did not become healthy in time")


def stop_server(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def request_kinds(models, max_tokens):
    """A mix of adapters, the base model, CoLD settings and prompts."""
    prompts = ["What is 12 plus 7?", "Name a large city in France.", "Write one word about the sea.",
               "State the final answer to the following arithmetic problem: 4 + 9 - 3 ="]
    kinds = []
    for i, prompt in enumerate(prompts):
        for j, model in enumerate(models):
            beta = (0.0, 0.5, 1.0)[(i + j) % 3]
            kinds.append({"model": model, "messages": [{"role": "user", "content": prompt}],
                          "max_tokens": max_tokens, "alpha": 0.1, "beta": beta})
    return kinds


async def _load(url, kinds, clients, total, headers):
    import httpx
    results, counter = [], iter(range(total))

    async def client(http):
        for n in counter:
            body = kinds[n % len(kinds)]
            start = time.perf_counter()
            r = await http.post(url + "/v1/chat/completions", json=body, headers=headers)
            results.append((n % len(kinds), r.status_code, r.json(), time.perf_counter() - start))

    async with httpx.AsyncClient(timeout=600) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return results, time.perf_counter() - start


def load_test(url, clients=16, total=200, max_tokens=32, headers=None):
    """Run the load; returns a dict of figures and the list of mismatching answers."""
    import httpx
    models = [m["id"] for m in httpx.get(url + "/v1/models", headers=headers).json()["data"]]
    kinds = request_kinds(models, max_tokens)
    alone = [httpx.post(url + "/v1/chat/completions", json=k, headers=headers, timeout=600).json() for k in kinds]
    results, wall = asyncio.run(_load(url, kinds, clients, total, headers))
    wrong = [(k, s, body) for k, s, body, _ in results
             if s != 200 or body["choices"][0]["message"]["content"] != alone[k]["choices"][0]["message"]["content"]]
    latencies = sorted(t for *_, t in results)
    tokens = sum(body["usage"]["completion_tokens"] for _, s, body, _ in results if s == 200)
    figures = {"requests": len(results), "clients": clients, "wall_s": round(wall, 2),
               "requests_per_s": round(len(results) / wall, 2), "tokens_per_s": round(tokens / wall, 1),
               "p50_s": round(statistics.median(latencies), 3),
               "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3)}
    return figures, wrong


def run(args):
    print(f"{'slots':>5} {'clients':>7} {'requests':>8} {'req/s':>7} {'tok/s':>7} {'p50 s':>7} {'p99 s':>7} wrong")
    for slots in ([None] if args.url else args.slots):
        proc, url = (None, args.url) if args.url else start_server(slots, args.model, args.adapters_dir)
        try:
            figures, wrong = load_test(url, args.clients, args.requests, args.max_tokens)
        finally:
            if proc:
                stop_server(proc)
        print(f"{slots or '-':>5} {figures['clients']:>7} {figures['requests']:>8} {figures['requests_per_s']:>7} "
              f"{figures['tokens_per_s']:>7} {figures['p50_s']:>7} {figures['p99_s']:>7} {len(wrong)}", flush=True)
