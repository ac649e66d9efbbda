"""`bench.py serve` at the smallest size: a started server, streamed requests, vLLM's figures."""
import json
import os
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
    for extra, clients in ((["--clients", "1", "2"], [1, 2]), (["--clients", "2", "--request-rate", "50"], [2])):
        done = subprocess.run(common + extra, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs = [json.loads(line) for line in done.stdout.splitlines()]
        assert [r["clients"] for r in runs] == clients
        for r in runs:
            assert r["failed"] == 0 and r["requests"] == 4 and r["mean_output_tokens"] == 5
            assert 0 < r["ttft_median_ms"] <= r["ttft_p99_ms"] and 0 < r["tpot_median_ms"] <= r["e2e_median_ms"]


def test_summary_of_hand_made_outcomes():
    done = [Outcome(True, 10, 5, 0.1, 0.5, [0.1] * 4), Outcome(True, 10, 3, 0.3, 0.5, [0.1, 0.1])]
    s = summary(done + [Outcome(False, error="HTTP 500")], wall=2.0)
    assert s["failed"] == 1 and s["request_throughput"] == 1.0 and s["output_tokens_per_s"] == 4.0
    assert s["tpot_median_ms"] == 100.0 and s["ttft_median_ms"] == 200.0 and s["itl_p99_ms"] == 100.0
    assert prompt_text(1, 20) != prompt_text(2, 20) and prompt_text(1, 20) == prompt_text(1, 20)
