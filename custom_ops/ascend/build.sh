#!/usr/bin/env bash
# Build and install the BGMV AscendC custom-op package (BgmvShrink, BgmvExpand).
#
# Uses MindSpore's documented tool for this, custom_compiler (mindspore/lib/plugin/ascend/
# custom_compiler, tutorial "AOT-Type Custom Operators (Ascend)"): it generates a CANN custom-op
# project, copies op_host/ and op_kernel/ into it and builds custom_opp_*.run. The package is then
# installed with the CANN installer's --install-path, and MindSpore finds it via
# ASCEND_CUSTOM_OPP_PATH=<install>/vendors/<vendor>.
#
# Needs an Ascend host with the CANN toolkit >= 8.0 (its set_env.sh sourced), cmake >= 3.16, make,
# g++ and the Ascend build of MindSpore (a version cold_ms supports); all are checked first and
# every missing one is named. NOT RUN on an Ascend host: written on a machine with no NPU and no
# CANN (there, only its checks have run: tests/test_ascend_build_checks.py).
#
# Settings (environment):
#   PYTHON                  interpreter with MindSpore            (default: python3)
#   COLD_MS_SOC_VERSION     ';'-separated targets                (default: ascend910b;ascend910_93)
#   COLD_MS_OPP_VENDOR      vendor directory name                 (default: cold_ms)
#   COLD_MS_OPP_BUILD       scratch build directory               (default: custom_ops/ascend/build)
#   COLD_MS_OPP_INSTALL     install root                          (default: custom_ops/ascend/opp)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
socs=${COLD_MS_SOC_VERSION:-ascend910b;ascend910_93}
vendor=${COLD_MS_OPP_VENDOR:-cold_ms}
build=${COLD_MS_OPP_BUILD:-$here/build}
install=${COLD_MS_OPP_INSTALL:-$here/opp}

fail() { echo "build.sh: $*" >&2; exit 1; }

# Every tool and version the build needs, all checked before anything runs; what is missing is
# reported together. Minimums: CANN 8.0 (the AscendC API these kernels were written against:
# DataCopyPad with DataCopyExtParams, PipeBarrier, TQue/TBuf), cmake 3.16 (the CANN op project),
# bash 4, MindSpore as cold_ms.MINDSPORE_SUPPORTED lists it, with its custom_compiler.
missing=()
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

(( BASH_VERSINFO[0] >= 4 )) || missing+=("bash >= 4 (this is $BASH_VERSION)")

cann=${ASCEND_HOME_PATH:-${ASCEND_TOOLKIT_HOME:-}}
if [[ -z "$cann" ]]; then
    missing+=("the CANN toolkit environment: neither ASCEND_HOME_PATH nor ASCEND_TOOLKIT_HOME is set; install
    the CANN toolkit (>= 8.0) and 'source /usr/local/Ascend/ascend-toolkit/set_env.sh'")
elif [[ ! -f "$cann/bin/setenv.bash" ]]; then
    missing+=("a CANN toolkit at '$cann' (no bin/setenv.bash): point ASCEND_HOME_PATH at the toolkit's 'latest'")
else
    info=$(ls "$cann"/*/ascend_toolkit_install.info "$cann"/ascend_toolkit_install.info 2>/dev/null | head -n1 || true)
    cann_version=$([[ -n "$info" ]] && sed -n 's/^version=//p' "$info" | head -n1)
    if [[ -z "$cann_version" ]]; then
        missing+=("the CANN version: no ascend_toolkit_install.info with version= under '$cann'")
    elif ! version_ge "$cann_version" 8.0; then
        missing+=("CANN >= 8.0 (found $cann_version)")
    fi
    ls "$cann"/compiler/ccec_compiler/bin/ccec "$cann"/compiler/ccec_compiler/bin/bisheng >/dev/null 2>&1 \
        || missing+=("the AscendC device compiler (ccec or bisheng under $cann/compiler/ccec_compiler/bin)")
fi

if command -v cmake >/dev/null; then
    cmake_version=$(cmake --version | sed -n 's/^cmake version \([0-9.]*\).*/\1/p')
    version_ge "${cmake_version:-0}" 3.16 || missing+=("cmake >= 3.16 (found ${cmake_version:-unknown})")
else
    missing+=("cmake >= 3.16 (not on PATH)")
fi
for tool in make g++; do
    command -v "$tool" >/dev/null || missing+=("$tool (not on PATH): the op project's host code builds with it")
done

compiler=""
if ms=$("$python" - <<'PY' 2>/dev/null
import os, mindspore
import cold_ms
ok = mindspore.__version__ in cold_ms.MINDSPORE_SUPPORTED
print(mindspore.__version__, ",".join(cold_ms.MINDSPORE_SUPPORTED), int(ok),
      os.path.join(os.path.dirname(mindspore.__file__), "lib", "plugin", "ascend", "custom_compiler"))
PY
); then
    read -r ms_version ms_supported ms_ok compiler <<<"$ms"
    [[ "$ms_ok" == 1 ]] || missing+=("MindSpore $ms_supported (found $ms_version)")
    [[ -f "$compiler/setup.py" ]] || missing+=("MindSpore's custom_compiler at '$compiler' (the Ascend build of MindSpore ships it)")
else
    missing+=("'$python' importing mindspore and cold_ms: install the Ascend build of MindSpore and cold_ms
    (bash setup.sh from the repository root) or set PYTHON")
fi

if (( ${#missing[@]} )); then
    echo "build.sh: cannot build the BGMV custom ops; missing:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
fi
echo "build.sh: CANN $cann_version, cmake $cmake_version, MindSpore $ms_version"

# custom_compiler writes its project next to its own setup.py and runs start.sh from the working
# directory, so it runs from a private copy, as its tutorial prescribes.
rm -rf "$build"
mkdir -p "$build" "$install"
cp -r "$compiler" "$build/custom_compiler"
cd "$build/custom_compiler"
"$python" setup.py --op_host_path="$here/op_host" --op_kernel_path="$here/op_kernel" \
    --soc_version="$socs" --vendor_name="$vendor" --ascend_cann_package_path="$cann" \
    || fail "compilation failed; the CANN build log is $build/custom_compiler/build.log"

shopt -s nullglob
packages=(CustomProject/build_out/custom_opp_*.run)
[[ ${#packages[@]} -eq 1 ]] || fail "expected one custom_opp_*.run in $build/custom_compiler/CustomProject/build_out"
bash "${packages[0]}" --install-path="$install"

echo "Installed $vendor into $install/vendors/$vendor. Before running MindSpore:"
echo "  export ASCEND_CUSTOM_OPP_PATH=$install/vendors/$vendor:\${ASCEND_CUSTOM_OPP_PATH:-}"
