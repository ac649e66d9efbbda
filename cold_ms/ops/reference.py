"""Gather-BMM twin of the BGMV kernels: the fallback backend and the test oracle.

It materialises each row's adapter matrices (R x in x r), which is what the custom
kernels avoid; the arithmetic is the definition in `cold_ms.ops.bgmv`.
"""
from mindspore import ops


def _row_weights(stack, idx):
    """stack[idx[i]] for every row, slot 0 standing in for idx < 0 (masked later)."""
    return ops.gather(stack, ops.maximum(idx, 0), 0)


def shrink_gather(x, lora_a, idx):
    """v[i] = x[i] @ A[idx[i]]; rows with idx < 0 give zeros. x (R, T, in) -> (R, T, r)."""
    v = ops.bmm(x, _row_weights(lora_a, idx).astype(x.dtype))
    return v * (idx >= 0).astype(v.dtype).reshape(-1, 1, 1)


def expand_gather(y, v, lora_b, idx):
    """y[i] += v[i] @ B[idx[i]]; rows with idx < 0 are left unchanged. y (R, T, out)."""
    delta = ops.bmm(v, _row_weights(lora_b, idx).astype(v.dtype))
    return y + delta * (idx >= 0).astype(delta.dtype).reshape(-1, 1, 1)
