"""Build, cache and register the BGMV custom kernels (CPU AOT library, AscendC package).

The CPU library is compiled once with -O3 into the user cache, keyed by a hash of the
source, the compiler, its flags and this CPU's instruction-set flags (so -march=native
is safe to cache); the file is written atomically, so concurrent first uses are harmless.
"""
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile

from cold_ms.errors import ConfigError
from cold_ms.pipeline.runtime import cache_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPU_SOURCE = os.path.join(ROOT, "custom_ops", "cpu", "bgmv.cc")
FLAGS = ["-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", "-march=native"]


class KernelBuildError(ConfigError):
    """The custom kernel could not be built here (no compiler, or a compile error)."""


def _cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _compiler():
    cxx = shutil.which(os.environ.get("CXX") or "g++") or (None if os.environ.get("CXX") else shutil.which("c++"))
    if not cxx:
        raise KernelBuildError(f"no C++ compiler found ({os.environ.get('CXX') or 'g++'}); "
                               f"install g++ or set CXX")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    return cxx, version


_built = {}


def cpu_library():
    """Path of the compiled CPU kernel library, building it on first use."""
    if "cpu" in _built:
        return _built["cpu"]
    if not os.path.isfile(CPU_SOURCE):
        raise KernelBuildError(f"kernel source not found: {CPU_SOURCE} (install cold_ms from its source tree)")
    cxx, version = _compiler()
    with open(CPU_SOURCE, "rb") as f:
        source = f.read()
    key = hashlib.sha256(source + repr((FLAGS, version, _cpu_flags())).encode()).hexdigest()[:16]
    target = os.path.join(cache_dir("kernels", key), "libcold_bgmv.so")
    if not os.path.isfile(target):
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(target))
        os.close(fd)
        proc = subprocess.run([cxx, *FLAGS, CPU_SOURCE, "-o", tmp], capture_output=True, text=True)
        if proc.returncode:
            os.unlink(tmp)
            raise KernelBuildError(f"building {CPU_SOURCE} failed:\n{proc.stderr[-2000:]}")
        os.replace(tmp, target)
    _built["cpu"] = target
    return target


def last_kernel_error():
    """The CPU kernel's message for its last failed call ('' if none or not built)."""
    if "cpu" not in _built:
        return ""
    if "handle" not in _built:
        _built["handle"] = ctypes.CDLL(_built["cpu"])
        _built["handle"].BgmvLastError.restype = ctypes.c_char_p
    return _built["handle"].BgmvLastError().decode()
