#!/usr/bin/env bash
# Release check of the Python versions setup.py claims (TESTED_PYTHONS); CI runs only one.
# For each version found (pyenv, uv, or pythonX.Y on PATH), on a copy of this working tree:
#   a fresh venv runs setup.sh (the README's set-up command), then
#   import: cold_ms, mindformers (the task registers), the eval and serve extras;
#   greedy: the embedded SmolLM2 answers "Paris" (scripts/infer.py --beta 0);
#   cold:   CoLD with the shipped 'math' adapter, CPU kernels compiled anew (fresh cache).
# It prints the venv's size, and exits 1 unless every claimed version was found and passed.
#
#   bash scripts/check_pythons.sh [X.Y ...]      # default: every version setup.py claims
#   KEEP=1 bash scripts/check_pythons.sh 3.12    # keep the work directory for inspection
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [ $# -gt 0 ]; then
    versions=("$@")
else
    read -r -a versions <<< "$(python3 - "$ROOT/setup.py" <<'EOF'
import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
print(" ".join(ast.literal_eval(next(node.value for node in tree.body if isinstance(node, ast.Assign)
                                     and getattr(node.targets[0], "id", "") == "TESTED_PYTHONS"))))
EOF
)"
fi

find_python() {  # an interpreter of version $1, or nothing
    local v=$1 candidates=() p
    if command -v pyenv > /dev/null; then
        for p in $(pyenv versions --bare 2> /dev/null | grep -E "^$v(\.[0-9]+)?$" | sort -V -r); do
            candidates+=("$(pyenv root)/versions/$p/bin/python$v")
        done
    fi
    command -v uv > /dev/null && candidates+=("$(uv python find "$v" 2> /dev/null)")
    candidates+=("$(command -v "python$v")")
    for p in "${candidates[@]}"; do
        if [ -x "$p" ] && [ "$("$p" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2> /dev/null)" = "$v" ]; then
            echo "$p"
            return
        fi
    done
}

check_version() {  # $1 = X.Y, $2 = interpreter, $3 = work directory; prints the steps, returns 0 on success
    local v=$1 py=$2 work=$3 out
    mkdir -p "$work/src" "$work/cache"
    git -C "$ROOT" ls-files -z -co --exclude-standard | (cd "$ROOT" && tar --null -T - -cf -) | tar -xf - -C "$work/src"
    "$py" -m venv "$work/venv" || return 1
    # shellcheck disable=SC1091
    source "$work/venv/bin/activate"
    local start=$SECONDS
    if ! bash "$work/src/setup.sh" > "$work/setup.log" 2>&1; then
        echo "  setup.sh failed ($(tail -n 2 "$work/setup.log" | tr '\n' ' '))"
        return 1
    fi
    echo "  setup.sh: $((SECONDS - start)) s; venv $(du -sh "$work/venv" | cut -f1)"
    cd "$work" || return 1
    python -c "import cold_ms, mindformers, importlib, reasoning_gym, fastapi, uvicorn
assert 'cold_text_generation' in importlib.import_module('mindformers.pipeline.pipeline').SUPPORT_PIPELINES" \
        > "$work/import.log" 2>&1 || { echo "  import failed ($(tail -n 1 "$work/import.log"))"; return 1; }
    echo "  import: ok"
    out=$(COLD_MS_CACHE="$work/cache" python "$work/src/scripts/infer.py" --chat --beta 0 --max-new-tokens 12 \
          --prompt "What is the capital of France?" 2> "$work/greedy.log")
    [[ $out == *Paris* ]] || { echo "  greedy failed: '$out' ($(tail -n 1 "$work/greedy.log"))"; return 1; }
    echo "  greedy: ${out//$'\n'/ }"
    out=$(COLD_MS_CACHE="$work/cache" python "$work/src/scripts/infer.py" --adapter math --chat --max-new-tokens 12 \
          --prompt "What is 12 + 30?" 2> "$work/cold.log") || { echo "  cold failed ($(tail -n 1 "$work/cold.log"))"; return 1; }
    echo "  cold: ${out//$'\n'/ }"
}

failed=0
summary=()
for v in "${versions[@]}"; do
    py=$(find_python "$v")
    if [ -z "$py" ]; then
        summary+=("$v: NOT RUN (no interpreter found via pyenv, uv or python$v)")
        failed=1
        continue
    fi
    work=$(mktemp -d "${TMPDIR:-/tmp}/cold_ms_py$v.XXXX")
    echo "== Python $v ($py), in $work"
    if (check_version "$v" "$py" "$work"); then
        summary+=("$v: passed ($("$py" -V 2>&1))")
        [ "${KEEP:-0}" = 1 ] || rm -rf "$work"
    else
        summary+=("$v: FAILED (logs in $work)")
        failed=1
    fi
done
printf '%s\n' "== summary" "${summary[@]}"
exit $failed
