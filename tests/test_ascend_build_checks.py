"""custom_ops/ascend/build.sh checks every tool and version it needs before building and names all
that are missing at once. There is no CANN here: the toolkit, cmake and the device compiler are
fakes with chosen versions in a temporary directory; the build itself never starts."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "custom_ops", "ascend", "build.sh")


def _fake_tool(folder, name, output):
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(0o755)


def _cann(tmp_path, version, device_compiler=True):
    cann = tmp_path / "cann"
    (cann / "bin").mkdir(parents=True)
    (cann / "bin" / "setenv.bash").write_text("")
    (cann / "aarch64-linux").mkdir()
    (cann / "aarch64-linux" / "ascend_toolkit_install.info").write_text(f"package_name=Ascend-cann-toolkit\nversion={version}\n")
    if device_compiler:
        (cann / "compiler" / "ccec_compiler" / "bin").mkdir(parents=True)
        _fake_tool(cann / "compiler" / "ccec_compiler" / "bin", "ccec", "ccec")
    return cann


def _run(tmp_path, cmake_version, **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if cmake_version:
        _fake_tool(bin_dir, "cmake", f"cmake version {cmake_version}")
    path = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    base = {k: v for k, v in os.environ.items() if k not in ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME")}
    full = {**base, "PATH": path, "PYTHON": sys.executable, "PYTHONPATH": ROOT,
            "COLD_MS_OPP_BUILD": str(tmp_path / "build"), "COLD_MS_OPP_INSTALL": str(tmp_path / "opp"), **env}
    return subprocess.run(["bash", BUILD], env=full, capture_output=True, text=True, timeout=120)


def test_without_cann_it_says_what_to_install(tmp_path):
    out = _run(tmp_path, "3.27.0")
    assert out.returncode == 1 and "neither ASCEND_HOME_PATH nor ASCEND_TOOLKIT_HOME is set" in out.stderr
    assert not (tmp_path / "build").exists()  # nothing was built


def test_old_versions_and_missing_tools_are_all_named(tmp_path):
    cann = _cann(tmp_path, "7.0.0", device_compiler=False)
    out = _run(tmp_path, "3.10.2", ASCEND_HOME_PATH=str(cann))
    assert out.returncode == 1
    for want in ("CANN >= 8.0 (found 7.0.0)", "the AscendC device compiler", "cmake >= 3.16 (found 3.10.2)"):
        assert want in out.stderr, out.stderr
    assert not (tmp_path / "build").exists()


def test_an_unsupported_mindspore_is_named(tmp_path):
    cann = _cann(tmp_path, "8.0.RC2")
    fake = tmp_path / "site" / "mindspore"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("__version__ = '2.7.0rc1'\n")
    out = _run(tmp_path, "3.27.0", ASCEND_HOME_PATH=str(cann), PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{ROOT}")
    assert out.returncode == 1 and "MindSpore 2.9.0 (found 2.7.0rc1)" in out.stderr, out.stderr
    assert "CANN >= 8.0" not in out.stderr and "cmake" not in out.stderr  # those were found
