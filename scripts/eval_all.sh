#!/usr/bin/env bash
# The README's results tables: greedy vs CoLD for the shipped experts on held-out data, then
# the same experts under the tuned protocol (below).
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

# The tuned protocol (eval.py --tune): alpha/beta chosen on the validation split, then expert
# greedy and the chosen setting evaluated once on test, with a paired McNemar test.
# -> $OUT/tuned/<task>/{choice.json,summary.*,validation/,test/}. Each sweeps the beta grid at
# alpha 0.1 (7 validation runs, as scripts/knowledge_all.sh does): the whole 5 x 6 grid is 31
# runs, and a CoLD run of arith's 500 validation problems takes ~5 minutes on 2 cores (16
# token rows a step), so the grid would be ~2.5 hours for arith alone. Drop --alpha for it.
python scripts/eval.py --task arith --tune --val-n 500 --n 500 --adapter arith --alpha 0.1 \
    --max-new-tokens 32 --out "$OUT/tuned/arith"
python scripts/eval.py --task csqa --tune --val-n 200 --n 411 --adapter csqa --alpha 0.1 \
    --max-new-tokens 24 --out "$OUT/tuned/csqa"
python scripts/eval.py --task gsm_symbolic --tune --val-n 200 --n 500 --adapter math --alpha 0.1 \
    --max-new-tokens 256 --out "$OUT/tuned/math"
