#!/usr/bin/env bash
# Issue 26 acceptance runs, one server at a time (bench.py serve alternates nothing: servers run in turn).
set -u
cd "$(dirname "$0")/../../.."
B=${LLAMA_SERVER:?set LLAMA_SERVER to the llama-server binary (README, Serving)}
L=${PEER_LORAS:?set PEER_LORAS to the directory of math.gguf, arith.gguf, csqa.gguf}
O=docs/results/serve
M="--models math arith csqa"
# both servers keep a float16 KV cache (llama-server's default cache type)
K='--server-args=--kv-dtype float16'
C='--server-args=--kv-dtype float16 --max-loras 4'
date
python scripts/bench.py serve --slots 8 --clients 8 --num-prompts 64 --prompt-tokens 256 --max-tokens 128 $M --beta 0 \
  "$K" --peer llama-server $B --json | tee $O/greedy_8clients.jsonl
python scripts/bench.py serve --slots 8 --clients 8 --num-prompts 64 --prompt-tokens 256 --max-tokens 128 $M --beta 0.5 \
  "$K" --peer llama-server $B --peer-loras $L/math.gguf $L/arith.gguf $L/csqa.gguf --json | tee $O/cold_8clients_mixed.jsonl
# the same load while a fourth adapter is loaded, used and unloaded again and again (ours only)
python scripts/bench.py serve --slots 8 --clients 8 --num-prompts 64 --prompt-tokens 256 --max-tokens 128 $M --beta 0.5 \
  "$C" --adapter-cycle facts=knowledge/facts --json | tee $O/cold_8clients_cycle.jsonl
python scripts/bench.py serve --slots 16 --clients 1 2 4 8 16 --num-prompts 32 --prompt-tokens 256 --max-tokens 128 $M --beta 0.5 \
  "$K" --peer llama-server $B --plot $O/clients.png --json | tee $O/clients.jsonl
python scripts/bench.py serve --slots 8 --clients 1 --num-prompts 16 --prompt-tokens 256 --max-tokens 128 $M --beta 0.5 \
  "$K" --json | tee $O/one_client_8slots.jsonl
python scripts/bench.py serve --slots 8 --clients 1 --num-prompts 8 --prompt-tokens 850 --max-tokens 128 --beta 0 \
  "$K" --peer llama-server $B --json | tee $O/long_prompt.jsonl
date
