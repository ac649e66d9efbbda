#!/usr/bin/env python
"""cold_ms benchmarks. Sub-commands print tables (and JSON with --json where offered)."""
import argparse
import importlib
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

COMMANDS = {"e2e": "greedy, fused CoLD and unfused baselines on a real model: latency, TTFT, RSS",
            "decode": "greedy vs fused CoLD decode step on a random LLaMA",
            "bgmv": "custom BGMV kernel vs the gather-BMM twin, time and peak memory",
            "kernels": "C++ harness: one decode step's projections per weight layout and token-row count",
            "serve": "HTTP server under streaming load: throughput, TTFT, TPOT, ITL, E2E (vllm bench serve's figures)",
            "memory": "device bytes of the allocation plan and bytes read per decode step, CoLD vs two models",
            "train": "one LoRA training step of cold_ms against transformers + PEFT on the same batch, alternating"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        importlib.import_module(f"cold_ms.bench.{name}").add_arguments(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    from cold_ms.errors import ColdError
    try:
        importlib.import_module(f"cold_ms.bench.{args.command}").run(args)
    except ColdError as e:
        print(f"bench.py {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
