"""`bench.py serve`: load the HTTP server on loopback and report what `vllm bench serve` reports.

For each slot count a server is started (or --url is used); for each --clients value the
streaming load of cold_ms/bench/serve_client.py runs --num-prompts requests (closed-loop, or
open-loop Poisson at --request-rate) and prints request and output-token throughput with TTFT,
TPOT, ITL and E2E median and p99. With --peer, llama.cpp's server then runs the same load on the
same GGUF (cold_ms/bench/llama_server.py), one server at a time; --adapter-cycle loads and unloads
an adapter beside our load (cold_ms/bench/serve_cycle.py); --plot draws throughput against
clients. load_test() is the correctness load the tests run: every answer
under concurrency must equal the one given alone.
"""
import asyncio
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

from cold_ms.bench import serve_cycle
from cold_ms.errors import ConfigError
from cold_ms.formats.shipped import SHIPPED_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def add_arguments(p):
    p.add_argument("--url", help="an already running server (default: start one per --slots value)")
    p.add_argument("--model", help="model for the started servers (default: embedded)")
    p.add_argument("--adapters-dir", help="adapters for the started servers (default: shipped)")
    p.add_argument("--slots", type=int, nargs="+", default=[8])
    p.add_argument("--server-args", default="", help="more arguments for the started servers, one string")
    p.add_argument("--clients", type=int, nargs="+", default=[8],
                   help="concurrent clients (closed loop), or the concurrency cap of --request-rate")
    p.add_argument("--request-rate", type=float, help="open loop: Poisson arrivals of this many requests/s")
    p.add_argument("--num-prompts", type=int, default=64, help="requests per run")
    p.add_argument("--prompt-tokens", type=int, default=256, help="about this many prompt tokens, distinct text each")
    p.add_argument("--max-tokens", type=int, default=128, help="output tokens per request (ignore_eos is sent)")
    p.add_argument("--models", nargs="+", help="adapters assigned round-robin (default: the base model)")
    p.add_argument("--beta", type=float, default=0.5, help="CoLD beta of every request (0: greedy)")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--json", action="store_true", help="one JSON object per run instead of the table")
    p.add_argument("--peer", nargs=2, metavar=("llama-server", "BIN"),
                   help="then llama.cpp's server BIN on the same GGUF, one server at a time (greedy; README, Serving)")
    p.add_argument("--peer-loras", nargs="+", metavar="GGUF",
                   help="GGUF LoRA files of the --models adapters, in order, for the peer (default: it serves the base)")
    p.add_argument("--adapter-cycle", metavar="NAME=PATH",
                   help="during our runs, load adapter PATH (inside --adapters-dir) as NAME, use and unload it, "
                        "again and again; its failures are counted")
    p.add_argument("--plot", metavar="PNG", help="output tokens/s against clients, each server a line")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(slots, model=None, adapters_dir=None, extra=(), timeout=600):
    """A scripts/serve.py process on a free loopback port; returns (process, url) once healthy."""
    port = free_port()
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "serve.py"), "--port", str(port), "--slots", str(slots)]
    cmd += (["--model", model] if model else []) + (["--adapters-dir", adapters_dir] if adapters_dir else [])
    return start_process(cmd + list(extra), port, timeout)


def start_process(cmd, port, timeout=600):
    """A server command listening on loopback `port`; returns (process, url) once /health answers 200."""
    import httpx
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"the server exited: {proc.stderr.read()[-2000:].strip()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise ConfigError(f"the server did not answer /health within {timeout} s: {' '.join(cmd[:3])} ...")


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


COLUMNS = ("server", "slots", "clients", "failed", "request_throughput", "output_tokens_per_s", "ttft_median_ms",
           "ttft_p99_ms", "tpot_median_ms", "tpot_p99_ms", "itl_median_ms", "itl_p99_ms", "e2e_median_ms", "e2e_p99_ms")


def _print(figures, as_json):
    print(json.dumps(figures) if as_json else " ".join(f"{figures[c]:>12}" for c in COLUMNS), flush=True)


def _measure(url, body, clients, args, cycle_spec=None):
    from cold_ms.bench.serve_client import run_load, summary
    load = run_load(url, body, args.num_prompts, clients, args.request_rate, None)
    (outcomes, wall), cycled = asyncio.run(serve_cycle.with_cycle(load, url, cycle_spec, body(args.num_prompts)))
    return {"clients": clients, **summary(outcomes, wall), **cycled}


def _ours(args, cycle_spec):
    """Our runs: a server per --slots value (or --url), every --clients value against it; cycle_spec:
    the (name, path) of --adapter-cycle, or None."""
    import httpx
    from cold_ms.bench.serve_client import cold_body
    extra = args.server_args.split() + (["--allow-runtime-adapters"] if cycle_spec else [])
    adapters_dir = args.adapters_dir or (SHIPPED_DIR if cycle_spec else None)  # runtime loads need one
    for slots in ([None] if args.url else args.slots):
        proc, url = (None, args.url) if args.url else start_server(slots, args.model, adapters_dir, extra)
        try:
            models = args.models or [httpx.get(url + "/v1/models").json()["data"][0]["id"]]
            body = cold_body(models, args.prompt_tokens, args.max_tokens,
                             {"alpha": args.alpha, "beta": args.beta, "temperature": 0})
            for clients in args.clients:
                yield {"server": "cold_ms", "slots": slots or "-", **_measure(url, body, clients, args, cycle_spec)}
        finally:
            if proc:
                stop_server(proc)


def _peer(args, gguf):
    """llama-server's runs: one server per --clients value (--parallel clients)."""
    from cold_ms.bench import llama_server
    body = llama_server.body_maker(args.models or ["base"], args.peer_loras, args.prompt_tokens, args.max_tokens)
    for clients in args.clients:
        port = free_port()
        proc, url = start_process(llama_server.command(args.peer[1], gguf, port, clients, args.peer_loras), port)
        try:
            yield {"server": "llama-server", "slots": clients, **_measure(url, body, clients, args)}
        finally:
            stop_server(proc)


def run(args):
    from cold_ms.bench import llama_server
    gguf = llama_server.check(args.peer, args.model, args.peer_loras, args.models) if args.peer else None
    cycle_spec = serve_cycle.parse(args.adapter_cycle) if args.adapter_cycle else None  # refused before any start
    if not args.json:
        print(" ".join(f"{c.replace('_median', ' p50').replace('_ms', '')[:12]:>12}" for c in COLUMNS))
    rows = []
    for figures in itertools.chain(_ours(args, cycle_spec), _peer(args, gguf) if gguf else ()):
        _print(figures, args.json)
        rows.append(figures)
    if args.plot:
        from cold_ms.report import serve_plot
        serve_plot(rows, args.plot, f"{args.prompt_tokens}-token prompts, {args.max_tokens} output tokens", args.beta)
