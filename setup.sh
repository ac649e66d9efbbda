#!/usr/bin/env bash
# One-command set-up: cold_ms with its pinned dependencies, mindformers and the test tools.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --disable-pip-version-check -e ".[all]"
