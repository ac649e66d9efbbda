"""Build and cache the custom CPU kernel library (MindSpore AOT entry points).

The library is compiled once with -O3 into the user cache, keyed by a hash of the sources,
the header generated from cold_ms/ops/operands.py, the compiler, its flags and this CPU's
instruction-set flags (so -march=native is safe to cache: the kernels take their paths from
what the compiler enables for this CPU); the file is written atomically, so concurrent
first uses are harmless. `cpu_library("haswell")` builds the AVX2 path of the same sources.
"""
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from cold_ms.errors import ConfigError
from cold_ms.ops.operands import generated_header
from cold_ms.runtime import cache_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPU_DIR = os.path.join(ROOT, "custom_ops", "cpu")
CPU_SOURCES = ("bgmv.cc", "linear.cc", "decode_ops.cc", "layer.cc", "select.cc", "membw.cc")
CPU_HEADERS = ("lora_kernels.h", "simd.h", "wtypes.h", "gemv.h", "decode_kernels.h")
GENERATED = "cold_generated.h"
FLAGS = ["-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp"]


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


def cpu_library(march="native"):
    """Path of the compiled CPU kernel library for `march`, building it on first use."""
    if march in _built:
        return _built[march]
    files = [os.path.join(CPU_DIR, f) for f in CPU_SOURCES + CPU_HEADERS]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise KernelBuildError(f"kernel source not found: {missing[0]} (install cold_ms from its source tree)")
    cxx, version = _compiler()
    flags = FLAGS + [f"-march={march}"]
    header = generated_header()
    digest = hashlib.sha256(repr((flags, version, _cpu_flags(), header)).encode())
    for path in files:
        with open(path, "rb") as f:
            digest.update(f.read())
    key = digest.hexdigest()[:16]
    folder = cache_dir("kernels", key)
    target = os.path.join(folder, "libcold_bgmv.so")
    if not os.path.isfile(target):
        _build(cxx, flags, header, folder, target)
    _built[march] = target
    return target


def _build(cxx, flags, header, folder, target):
    """Compile the library into `target` (atomically), saying so first: it takes ~30 s, once per
    machine and kernel version, and a silent first run looked hung."""
    print(f"cold_ms: compiling the CPU kernels for this machine (once; ~30 s on 2 cores) into {folder}",
          file=sys.stderr, flush=True)
    start = time.perf_counter()
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    include = tempfile.mkdtemp(dir=folder)  # the generated header, private to this build
    with open(os.path.join(include, GENERATED), "w", encoding="utf-8") as f:
        f.write(header)
    sources = [os.path.join(CPU_DIR, f) for f in CPU_SOURCES]
    proc = subprocess.run([cxx, *flags, f"-I{include}", *sources, "-o", tmp], capture_output=True, text=True)
    shutil.rmtree(include, ignore_errors=True)
    if proc.returncode:
        os.unlink(tmp)
        raise KernelBuildError(f"building the CPU kernels in {CPU_DIR} failed:\n{proc.stderr[-2000:]}")
    os.replace(tmp, target)
    _built["build_s"] = _built.get("build_s", 0.0) + time.perf_counter() - start


def build_seconds():
    """Seconds this process spent compiling the kernel library (0 when the cache had it)."""
    return _built.get("build_s", 0.0)


def _handle():
    if "handle" not in _built:
        _built["handle"] = ctypes.CDLL(cpu_library())
        _built["handle"].BgmvLastError.restype = ctypes.c_char_p
        _built["handle"].ColdReadBandwidthGBps.restype = ctypes.c_double
        _built["handle"].ColdReadBandwidthGBps.argtypes = (ctypes.c_int64, ctypes.c_int)
        _built["handle"].ColdKernelPaths.restype = ctypes.c_char_p
    return _built["handle"]


def kernel_paths():
    """The vector paths the CPU library was built with, e.g. 'avx512 vnni bf16' (from this CPU's flags)."""
    return _handle().ColdKernelPaths().decode()


def integer_panels():
    """Whether the CPU library has the integer-activation panel GEMVs (AVX-512 VNNI)."""
    return bool(_handle().ColdIntegerPanels())


def cpu_model():
    """This CPU's model name, for benchmark reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            line = next((line for line in f if line.startswith("model name")), "")
        return line.partition(":")[2].strip() or platform.processor()
    except OSError:
        return platform.processor()


def read_bandwidth_gbps(size_mb=1024, reps=5):
    """This machine's memory read bandwidth (GB/s, best of `reps` passes over all cores)."""
    return _handle().ColdReadBandwidthGBps(size_mb << 20, reps)


def last_kernel_error():
    """The CPU kernel's message for its last failed call ('' if none or not built)."""
    if "native" not in _built:
        return ""
    return _handle().BgmvLastError().decode()
