"""The AscendC kernels' tile arithmetic on the host: custom_ops/ascend/op_kernel/bgmv_tiles.h (the
header the kernels and the op tiling include) compiled with g++ into tests/ascend/bgmv_tiles_test.cc
and run; its UB budget static_asserts compile with it, and a budget over the UB fails to compile."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER_DIR = os.path.join(ROOT, "custom_ops", "ascend", "op_kernel")
TEST = os.path.join(ROOT, "tests", "ascend", "bgmv_tiles_test.cc")
GXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(GXX is None, reason="g++ is not installed")


def _compile(source, out, *extra):
    return subprocess.run([GXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{HEADER_DIR}", *extra, source,
                           "-o", out], capture_output=True, text=True, timeout=120)


def test_tile_arithmetic(tmp_path):
    built = _compile(TEST, str(tmp_path / "tiles"))
    assert built.returncode == 0, built.stderr
    run = subprocess.run([str(tmp_path / "tiles")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "all tile checks passed" in run.stdout, run.stdout


def test_a_budget_over_the_ub_does_not_compile(tmp_path):
    source = tmp_path / "over.cc"
    source.write_text('#include "bgmv_tiles.h"\n'
                      'static_assert(bgmv::FitsUb(bgmv::ExpandUbBytes(2, 8) + 32 * 1024), "over the UB");\n'
                      "int main() { return 0; }\n")
    built = _compile(str(source), str(tmp_path / "over"))
    assert built.returncode != 0 and "over the UB" in built.stderr
