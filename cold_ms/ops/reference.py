"""Gather-BMM twin of the BGMV kernels: the fallback backend and the test oracle.

It materialises each row's adapter matrices (R x in x r), which is what the custom
kernels avoid; the arithmetic is the definition in `cold_ms.ops.bgmv`, in float32.
"""
import mindspore as ms
from mindspore import ops


_BMM_NT = ops.BatchMatMul(transpose_b=True)  # x @ A^T without materialising A^T


def _f32(t):
    # the CPU Gather has no bfloat16 kernel, and the twin accumulates in float32 anyway
    return t if t.dtype == ms.float32 else t.astype(ms.float32)


def _row_weights(stack, idx):
    """stack[idx[i]] for every row in float32, slot 0 standing in for idx < 0 (masked later). The
    rows are widened after the gather, so a float16 stack is never copied whole to float32; the
    CPU Gather has no bfloat16 kernel, so a bfloat16 stack is widened first."""
    if stack.dtype == ms.bfloat16:
        stack = stack.astype(ms.float32)
    return _f32(ops.gather(stack, ops.maximum(idx, 0), 0))


def shrink_gather(x, lora_a, idx):
    """v[i] = x[i] @ A[idx[i]]^T; rows with idx < 0 give zeros. x (R, T, in) -> (R, T, r) float32."""
    v = _BMM_NT(_f32(x), _row_weights(lora_a, idx))
    return v * (idx >= 0).astype(ms.float32).reshape(-1, 1, 1)


def expand_gather(y, v, lora_b, idx):
    """y[i] + v[i] @ B[idx[i]]; rows with idx < 0 are left unchanged. y (R, T, out) -> y's dtype."""
    delta = ops.bmm(v, _row_weights(lora_b, idx))
    out = _f32(y) + delta * (idx >= 0).astype(ms.float32).reshape(-1, 1, 1)
    return out if y.dtype == ms.float32 else out.astype(y.dtype)
