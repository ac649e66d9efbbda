"""Call an entry point of the CPU kernel library straight through ctypes, as MindSpore's AOT
interface does (params = inputs then outputs, with their ranks, shapes and dtype names)."""
import ctypes

import numpy as np

_NAMES = {np.dtype(np.float32): b"float32", np.dtype(np.int32): b"int32", np.dtype(np.int64): b"int64",
          np.dtype(np.uint8): b"uint8", np.dtype(np.float16): b"float16"}


def aot_call(library, entry, *arrays):
    """Run `entry` over `arrays` (inputs, then outputs, written in place); returns its status."""
    lib = ctypes.CDLL(library)
    arrays = [np.ascontiguousarray(a) if not a.flags.c_contiguous else a for a in arrays]
    n = len(arrays)
    ptrs = (ctypes.c_void_p * n)(*[a.ctypes.data for a in arrays])
    ndims = (ctypes.c_int * n)(*[a.ndim for a in arrays])
    shapes = [(ctypes.c_int64 * max(a.ndim, 1))(*a.shape) for a in arrays]
    shape_ptrs = (ctypes.POINTER(ctypes.c_int64) * n)(*[ctypes.cast(s, ctypes.POINTER(ctypes.c_int64)) for s in shapes])
    dtypes = (ctypes.c_char_p * n)(*[_NAMES[a.dtype] for a in arrays])
    return getattr(lib, entry)(n, ptrs, ndims, shape_ptrs, dtypes, None, None)
