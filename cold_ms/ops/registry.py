"""Kernel registration, in one place: builds (or finds) the kernels of the device and hands
each op module its Custom primitives, and says which backend runs.

Backends: "custom" runs the compiled kernels - on the CPU the AOT library (BGMV, and for
inference the whole-layer, projection, norm and next-token kernels), on an NPU the AscendC
BGMV package - and "gather" the plain-MindSpore formulation with the gather-BMM twin.
"""
import warnings

from cold_ms.errors import ConfigError, InputError
from cold_ms.ops import bgmv, decode, linear
from cold_ms.ops._library import KernelBuildError, cpu_library, last_kernel_error
from cold_ms.runtime import device

BACKENDS = ("custom", "gather")
_state = {}


def select_backend(backend="custom"):
    """Validate a backend name and make its kernels ready; returns the backend that will run.

    "custom" falls back to "gather" with one warning when the kernels cannot be built here.
    Call it outside a graph (Cells do in __init__).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown LoRA backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "gather" or "device" in _state:
        return backend
    try:
        if device() == "Ascend":
            bgmv.register_ascend()
        else:
            library = cpu_library()
            for module in (bgmv, linear, decode):
                module.register_cpu(library)
    except KernelBuildError as e:
        if not _state.get("warned"):
            warnings.warn(f"cold_ms: custom kernels unavailable ({e}); using the gather backend",
                          RuntimeWarning, stacklevel=2)
            _state["warned"] = True
        return "gather"
    _state["device"] = device()
    return backend


def cpu_kernels(backend):
    """Whether `backend` runs the custom CPU kernels for inference (layers, projections,
    norms, the next-token choice): the custom backend on the CPU."""
    return backend == "custom" and _state.get("device") == "CPU"


def explain_kernel_error(error):
    """An InputError carrying the kernel's own message for a RuntimeError it caused, else None."""
    message = last_kernel_error()
    if message and "AOT kernel" in str(error):
        return InputError(message)
    return None
