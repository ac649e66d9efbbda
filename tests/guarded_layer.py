"""Run one LayerStep (custom_ops/cpu/layer.cc) straight through ctypes with its KV caches
ending where an unreadable page begins, then again with ordinary arrays; print whether the
two outputs are identical. A read past the end of a cache kills this process (SIGSEGV),
so tests run it as a subprocess. Usage: python guarded_layer.py HEAD_DIM POSITION
"""
import ctypes
import mmap
import sys

import numpy as np

from cold_ms.ops import operands
from cold_ms.ops._library import cpu_library

PAGE = mmap.PAGESIZE
# MindSpore's dtype names of the operand arrays; numpy has no bfloat16: its bits travel as uint16
DTYPES = {np.dtype(np.int32): b"int32", np.dtype(np.float32): b"float32", np.dtype(np.float16): b"float16",
          np.dtype(np.uint16): b"bfloat16"}


def guarded(array, keep):
    """A copy of `array` whose last byte is the last readable one: the next page is PROT_NONE."""
    pages = -(-array.nbytes // PAGE) + 1
    region = mmap.mmap(-1, (pages + 1) * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    libc = ctypes.CDLL(None)
    if libc.mprotect(ctypes.c_void_p(base + pages * PAGE), PAGE, 0) != 0:
        raise OSError("mprotect failed")
    out = np.frombuffer(region, array.dtype, array.size, pages * PAGE - array.nbytes).reshape(array.shape)
    out[...] = array
    keep.append(region)
    return out


def layer_step(ops, march="native"):
    lib = ctypes.CDLL(cpu_library(march))
    arrays = [np.ascontiguousarray(ops[name]) for name in operands.NAMES]
    n = len(arrays)
    ptrs = (ctypes.c_void_p * n)(*[a.ctypes.data for a in arrays])
    ndims = (ctypes.c_int * n)(*[a.ndim for a in arrays])
    shapes = [(ctypes.c_int64 * max(a.ndim, 1))(*a.shape) for a in arrays]
    shape_ptrs = (ctypes.POINTER(ctypes.c_int64) * n)(*[ctypes.cast(s, ctypes.POINTER(ctypes.c_int64)) for s in shapes])
    dtypes = (ctypes.c_char_p * n)(*[DTYPES[a.dtype] for a in arrays])
    if lib.LayerStep(n, ptrs, ndims, shape_ptrs, dtypes, None, None) != 0:
        raise RuntimeError("LayerStep failed")
    return ops["out"].copy()


def layer_operands(head_dim, position):
    """One row, one token at `position` of a one-row cache of position + 1 positions."""
    rng = np.random.default_rng(3)
    f = lambda *shape: (rng.standard_normal(shape) * 0.1).astype(np.float32)  # noqa: E731
    dim, ffn, length = 2 * head_dim, 64, position + 1  # 2 query heads, 1 kv head
    none = np.zeros((1, 1, 1), np.float32)  # a module without LoRA slots
    ops = {"h": f(1, 1, dim), "ln1": f(dim) + 1, "eps1": np.array([1e-5], np.float32), "wq": f(dim, dim),
           "wk": f(head_dim, dim), "wv": f(head_dim, dim), "cos": f(1, 1, head_dim), "sin": f(1, 1, head_dim),
           "k_cache": f(length, head_dim), "v_cache": f(length, head_dim), "pos": np.array([[position]], np.int32),
           "crow": np.array([0], np.int32), "len": np.array([length], np.int32), "wo": f(dim, dim),
           "ln2": f(dim) + 1, "eps2": np.array([1e-5], np.float32), "wg": f(ffn, dim), "wu": f(ffn, dim),
           "wd": f(dim, ffn), "idx": np.array([-1], np.int32), "out": np.zeros((1, 1, dim), np.float32),
           "wtypes": np.zeros((7, 2), np.int32)}  # every projection float32 rows
    ops.update({name: none for name, kind in operands.LAYER if kind == "lora"})
    ops.update({name: np.zeros((1,), np.float32) for name, kind in operands.LAYER if kind == "opt"})
    ops.update(attn=np.array([0, 0], np.int32), scale=np.array([head_dim ** -0.5], np.float32))
    return ops


def main(head_dim, position):
    plain = layer_operands(head_dim, position)
    want = layer_step(dict(plain, k_cache=plain["k_cache"].copy(), v_cache=plain["v_cache"].copy()))
    keep = []
    fenced = dict(plain, k_cache=guarded(plain["k_cache"], keep), v_cache=guarded(plain["v_cache"], keep))
    print("identical" if np.array_equal(layer_step(fenced), want) else "different")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
