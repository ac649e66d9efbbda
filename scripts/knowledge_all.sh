#!/usr/bin/env bash
# Where CoLD helps (issue 18): LoRA experts that learned facts (facts: fictional people;
# counterfacts: real facts overridden), at several training budgets, each evaluated with
# alpha/beta chosen on the validation split and reported once on the test split.
#
#   bash scripts/knowledge_all.sh                      # budgets of 4 and 12 epochs
#   EPOCHS="4 8 12" bash scripts/knowledge_all.sh      # and a middle one
#
# Resumable: training resumes from OUT/checkpoint, evaluation from its JSONL files.
# Measured here: ~55 s to compile, then ~2.8 s per training step (batch 8 x 64 tokens, 2
# cores), so an epoch takes ~10.5 min for facts (225 steps) and ~14 min for counterfacts
# (298 steps); one tuned evaluation (31 validation runs, 2 test runs) roughly 20-30 min.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-"4 12"}
ADAPTERS=${ADAPTERS:-adapters}
OUT=${1:-docs/results/knowledge}
# As the shipped adapters (rank 8 on all projections) and the pilot of DESIGN.md section 6
# (lr 1e-3, batch 8). Every example fits 64 tokens, so one 64-token graph trains them all.
TRAIN=(--rank 8 --alpha 16 --lr 1e-3 --batch 8 --max-len 128 --seed 0 --save-dtype float16)

for e in $EPOCHS; do
    # 1,800 examples: 150 people x (4 statements + 4 facts x 2 training questions)
    python scripts/train_lora.py --task facts --epochs "$e" "${TRAIN[@]}" --out "$ADAPTERS/facts_e$e"
    # 2,380 examples: 476 known facts x (3 statements + 2 training questions)
    python scripts/train_lora.py --task counterfacts --epochs "$e" "${TRAIN[@]}" --out "$ADAPTERS/counterfacts_e$e"
done

for e in $EPOCHS; do
    # all 200 validation and 400 test questions; answers are short spans (exact match)
    python scripts/eval.py --task facts --tune --val-n 200 --n 400 --adapter "facts_e$e=$ADAPTERS/facts_e$e" \
        --max-new-tokens 16 --out "$OUT/facts_e$e"
    # all 158 validation and 318 test questions; 24 new tokens, as the known facts were measured
    python scripts/eval.py --task counterfacts --tune --val-n 158 --n 318 \
        --adapter "counterfacts_e$e=$ADAPTERS/counterfacts_e$e" --max-new-tokens 24 --out "$OUT/counterfacts_e$e"
done

# Reference: the base model on the counterfacts test questions (base-value rate ~100% by
# construction: each is asked as the base model answered it correctly when measured).
last=${EPOCHS##* }
python scripts/eval.py --task counterfacts --split test --n 318 --modes base \
    --adapter "counterfacts_e$last=$ADAPTERS/counterfacts_e$last" --max-new-tokens 24 --out "$OUT/counterfacts_base"
