#!/usr/bin/env bash
# The README's results tables: greedy vs CoLD for the shipped experts on held-out data.
# Resumable: rerun after an interruption and finished examples are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/results/eval}
BETAS=0.1,0.25,0.5,1.0
python scripts/eval.py --task gsm_symbolic --n 500 --adapter math --alpha 0.1 --beta $BETAS \
    --max-new-tokens 256 --out "$OUT/math"
python scripts/eval.py --task csqa --n 611 --adapter csqa --alpha 0.1 --beta $BETAS \
    --max-new-tokens 24 --out "$OUT/csqa"
python scripts/eval.py --task arith --n 500 --adapter arith --alpha 0.1 --beta $BETAS \
    --max-new-tokens 32 --out "$OUT/arith"
