"""`bench.py serve` at the smallest size: a started server, streamed requests, vLLM's figures."""
import argparse
import json
import os
import shutil
import subprocess
import sys

from cold_ms.bench.serve import ROOT
from cold_ms.bench.serve_client import Outcome, prompt_text, summary


def test_bench_serve_reports_vllm_figures_closed_and_open_loop(tiny, tmp_path):
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    for name in ("qv", "all"):
        (adapters / name).symlink_to(tiny["adapter_dir"][name])
    common = [sys.executable, os.path.join(ROOT, "scripts", "bench.py"), "serve", "--model", tiny["model_dir"],
              "--adapters-dir", str(adapters), "--slots", "2", "--server-args", "--max-len 128",
              "--num-prompts", "4", "--prompt-tokens", "8", "--max-tokens", "5", "--models", "qv", "all", "--json"]
    # inside --adapters-dir (a copy: a symlink out of it is refused) but not served at start: the cycle's adapter
    shutil.copytree(tiny["adapter_dir"]["mlp"], adapters / "spare" / "mlp")
    png = tmp_path / "clients.png"
    runs_of = ((["--clients", "1", "2", "--adapter-cycle", "extra=spare/mlp"], [1, 2]),
               (["--clients", "2", "--request-rate", "50", "--plot", str(png)], [2]))
    for extra, clients in runs_of:
        done = subprocess.run(common + extra, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs = [json.loads(line) for line in done.stdout.splitlines()]
        assert [r["clients"] for r in runs] == clients
        for r in runs:
            assert r["failed"] == 0 and r["requests"] == 4 and r["mean_output_tokens"] == 5 and r["server"] == "cold_ms"
            assert 0 < r["ttft_median_ms"] <= r["ttft_p99_ms"] and 0 < r["tpot_median_ms"] <= r["e2e_median_ms"]
            if "--adapter-cycle" in extra:  # the adapter came and went while the load ran, never failing
                assert r["cycles"] >= 1 and r["cycle_failed"] == 0, r
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peer_llama_server_is_started_and_asked_as_documented(tmp_path, monkeypatch):
    """The peer's command line (cores, --parallel clients, 1024 positions a slot, loopback, LoRAs
    loaded unapplied) and its requests (greedy, ignore_eos, each naming its adapter round-robin),
    checked on a stand-in that records what it is asked."""
    from cold_ms.bench import llama_server, serve
    log = tmp_path / "peer.jsonl"
    monkeypatch.setenv("FAKE_LLAMA_SERVER_LOG", str(log))
    loras = [str(tmp_path / f"{n}.gguf") for n in ("a", "b")]
    for f in loras:
        open(f, "wb").close()
    gguf = str(tmp_path / "m.gguf")
    open(gguf, "wb").close()
    fake = os.path.join(ROOT, "tests", "fake_llama_server.py")
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(["--peer", "llama-server", fake, "--peer-loras", *loras, "--models", "a", "b",
                                            "--clients", "1", "3", "--num-prompts", "5", "--prompt-tokens", "12",
                                            "--max-tokens", "4", "--model", gguf])
    assert llama_server.check(args.peer, args.model, args.peer_loras, args.models) == gguf
    runs = list(serve._peer(args, gguf))
    assert [(r["server"], r["clients"], r["failed"], r["mean_output_tokens"]) for r in runs] == \
        [("llama-server", 1, 0, 4), ("llama-server", 3, 0, 4)]
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    starts = [e["argv"] for e in entries if "argv" in e]
    cores = str(len(os.sched_getaffinity(0)))
    assert [(a["parallel"], a["c"]) for a in starts] == [("1", "1024"), ("3", "3072")]
    assert all(a["t"] == a["tb"] == cores and a["host"] == "127.0.0.1" and a["m"] == gguf and a["lora"] == loras
               and a["lora_init_without_apply"] for a in starts)
    bodies = [e["body"] for e in entries if "body" in e]
    assert len(bodies) == 10 and all(b["temperature"] == 0 and b["ignore_eos"] and b["max_tokens"] == 4 for b in bodies)
    assert sorted(b["lora"][0]["id"] for b in bodies[:5]) == [0, 0, 0, 1, 1]
    assert len({b["prompt"] for b in bodies[:5]}) == 5  # never a prompt the server has cached


def test_bad_peer_and_cycle_arguments_are_one_line_errors(tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_cli", os.path.join(ROOT, "scripts", "bench.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"")
    cases = [(["--peer", "vllm", "x"], "the peers are llama-server"),
             (["--peer", "llama-server", str(tmp_path / "nope")], "not an executable file"),
             (["--peer", "llama-server", sys.executable, "--model", str(tmp_path)], "needs a GGUF --model"),
             (["--peer", "llama-server", sys.executable, "--model", str(gguf), "--models", "a", "b",
               "--peer-loras", str(gguf)], "one GGUF LoRA per adapter"),
             (["--adapter-cycle", "nameonly"], "give NAME=PATH")]
    for argv, message in cases:
        assert bench.main(["serve", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_summary_of_hand_made_outcomes():
    done = [Outcome(True, 10, 5, 0.1, 0.5, [0.1] * 4), Outcome(True, 10, 3, 0.3, 0.5, [0.1, 0.1])]
    s = summary(done + [Outcome(False, error="HTTP 500")], wall=2.0)
    assert s["failed"] == 1 and s["request_throughput"] == 1.0 and s["output_tokens_per_s"] == 4.0
    assert s["tpot_median_ms"] == 100.0 and s["ttft_median_ms"] == 200.0 and s["itl_p99_ms"] == 100.0
    assert prompt_text(1, 20) != prompt_text(2, 20) and prompt_text(1, 20) == prompt_text(1, 20)


def test_a_chunk_without_text_is_a_token_but_the_closing_chunk_is_not():
    """The client counts what vLLM's benchmark counts: every chunk with choices (a token's text may be
    empty), except the closing one that only carries a finish reason."""
    import asyncio
    import httpx
    from cold_ms.bench.serve_client import one_request
    chunks = [{"choices": [{"text": t, "finish_reason": None}]} for t in ("a", "", "b")]
    chunks += [{"choices": [{"text": "", "finish_reason": "length"}]},
               {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}]
    stream = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=stream))

    async def one():
        async with httpx.AsyncClient(transport=transport) as http:
            return await one_request(http, "http://test", {}, None)
    outcome = asyncio.run(one())
    assert outcome.ok and outcome.tokens == 3 and len(outcome.itl) == 2  # three token arrivals
