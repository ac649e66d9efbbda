#!/usr/bin/env bash
# Boot file of the cold_ms ModelArts image: the OpenAI-compatible CoLD server on 0.0.0.0:$PORT.
#
# The model comes from $MODEL_DIR (default /home/mind/model, where ModelArts puts the OBS model
# package): a .gguf file, a MindFormers .yaml, or a model directory (HF or scripts/convert.py) in
# $MODEL_DIR or in $MODEL_DIR/base. Adapters come from $MODEL_DIR/adapters. With no model there,
# the embedded SmolLM2-135M-Instruct is served with the shipped adapters.
# Optional overrides: PORT, SLOTS, MAX_LEN, MAX_TOKENS_LIMIT, MAX_QUEUE, CHAT_TEMPLATE,
# DEFAULT_ALPHA, DEFAULT_BETA, COLD_MS_API_KEY (read by serve.py), PYTHON, COLD_MS_ROOT.

# ModelArts' examples start boot files with `sh`; re-run under bash, which the lines below need.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail

ROOT=${COLD_MS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL_DIR=${MODEL_DIR:-/home/mind/model}

# Print the model in directory $1, if it holds one. The model package's own config.json (the
# ModelArts one, with "model_algorithm") is not a model config, so a HF model shipped beside it
# has to live in base/.
find_model() {
    local dir=$1 file
    [ -d "$dir" ] || return 1
    if [ -f "$dir/config.json" ] && ! grep -q '"model_algorithm"' "$dir/config.json"; then
        echo "$dir"
        return 0
    fi
    for file in "$dir"/*.gguf "$dir"/*.yaml "$dir"/*.yml; do
        if [ -f "$file" ]; then
            echo "$file"
            return 0
        fi
    done
    return 1
}

args=(--host 0.0.0.0 --port "${PORT:-8080}")
if model=$(find_model "$MODEL_DIR") || model=$(find_model "$MODEL_DIR/base"); then
    args+=(--model "$model")
    echo "cold_ms: serving $model" >&2
else
    echo "cold_ms: no model in $MODEL_DIR; serving the embedded SmolLM2-135M-Instruct" >&2
fi
if [ -d "$MODEL_DIR/adapters" ]; then
    args+=(--adapters-dir "$MODEL_DIR/adapters")
fi

# Each set variable becomes its serve.py flag; unset ones keep serve.py's defaults.
for pair in SLOTS:--slots MAX_LEN:--max-len MAX_TOKENS_LIMIT:--max-tokens-limit MAX_QUEUE:--max-queue \
            CHAT_TEMPLATE:--chat-template DEFAULT_ALPHA:--default-alpha DEFAULT_BETA:--default-beta; do
    var=${pair%%:*}
    if [ -n "${!var:-}" ]; then
        args+=("${pair#*:}" "${!var}")
    fi
done

# exec: the server becomes this process, so ModelArts' SIGTERM reaches uvicorn directly.
exec "${PYTHON:-python}" "$ROOT/scripts/serve.py" "${args[@]}"
