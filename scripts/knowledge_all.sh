#!/usr/bin/env bash
# Does CoLD enhance learned knowledge (issue 28)? LoRA experts that learned facts the base
# lacks (facts: fictional people) or contradicts (counterfacts: real facts overridden),
# trained until they recall what they were taught (held-in recall >= 0.95 on training
# questions), each evaluated over the whole alpha x beta grid on validation and once on test,
# every fact asked with every held-out question (entities x templates >= 360 test questions).
# The amateur is the expert's own snapshot at about a third of its steps, then the base. Measured here
# (2 cores): facts stopped at step 600 in 24 min, counterfacts at 750 in 29 min; a grid
# evaluation took 14-22 min. Gemma-3-270m: facts at 600 (about 33 min), counterfacts at 1050
# (51 min); a grid evaluation took 6-15 min (decoding alone).
#
#   bash scripts/knowledge_all.sh            # -> adapters/knowledge/{facts,counterfacts}, docs/results/knowledge/
#   MODEL=gemma3 bash scripts/knowledge_all.sh   # -> adapters/knowledge/gemma3/..., docs/results/knowledge/gemma3/
#
# Resumable: training resumes from its checkpoint, evaluation from its JSONL files.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-smollm2}
case "$MODEL" in
    smollm2) BASE=(); LR=1e-3; SUB="" ;;
    # Gemma-3-270m is a base model (no chat template of its own); lr 1e-3 did not converge on it
    # (25-step mean loss rose from 3.1 to 6.6 by step 125), 3e-4 fell as SmolLM2's at 1e-3 did
    gemma3) BASE=(--model gemma3 --chat-template gemma); LR=3e-4; SUB=/gemma3 ;;
    *) echo "MODEL must be smollm2 or gemma3, not '$MODEL'" >&2; exit 2 ;;
esac
ADAPTERS=${ADAPTERS:-adapters/knowledge$SUB}  # not adapters/NAME: these are not served by default
OUT=${1:-docs/results/knowledge$SUB}
# K entities: test splits of >= 360 questions (facts 75: 400; counterfacts 205, the fewest: 364),
# so a run fits about half an hour of 2 cores. lr 2e-3 diverged near step 100 (facts, r 16).
declare -A K=([facts]=75 [counterfacts]=205)
EVERY=75  # optimizer steps between probes, each with a snapshot: the amateur is chosen once the run stopped
TRAIN=("${BASE[@]}" --rank 16 --alpha 32 --lr "$LR" --batch 8 --max-len 128 --seed 0 --save-dtype float16
       --epochs 10 --until-recall 0.95 --probe-every "$EVERY" --snapshots "$(seq -s, "$EVERY" "$EVERY" 3000)")
# every validation and test question; counterfacts answers get 24 tokens, as the known facts were measured
declare -A VAL_N=([facts]=200 [counterfacts]=197) TEST_N=([facts]=400 [counterfacts]=364)
declare -A TOKENS=([facts]=16 [counterfacts]=24)

for task in facts counterfacts; do
    python scripts/train_lora.py --task "$task" --facts "${K[$task]}" "${TRAIN[@]}" --out "$ADAPTERS/$task"
    # keep the snapshot nearest a third of the steps run (the last probe row), drop the others
    last=$(tail -n 1 "$ADAPTERS/$task/probe.csv" | cut -d, -f1)
    early=$(( (last / 3 + EVERY / 2) / EVERY * EVERY )); early=$(( early < EVERY ? EVERY : early ))
    for d in "$ADAPTERS/$task"/step-*; do [ "$d" = "$ADAPTERS/$task/step-$early" ] || rm -r "$d"; done
    common=("${BASE[@]}" --task "$task" --facts "${K[$task]}" --every-template --n "${TEST_N[$task]}" --batch 16
            --max-new-tokens "${TOKENS[$task]}")
    python scripts/eval.py "${common[@]}" --tune --val-n "${VAL_N[$task]}" --adapter "$task=$ADAPTERS/$task" \
        --amateur "${task}_early=$ADAPTERS/$task/step-$early" --out "$OUT/${task}_amateur_early"
    python scripts/eval.py "${common[@]}" --tune --val-n "${VAL_N[$task]}" --adapter "$task=$ADAPTERS/$task" \
        --out "$OUT/$task"  # the base as amateur
    # the amateur alone and the base, on the same test questions
    python scripts/eval.py "${common[@]}" --split test --modes base,expert \
        --adapter "${task}_early=$ADAPTERS/$task/step-$early" --out "$OUT/${task}_early_alone"
done
