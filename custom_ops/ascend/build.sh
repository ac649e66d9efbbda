#!/usr/bin/env bash
# Build and install the BGMV AscendC custom-op package (BgmvShrink, BgmvExpand).
#
# Uses MindSpore's documented tool for this, custom_compiler (mindspore/lib/plugin/ascend/
# custom_compiler, tutorial "AOT-Type Custom Operators (Ascend)"): it generates a CANN custom-op
# project, copies op_host/ and op_kernel/ into it and builds custom_opp_*.run. The package is then
# installed with the CANN installer's --install-path, and MindSpore finds it via
# ASCEND_CUSTOM_OPP_PATH=<install>/vendors/<vendor>.
#
# Needs an Ascend host with the CANN toolkit (its set_env.sh sourced), cmake >= 3.16 and the
# Ascend build of MindSpore. NOT RUN YET: written on a machine with no NPU and no CANN.
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

cann=${ASCEND_HOME_PATH:-${ASCEND_TOOLKIT_HOME:-}}
[[ -n "$cann" ]] || fail "neither ASCEND_HOME_PATH nor ASCEND_TOOLKIT_HOME is set: install the CANN toolkit and
  source its environment first, e.g. 'source /usr/local/Ascend/ascend-toolkit/set_env.sh'"
[[ -d "$cann" ]] || fail "the CANN toolkit directory '$cann' (ASCEND_HOME_PATH/ASCEND_TOOLKIT_HOME) does not exist"
[[ -f "$cann/bin/setenv.bash" ]] || fail "'$cann' has no bin/setenv.bash: point ASCEND_HOME_PATH at the toolkit's
  'latest' directory (e.g. /usr/local/Ascend/ascend-toolkit/latest)"
command -v cmake >/dev/null || fail "cmake (>= 3.16) is not on PATH; the CANN op project builds with it"

compiler=$("$python" -c 'import os, mindspore; print(os.path.join(os.path.dirname(mindspore.__file__), "lib", "plugin", "ascend", "custom_compiler"))') \
    || fail "'$python' cannot import mindspore: install the Ascend build of MindSpore (bash setup.sh) or set PYTHON"
[[ -f "$compiler/setup.py" ]] || fail "MindSpore's custom_compiler is missing at '$compiler' (MindSpore >= 2.3 ships it)"

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
